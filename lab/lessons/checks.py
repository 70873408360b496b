"""The self-check framework: an exercise's task, its `measure(...)` and its `check(...)` verdict.

A check reads like the rules it applies. It states what a setting must satisfy, one `require`
at a time, and ends with the message for a pass; the `self_check` decorator turns the first
unmet requirement into a red `Check` with its hint, so a learner's check never raises:

    @self_check
    def check(self, capacity=None):
        require_number(capacity, "capacity", integer=True)
        hit = self.measure(capacity)["cache_hit_rate"]
        require(hit >= 0.4, f"only {100 * hit:.1f} % hits: make it bigger", {"hit_rate": hit})
        return f"{capacity} entries reach {100 * hit:.1f} % hits.", {"hit_rate": hit}
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.fmt import html_text, ms, number, share, usd
from lab.plots import BLUE, GREEN, RED
from lab.result import Result
from lab.runs import metrics
from lab.store import record_progress


@dataclass
class Check:
    """A self-check's verdict: shown green or red in a notebook, truthy when passed."""

    lesson: str
    passed: bool
    message: str
    measured: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed

    def _numbers(self) -> str:
        return ", ".join(f"{k} = {number(v) if isinstance(v, float) else v}" for k, v in self.measured.items())

    def __repr__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        numbers = f" ({self._numbers()})" if self.measured else ""
        return f"[lesson {self.lesson} self-check: {mark}] {self.message}{numbers}"

    def _repr_html_(self) -> str:
        color, mark = (GREEN, "passed") if self.passed else (RED, "not yet")
        numbers = f"<br><small>{html_text(self._numbers())}</small>" if self.measured else ""
        return (f'<div style="border-left:4px solid {color};padding:4px 10px">'
                f'<b style="color:{color}">{mark}</b> — {html_text(self.message)}{numbers}</div>')


class Measured(dict):
    """What `ex.measure(...)` returns: a plain dict whose printout reads like the tables (lab.fmt by unit)."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {_readable(k, v)}" for k, v in self.items()) + "}"

    def _repr_html_(self) -> str:
        return "<code>" + html_text(repr(self)) + "</code>"


def _readable(key: str, value) -> str:
    """A measured value as a learner reads it: its unit from its name's suffix."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    if key.endswith("_usd"):
        return usd(value)
    if key.endswith("_ms"):
        return ms(value)
    if key.endswith(("_rate", "_share")) or key == "share":
        return share(value, 2)
    return number(value)


class NotYet(Exception):
    """A setting that does not pass (yet): the hint a learner sees, and the numbers behind it."""

    def __init__(self, hint: str, measured: dict | None = None):
        super().__init__(hint)
        self.hint, self.measured = hint, dict(measured or {})


def require(condition: bool, hint: str, measured: dict | None = None) -> None:
    """Go on when `condition` holds; otherwise the check fails here with `hint`."""
    if not condition:
        raise NotYet(hint, measured)


def require_number(value, name: str, *, integer: bool = False) -> None:
    """Fail the check, naming the setting, unless `value` is a usable (whole, if `integer`) number."""
    bad = (isinstance(value, bool) or not isinstance(value, (int, float))
           or (isinstance(value, float) and not math.isfinite(value)))
    if bad or (integer and float(value) != int(value)):
        raise NotYet(f"{name} should be {'a whole number' if integer else 'a number'}, got {value!r}")


def self_check(judge: Callable) -> Callable:
    """Make `judge(self, ...)`, which returns (pass message, numbers) or fails a `require`, a self-check.

    The check returns a `Check` either way; only a bug in the exercise itself raises. When an
    experiment store is configured, the attempt is recorded as the learner's progress (never
    failing the lesson when none is, or when the store cannot be reached).
    """
    @functools.wraps(judge)
    def check(self, *args, **settings) -> Check:
        try:
            message, measured = judge(self, *args, **settings)
            verdict = Check(self.lesson, True, message, measured)
        except NotYet as miss:
            verdict = Check(self.lesson, False, miss.hint, miss.measured)
        record_progress("lesson", self.lesson, verdict.passed)
        return verdict
    return check


class Exercise:
    """A lesson's "try it": a task, a way to explore (`measure`) and a self-check (`check`).

    `reference` holds settings that pass and `wrong` a tempting setting that does not; both
    are plain keyword dicts for `check` (exercises that grade a learner's reading of their own
    run take the `Result` as the first argument instead, and have no fixed reference).
    """

    lesson = ""
    title = ""
    task = ""
    reference: dict = {}
    wrong: dict = {}

    def __init_subclass__(cls, **kwargs):
        """Every exercise's `measure` returns a `Measured`: numbers printed by lab.fmt, not 17 digits."""
        super().__init_subclass__(**kwargs)
        measure = cls.__dict__.get("measure")
        if measure is not None:
            @functools.wraps(measure)
            def measured(self, *args, **kw):
                out = measure(self, *args, **kw)
                return Measured(out) if isinstance(out, dict) and not isinstance(out, Measured) else out
            cls.measure = measured

    def _memo(self, key, compute: Callable[[], dict]) -> dict:
        """`compute()` once per key: searches and checks re-measure the same settings."""
        cache = self.__dict__.setdefault("_measured", {})
        if key not in cache:
            cache[key] = compute()
        return dict(cache[key])

    def _repr_html_(self) -> str:
        return (f"<div style='border-left:4px solid {BLUE};padding:4px 10px'><b>Try it · lesson {self.lesson}: "
                f"{html_text(self.title)}</b><br>{html_text(self.task)}</div>")

    def __repr__(self) -> str:
        return f"Try it · lesson {self.lesson}: {self.title}\n{self.task}"


def smallest_passing(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The smallest integer in [lo, hi] for which the monotone test `ok` holds (hi if none below)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def picked(result: Result, *names: str) -> dict:
    """Some of a run's `lab.runs.metrics`, by name: what an exercise's `measure` reports."""
    m = metrics(result)
    return {name: m[name] for name in names}
