"""Experiments that last: save runs, list them, reopen and compare them; baselines and progress.

    import lab, lab.store
    result = lab.simulate(lab.load_scenario("scenarios/support-chatbot.toml"), seed=0)
    run_id = result.save("cache-sizing", tags=["lru"], note="1000 entries")
    lab.store.runs()                     # a DataFrame, one row per saved run
    again = lab.store.load(run_id)       # a Result: renders, plots and reports like the fresh one
    lab.store.compare(run_id, other_id)  # the paired comparison of lab.analysis.baselines

The store is `~/.costlab/lab.db` (SQLite) unless `$COSTLAB_STORE` names another path or a
database URL (a class's `postgresql://...`); `lab.store.use(url)` switches to another.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.result import Result
from lab.store.schema import SCHEMA_VERSION
from lab.store.store import RecordedRun, Store, owner_name

STORE_ENV = "COSTLAB_STORE"
DEFAULT_PATH = Path("~/.costlab/lab.db")

_open: dict[str, Store] = {}
_current: list[str] = []      # the store `use(url)` chose for this process, if any
_unreachable: set[str] = set()   # stores progress could not be written to (not retried)


def default_url() -> str:
    """The store in use: the one `use(url)` chose, else $COSTLAB_STORE, else ~/.costlab/lab.db."""
    return (_current[-1] if _current else None) or os.environ.get(STORE_ENV) or str(DEFAULT_PATH.expanduser())


def configured() -> bool:
    """True when a store was chosen (`use(url)`, $COSTLAB_STORE, or the default file already exists)."""
    return bool(_current) or bool(os.environ.get(STORE_ENV)) or DEFAULT_PATH.expanduser().is_file()


def use(url: str | os.PathLike | None = None) -> Store:
    """The store at `url`, which then serves `save`, `runs`, `load`... in this process; without
    `url`, the store in use (`default_url()`). Each is opened (and migrated) once per process.
    """
    if url is not None:
        _current[:] = [str(url)]
    key = default_url()
    if key not in _open:
        _open[key] = Store(key)
    return _open[key]


def save(result: Result, experiment: str, *, tags=(), note: str = "", wall_s: float | None = None) -> int:
    """Save `result` under `experiment` in the default store; returns the run id."""
    return use().save(result, experiment, tags=tags, note=note, wall_s=wall_s)


def runs(experiment: str | None = None, owner: str | None = None):
    """The saved runs as a DataFrame (oldest first)."""
    return use().runs(experiment, owner)


def load(run_id: int):
    """A saved run back as a Result (a recorded run as a RecordedRun)."""
    return use().load(run_id)


def ledger(run_id: int):
    """A saved run's ledger, exactly as saved."""
    return use().ledger(run_id)


def compare(a: int, b: int):
    """Run `b` against run `a`: per metric the change, its 95 % CI and a test (paired by seed when it can)."""
    return use().compare(a, b)


def set_baseline(name: str, run_id: int, note: str = "") -> None:
    use().set_baseline(name, run_id, note)


def baseline(name: str) -> int:
    return use().baseline(name)


def progress(owner: str | None = None):
    return use().progress(owner)


def record_progress(kind: str, item: str, passed: bool) -> bool:
    """Record a lesson's self-check or a challenge attempt when a store is configured.

    Returns whether it was recorded; it never raises, so a lesson never fails for its store, and
    a store that could not be reached is not tried again in this process (no lesson stalls).
    """
    if not configured() or default_url() in _unreachable:
        return False
    try:
        use().record_progress(kind, item, passed)
    except Exception:   # noqa: BLE001 — progress is a courtesy; the lesson goes on whatever the database says
        _unreachable.add(default_url())
        return False
    return True


Result.saver = save

__all__ = ["SCHEMA_VERSION", "STORE_ENV", "RecordedRun", "Store", "baseline", "compare", "configured",
           "default_url", "ledger", "load", "owner_name", "progress", "record_progress", "runs", "save",
           "set_baseline", "use"]
