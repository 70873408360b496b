"""Challenge specs: `challenges/<id>/challenge.toml`, read with `tomllib` and checked at load time.

A challenge names a scenario (a file under `scenarios/` or an inline `[scenario]` table), the
goal a policy must reach on it (a target reduction, a p95 latency SLA, a quality floor and an
error budget), hints, badges and the public seeds learners may test on. Private seeds are not
here: they live with the instructor (`lab.grading.private`). The score formula is one for all
challenges and documented in `SCORE_FORMULA` and `challenges/README.md`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lab.config import Table, did_you_mean
from lab.errors import ScenarioError
from lab.fmt import html_text
from lab.grading.policy_schema import build_scenario, parse_policy

LEVELS = ("beginner", "intermediate", "advanced")
CHALLENGES_ENV = "COSTLAB_CHALLENGES_DIR"
#: metrics a badge may put bounds on (the aggregated private-seed metrics of `evaluate`)
BADGE_METRICS = ("score", "reduction_pct", "reduction_pct_min", "p95_ms", "quality_min", "error_rate_max",
                 "cache_hit_rate", "stages")

SCORE_FORMULA = (
    "score = mean over the seeds of reduction_pct (percent of the no-optimization baseline's cost "
    "saved, on the same requests), rounded to 2 decimals and floored at 0; score = 0 when any "
    "constraint fails on any seed: p95 latency > sla_p95_ms, quality_mean < quality_floor, or "
    "failed share (errors + rejections) > error_budget. passed = constraints met and score >= "
    "target_reduction_pct. Ties rank by the earlier submission."
)


class ChallengeError(ScenarioError):
    """A challenge file is missing or has a wrong field (one line naming file and field)."""


@dataclass(frozen=True)
class Goal:
    """What a policy must achieve on every seed (constraints) and aim for (the target)."""

    target_reduction_pct: float
    sla_p95_ms: float
    quality_floor: float
    error_budget: float


@dataclass(frozen=True)
class Badge:
    """An award for a submission whose metrics fall within the given bounds."""

    id: str
    name: str
    description: str
    min: tuple[tuple[str, float], ...] = ()
    max: tuple[tuple[str, float], ...] = ()
    needs_constraints: bool = True

    def earned(self, metrics: dict, constraints_met: bool) -> bool:
        if self.needs_constraints and not constraints_met:
            return False
        return (all(metrics.get(k, float("-inf")) >= v for k, v in self.min)
                and all(metrics.get(k, float("inf")) <= v for k, v in self.max))


@dataclass(frozen=True)
class Challenge:
    """One graded challenge: scenario, goal, rules for policies, hints, badges, public seeds."""

    id: str
    title: str
    level: str
    summary: str
    scenario: dict                       # the scenario as a TOML dict (its pipeline is the policy's)
    scenario_path: str                   # where relative paths in it (traces) resolve
    goal: Goal
    requests: int | None
    public_seeds: tuple[int, ...]
    hints: tuple[str, ...] = ()
    badges: tuple[Badge, ...] = ()
    allowed_stages: tuple[str, ...] = ()            # empty: every registered stage
    locked_fields: tuple[str, ...] = ()             # "stage.field" a policy may not set
    allowed_values: tuple[tuple[str, tuple], ...] = ()   # "stage.field" -> allowed values
    max_values: tuple[tuple[str, float], ...] = ()       # "stage.field" -> required, at most this
    models: tuple[str, ...] = ()                    # models a policy may choose (empty: fixed)
    max_stages: int = 6
    daily_submissions: int = 5
    path: str = ""
    starter_pipeline: tuple[dict, ...] = field(default=())

    @property
    def folder(self) -> Path:
        return Path(self.path).parent

    @property
    def notebook_path(self) -> Path:
        return self.folder / "template.ipynb"

    def describe(self) -> dict:
        g = self.goal
        return {"id": self.id, "title": self.title, "level": self.level, "summary": self.summary,
                "target_reduction_pct": g.target_reduction_pct, "sla_p95_ms": g.sla_p95_ms,
                "quality_floor": g.quality_floor, "error_budget": g.error_budget,
                "requests": self.requests, "public_seeds": list(self.public_seeds),
                "daily_submissions": self.daily_submissions}

    def _repr_html_(self) -> str:
        g = self.goal
        hints = "".join(f"<li>{html_text(h)}</li>" for h in self.hints)
        badges = "".join(f"<li><b>{html_text(b.name)}</b>: {html_text(b.description)}</li>" for b in self.badges)
        return (f"<h4>{html_text(self.title)} <small>({self.level}, {html_text(self.id)})</small></h4>"
                f"<p>{html_text(self.summary)}</p><ul>"
                f"<li>target: cut cost by at least {g.target_reduction_pct:g} %</li>"
                f"<li>SLA: p95 latency &le; {g.sla_p95_ms:,.0f} ms on every seed</li>"
                f"<li>quality floor: quality_mean &ge; {g.quality_floor:g}</li>"
                f"<li>error budget: at most {100 * g.error_budget:g} % of requests failed</li></ul>"
                f"<details><summary>hints</summary><ul>{hints}</ul></details>"
                f"<details><summary>badges</summary><ul>{badges}</ul></details>")


# --------------------------------------------------------------------------- finding


def challenges_root(root: str | Path | None = None) -> Path:
    """The folder holding challenge folders: `root`, $COSTLAB_CHALLENGES_DIR, or the repository's."""
    if root is not None:
        return Path(root)
    if os.environ.get(CHALLENGES_ENV):
        return Path(os.environ[CHALLENGES_ENV])
    return Path(__file__).resolve().parents[2] / "challenges"


