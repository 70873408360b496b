"""Reading one TOML table with validation: every wrong value becomes one ScenarioError line.

`Table` wraps a dict read from a scenario file together with its dotted location, so an
error can say `scenarios/x.toml: traffic.arrivals.rate_per_s: expected a number > 0, got -3`.
Unknown keys are errors too, with a did-you-mean from `difflib`.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from lab.dists import DIST_PARAMS, Dist
from lab.errors import ScenarioError

_MISSING = object()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(name: str, choices) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: the largest integer any field takes (a 64-bit signed integer): larger ones are refused, never converted
MAX_INT = 2**63 - 1


class Table:
    """A TOML table being read: typed getters that check values and reject unknown keys."""

    def __init__(self, path: str, where: str, data: Any):
        self.path, self.where = str(path), where
        if not isinstance(data, dict):
            self.fail("", f"expected a table, got {_show(data)}")
        self.data = data
        self.seen: set[str] = set()

    def field(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, expected: str):
        raise ScenarioError(self.path, self.field(key) if key else self.where, expected)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is _MISSING:
                self.fail(key, "is required but missing")
            return default
        if self.data[key] is None:            # JSON's null (a policy), which TOML cannot write
            self.fail(key, "expected a value, got null")
        return self.data[key]

    def number(self, key: str, default: Any = _MISSING, *, min: float | None = None,
               max: float | None = None, strict_min: bool = False) -> float:
        """A finite int or float (not a bool), optionally bounded."""
        value = self.raw(key, default)
        if value is None:
            self._null(key, default, "a number")
            return value
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            self.fail(key, f"expected a number, got an integer of {len(str(abs(value))):,} digits")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"expected a number, got {_show(value)}")
        if min is not None and (value <= min if strict_min else value < min):
            self.fail(key, f"expected a number {'>' if strict_min else '>='} {min:g}, got {value!r}")
        if max is not None and value > max:
            self.fail(key, f"expected a number <= {max:g}, got {value!r}")
        return float(value)

    def integer(self, key: str, default: Any = _MISSING, *, min: int | None = None) -> int:
        value = self.raw(key, default)
        if value is None:
            self._null(key, default, "a whole number")
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.fail(key, f"expected a whole number, got {_show(value)}")
        if abs(value) > MAX_INT:
            self.fail(key, f"expected a whole number of at most {MAX_INT:,}, got one of {len(str(abs(value))):,} digits")
        if min is not None and value < min:
            self.fail(key, f"expected a whole number >= {min}, got {value!r}")
        return int(value)

    def _null(self, key: str, default: Any, expected: str) -> None:
        """An explicit None (a dict handed to scenario_from_dict; TOML has no null) only where None is the default."""
        if default is not None and key in self.data:
            self.fail(key, f"expected {expected}, got None")

    def probability(self, key: str, default: Any = _MISSING) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            self.fail(key, f"expected a probability in [0, 1], got {_show(value)}")
        return float(value)

    def string(self, key: str, default: Any = _MISSING, *, choices=None) -> str:
        value = self.raw(key, default)
        if value is None:
            return value
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_show(value)}")
        if choices is not None and value not in choices:
            options = ", ".join(repr(c) for c in choices)
            self.fail(key, f"expected one of {options}, got {value!r}{did_you_mean(value, choices)}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_show(value)}")
        return value

    def table(self, key: str, default: Any = _MISSING) -> Table | None:
        value = self.raw(key, default)
        if value is None:
            return None
        return Table(self.path, self.field(key), value)

    def tables(self, key: str, default: Any = _MISSING) -> list[Table]:
        """An array of tables (`[[x]]` or `x = [{...}, {...}]`)."""
        value = self.raw(key, default)
        if not isinstance(value, list):
            self.fail(key, f"expected an array of tables, got {_show(value)}")
        return [Table(self.path, f"{self.field(key)}[{i}]", v) for i, v in enumerate(value)]

    def numbers(self, key: str, default: Any = _MISSING, *, min: float | None = None) -> tuple[float, ...]:
        """A non-empty array of finite numbers, as floats; `default` (as given) when the key is absent."""
        if key not in self.data and default is not _MISSING:
            self.seen.add(key)
            return default
        value = self.raw(key, default)
        if not isinstance(value, list) or not value:
            self.fail(key, f"expected a non-empty array of numbers, got {_show(value)}")
        out = []
        for i, v in enumerate(value):
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
                self.fail(f"{key}[{i}]", f"expected a number, got an integer of {len(str(abs(v))):,} digits")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                self.fail(f"{key}[{i}]", f"expected a number, got {_show(v)}")
            if min is not None and v < min:
                self.fail(f"{key}[{i}]", f"expected a number >= {min:g}, got {v!r}")
            out.append(float(v))
        return tuple(out)

    def dist(self, key: str, default: Any = _MISSING, *, kinds=None) -> Dist | None:
        """A distribution in the shared spelling `{ dist = ..., params }`."""
        if key not in self.data:
            self.seen.add(key)
            if default is _MISSING:
                self.fail(key, "is required but missing")
            return default
        table = self.table(key)
        if table is None:   # no TOML value is null, but a dict handed to scenario_from_dict can be
            self.fail(key, 'expected a distribution table like { dist = "constant", value = 1 }, got None')
        return read_dist(table, kinds)

    def done(self) -> None:
        """Reject keys nobody asked for, with a did-you-mean."""
        for key in self.data:
            if key not in self.seen:
                self.fail(key, f"unknown field{did_you_mean(key, self.seen)}")


#: bounds on distribution parameters (scenarios/README.md): beyond them draws overflow to inf or nan
MAX_SIGMA = 10.0
MAX_DIST_VALUE = 1e12


def read_dist(t: Table, kinds=None) -> Dist:
    """Validate one `{ dist = ... }` table into a `Dist`."""
    kinds = list(kinds or DIST_PARAMS)
    kind = t.string("dist", choices=kinds)
    required, optional = DIST_PARAMS[kind]
    kw: dict[str, Any] = {}
    for name in required + optional:
        if name not in required and not t.has(name):
            continue
        if name in ("values", "weights"):
            kw[name] = t.numbers(name, min=0.0)
        elif name == "sigma":
            kw[name] = t.number(name, min=0.0, max=MAX_SIGMA)
        else:
            kw[name] = t.number(name, min=0.0, max=MAX_DIST_VALUE)
    if kind == "uniform" and kw["high"] < kw["low"]:
        t.fail("high", f"expected high >= low ({kw['low']:g}), got {kw['high']:g}")
    if kind == "lognormal" and kw["median"] <= 0:
        t.fail("median", f"expected a number > 0, got {kw['median']:g}")
    if kind == "empirical" and "weights" in kw:
        if len(kw["weights"]) != len(kw["values"]):
            t.fail("weights", f"expected {len(kw['values'])} weights (one per value), got {len(kw['weights'])}")
        if sum(kw["weights"]) <= 0:
            t.fail("weights", "expected weights with a positive sum")
    t.done()
    return Dist(kind, **kw)
