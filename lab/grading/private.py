"""The instructor's private folder: private seeds and the default leaderboard database.

It lives outside the learner's tree, named by `--private-dir` or `$COSTLAB_PRIVATE_DIR`:

    $COSTLAB_PRIVATE_DIR/
        seeds.toml          # [seeds] "b1-first-cache" = [..]  (mode 600; `costlab class-init` writes it)
        leaderboard.db      # the default SQLite leaderboard (a --db URL can point elsewhere)

While a notebook runs, the grader hides this folder behind an empty read-only tmpfs. Seeds
can also come from `$COSTLAB_PRIVATE_SEEDS` ("b1-first-cache=11,22,33;i1-fresh-catalog=44"),
e.g. from a CI secret.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ConfigError

PRIVATE_ENV = "COSTLAB_PRIVATE_DIR"
SEEDS_ENV = "COSTLAB_PRIVATE_SEEDS"
SEEDS_FILE = "seeds.toml"
DB_FILE = "leaderboard.db"
SEED_BITS = 48


@dataclass(frozen=True)
class PrivateDir:
    """Where private seeds and the default leaderboard live; never shown to a notebook."""

    path: Path

    @classmethod
    def locate(cls, path: str | Path | None = None) -> PrivateDir:
        raw = path or os.environ.get(PRIVATE_ENV)
        if not raw:
            raise ConfigError(f"no private folder: pass --private-dir DIR or set {PRIVATE_ENV} (create one with "
                              "`costlab class-init --private-dir DIR`, outside the learners' tree)")
        return cls(Path(raw).expanduser().resolve())

    @property
    def seeds_file(self) -> Path:
        return self.path / SEEDS_FILE

    @property
    def default_db_url(self) -> str:
        return f"sqlite:///{self.path / DB_FILE}"

    def seeds(self, challenge_id: str) -> list[int]:
        """The private seeds of a challenge, from $COSTLAB_PRIVATE_SEEDS or seeds.toml."""
        env = _parse_env_seeds(os.environ.get(SEEDS_ENV, ""))
        if challenge_id in env:
            return env[challenge_id]
        if not self.seeds_file.is_file():
            raise ConfigError(f"no private seeds for {challenge_id!r}: {self.seeds_file} does not exist "
                              f"(run `costlab class-init --private-dir {self.path}`)")
        try:
            table = tomllib.loads(self.seeds_file.read_text(encoding="utf-8")).get("seeds", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.seeds_file}: not valid TOML: {exc}") from None
        seeds = table.get(challenge_id)
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise ConfigError(f"{self.seeds_file}: seeds.{challenge_id}: expected a non-empty array of whole "
                              "numbers >= 0 (run `costlab class-init` again to add new challenges)")
        return seeds

    def ensure_outside(self, *trees: str | Path) -> None:
        """Refuse a private folder inside a learner-visible tree (the repository, a submission's folder)."""
        for tree in trees:
            tree = Path(tree).resolve()
            if self.path == tree or tree in self.path.parents:
                raise ConfigError(f"the private folder {self.path} is inside {tree}, which learners can see: "
                                  "move it outside (e.g. /srv/costlab-private)")

    def init(self, challenge_ids, seeds_per_challenge: int = 5) -> dict[str, list[int]]:
        """Create the folder (mode 700) and draw private seeds for challenges that have none."""
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        existing = {}
        if self.seeds_file.is_file():
            existing = tomllib.loads(self.seeds_file.read_text(encoding="utf-8")).get("seeds", {})
        seeds = dict(existing)
        for cid in challenge_ids:
            if cid not in seeds:
                seeds[cid] = [secrets.randbits(SEED_BITS) for _ in range(seeds_per_challenge)]
        lines = ["# costlab private seeds: the grader scores on these; never give them to learners", "[seeds]"]
        lines += [f'"{cid}" = [{", ".join(str(int(s)) for s in v)}]' for cid, v in sorted(seeds.items())]
        tmp = self.seeds_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, self.seeds_file)
        return seeds


def known_private_seeds() -> set[int]:
    """Every private seed this process can see ($COSTLAB_PRIVATE_SEEDS, and seeds.toml when
    $COSTLAB_PRIVATE_DIR names a readable folder): what the experiment store refuses to save."""
    seeds = {s for values in _parse_env_seeds(os.environ.get(SEEDS_ENV, "")).values() for s in values}
    raw = os.environ.get(PRIVATE_ENV)
    try:
        table = tomllib.loads((Path(raw) / SEEDS_FILE).read_text(encoding="utf-8")).get("seeds", {}) if raw else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        table = {}
    for values in table.values() if isinstance(table, dict) else ():
        if isinstance(values, list):
            seeds.update(s for s in values if isinstance(s, int))
    return seeds


def _parse_env_seeds(text: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        cid, _, values = part.partition("=")
        try:
            out[cid.strip()] = [int(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"{SEEDS_ENV}: expected 'challenge=1,2,3;other=4', got {part!r}") from None
    return out