def list_challenges(root: str | Path | None = None) -> list[Challenge]:
    """Every challenge under the root: beginner first, then intermediate, then advanced."""
    base = challenges_root(root)
    found = [load_challenge(p) for p in sorted(base.glob("*/challenge.toml"))]
    return sorted(found, key=lambda c: (LEVELS.index(c.level), c.id))


def load_challenge(spec: str | Path, root: str | Path | None = None) -> Challenge:
    """A challenge by id (a folder under the challenges root) or by path to its TOML or folder."""
    path = Path(spec)
    if path.is_dir():
        path = path / "challenge.toml"
    if not path.is_file():
        candidate = challenges_root(root) / str(spec) / "challenge.toml"
        if not candidate.is_file():
            known = [p.parent.name for p in sorted(challenges_root(root).glob("*/challenge.toml"))]
            raise ChallengeError(str(spec), "", f"no such challenge; known: {', '.join(known) or 'none'}"
                                 f"{did_you_mean(str(spec), known)}")
        path = candidate
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ChallengeError(str(path), "", f"not valid TOML: {exc}") from None
    return challenge_from_dict(data, path=str(path.resolve()))


def challenge_from_dict(data: dict, path: str) -> Challenge:
    """Validate a parsed challenge TOML; the scenario itself is checked by `scenario_from_dict`."""
    top = Table(path, "", data)
    cid = top.string("id", Path(path).parent.name)
    scenario, scenario_path = _scenario(top, path)
    g = top.table("goal")
    goal = Goal(target_reduction_pct=g.number("target_reduction_pct", min=0.0, max=100.0),
                sla_p95_ms=g.number("sla_p95_ms", min=0.0, strict_min=True),
                quality_floor=g.probability("quality_floor", 0.0),
                error_budget=g.probability("error_budget", 0.0))
    g.done()
    seeds = top.raw("public_seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        top.fail("public_seeds", f"expected a non-empty array of whole numbers >= 0, got {seeds!r}")
    hints = top.raw("hints", [])
    if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
        top.fail("hints", "expected an array of strings")
    score = top.table("score", {})
    score.string("formula", "reduction")        # documentation only; one formula for every challenge
    score.string("explain", "")
    score.done()
    rules = top.table("rules", {})
    allowed_stages = tuple(_strings(rules, "allowed_stages"))
    locked = tuple(_strings(rules, "locked_fields"))
    models = tuple(_strings(rules, "models"))
    values_t = rules.table("allowed_values", {})
    allowed_values = []
    for key in list(values_t.data):
        vals = values_t.raw(key)
        if not isinstance(vals, list) or not vals:
            values_t.fail(key, "expected a non-empty array of allowed values")
        allowed_values.append((key, tuple(vals)))
    max_t = rules.table("max_values", {})
    max_values = tuple((key, max_t.number(key)) for key in list(max_t.data))
    for key, _ in (*allowed_values, *max_values):
        if key.count(".") != 1:
            values_t.fail(key, "expected a \"stage.field\" key, e.g. \"cache.capacity\"")
    max_stages = rules.integer("max_stages", 6, min=1)
    daily = rules.integer("daily_submissions", 5, min=0)
    rules.done()
    badges = tuple(_badge(b) for b in top.tables("badges", []))
    starter = top.raw("starter_pipeline", [])
    if not isinstance(starter, list) or not all(isinstance(s, dict) for s in starter):
        top.fail("starter_pipeline", "expected an array of stage tables")
    level = top.string("level", choices=LEVELS)
    ch = Challenge(id=cid, title=top.string("title"), level=level, summary=top.string("summary", ""),
                   scenario=scenario, scenario_path=scenario_path, goal=goal,
                   requests=top.integer("requests", None, min=1), public_seeds=tuple(seeds), hints=tuple(hints),
                   badges=badges, allowed_stages=allowed_stages, locked_fields=locked,
                   allowed_values=tuple(allowed_values), max_values=max_values, models=models, max_stages=max_stages,
                   daily_submissions=daily, path=path, starter_pipeline=tuple(starter))
    top.done()
    _check_scenario(ch)
    return ch


def _strings(t: Table, key: str) -> list[str]:
    value = t.raw(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        t.fail(key, f"expected an array of strings, got {value!r}")
    return value


def _scenario(top: Table, path: str) -> tuple[dict, str]:
    """The scenario dict: `scenario = "relative/path.toml"` or an inline `[scenario]` table."""
    value = top.raw("scenario")
    if isinstance(value, str):
        file = (Path(path).parent / value).resolve()
        if not file.is_file():
            top.fail("scenario", f"scenario file not found: {file}")
        try:
            return tomllib.loads(file.read_text(encoding="utf-8")), str(file)
        except tomllib.TOMLDecodeError as exc:
            top.fail("scenario", f"{file} is not valid TOML: {exc}")
    if isinstance(value, dict):
        return value, path
    top.fail("scenario", "expected a path to a scenario file or an inline [scenario] table")
    raise AssertionError  # unreachable: fail raises


def _badge(t: Table) -> Badge:
    def bounds(key: str) -> tuple[tuple[str, float], ...]:
        b = t.table(key, {})
        out = []
        for metric in list(b.data):
            if metric not in BADGE_METRICS:
                b.fail(metric, f"unknown metric: expected one of {', '.join(BADGE_METRICS)}"
                               f"{did_you_mean(metric, BADGE_METRICS)}")
            out.append((metric, b.number(metric)))
        return tuple(out)

    badge = Badge(id=t.string("id"), name=t.string("name"), description=t.string("description"),
                  min=bounds("min"), max=bounds("max"), needs_constraints=t.boolean("needs_constraints", True))
    t.done()
    return badge


def _check_scenario(ch: Challenge) -> None:
    """The challenge's scenario must load on its own (with the starter pipeline) before anyone plays it."""
    build_scenario(ch, parse_policy({"pipeline": list(ch.starter_pipeline)}, ch))
