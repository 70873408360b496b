"""Parameter sweeps: every combination of a grid of scenario fields, times seeds, in parallel.

    import lab
    table = lab.sweep("scenarios/support-chatbot.toml",
                      {"pipeline[0].capacity": [100, 1000], "traffic.arrivals.rate_per_s": [5, 10]},
                      seeds=5)                      # local processes, one per core
    table = lab.sweep(..., client=distributed.Client("tcp://scheduler:8786"))   # a Dask cluster

A grid maps dotted paths into the scenario file (`pipeline[0].capacity`, `providers[0].latency_ms.mean`,
`sla.p95_ms`; a list item by index or by its stage/provider name: `pipeline[cache].ttl_s`) to the
values to try. Every grid point is validated like a scenario file before anything runs. Each run is
one call of the module-level `run_point(scenario_dict, seed, requests)`, submitted to a
`concurrent.futures.ProcessPoolExecutor` or a `dask.distributed.Client` alike: the same code from
a laptop to a cluster. The result is one row per grid point with the mean and the 95 % Student t
confidence interval of every summary metric over the seeds.
"""

from __future__ import annotations

import concurrent.futures
import copy
import itertools
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lab.runs as lab_runs
from lab.config import did_you_mean
from lab.errors import CostlabError, ScenarioError
from lab.loader import load_scenario, scenario_from_dict
from lab.scenario import Scenario
from lab.sim import baseline_key

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_SEEDS = 5
CI_LEVEL = 0.95
#: summary fields that label a run rather than measure it
_NOT_METRICS = ("seed",)

_SEGMENT = re.compile(r"([A-Za-z0-9_-]+)((?:\[[^\[\]]+\])*)$")
_INDEX = re.compile(r"\[([^\[\]]+)\]")


class SweepError(CostlabError):
    """A grid that cannot be applied to its scenario, or a run of the sweep that failed."""


# --------------------------------------------------------------------------- grid paths


def parse_path(path: str) -> list[str | int]:
    """`"pipeline[0].capacity"` -> `["pipeline", 0, "capacity"]` (a name in brackets stays a string)."""
    if not isinstance(path, str) or not path.strip():
        raise SweepError(f"grid path {path!r}: expected a dotted path such as 'pipeline[0].capacity'")
    out: list[str | int] = []
    for segment in path.split("."):
        m = _SEGMENT.match(segment)
        if not m:
            raise SweepError(f"grid path {path!r}: cannot read {segment!r}; expected key, key[0] or "
                             "key[name], joined by dots (e.g. 'pipeline[0].capacity')")
        out.append(m.group(1))
        for index in _INDEX.findall(m.group(2)):
            out.append(int(index) if re.fullmatch(r"-?\d+", index.strip()) else ("name", index.strip()))
    return out


def _item_name(item: Any) -> str | None:
    if isinstance(item, dict):
        return item.get("stage", item.get("name"))
    return None


def child(node: Any, key, path: str, where: str = ""):
    """The child of a scenario dict `node` at a parsed path `key` (see `parse_path`), or a SweepError."""
    return _step(node, key, path, where)


def _step(node: Any, key, path: str, where: str):
    """The child of `node` at `key`, with an error naming the path when it is not there."""
    if isinstance(key, str):
        if not isinstance(node, dict):
            raise SweepError(f"grid path {path!r}: {where or 'the scenario'} is not a table, so it has no field {key!r}")
        if key not in node:
            raise SweepError(f"grid path {path!r}: the scenario has no {key!r} under {where or 'its top level'}"
                             f"{did_you_mean(key, node)}; fields there: {', '.join(node) or 'none'}")
        return node[key]
    if not isinstance(node, list):
        raise SweepError(f"grid path {path!r}: {where} is not a list, so it cannot be indexed")
    if isinstance(key, tuple):                       # ("name", "cache"): the item whose stage/name it is
        names = [_item_name(item) for item in node]
        hits = [k for k, n in enumerate(names) if n == key[1]]
        if len(hits) != 1:
            problem = "no item" if not hits else f"{len(hits)} items"
            raise SweepError(f"grid path {path!r}: {where} has {problem} named {key[1]!r} "
                             f"(names there: {', '.join(str(n) for n in names)}); use an index instead")
        return node[hits[0]]
    if not -len(node) <= key < len(node):
        raise SweepError(f"grid path {path!r}: {where} has {len(node)} item(s), so index {key} is out of range")
    return node[key]


def _describe(keys) -> str:
    text = ""
    for key in keys:
        if isinstance(key, str):
            text += f".{key}" if text else key
        elif isinstance(key, tuple):
            text += f"[{key[1]}]"
        else:
            text += f"[{key}]"
    return text


def set_path(data: dict, path: str, value: Any) -> None:
    """Set `path` in a scenario dict in place; the last field may be new (a default not written out)."""
    keys = parse_path(path)
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        node = _step(node, key, path, _describe(keys[:depth]))
    last, where = keys[-1], _describe(keys[:-1])
    if isinstance(last, str):
        if not isinstance(node, dict):
            raise SweepError(f"grid path {path!r}: {where or 'the scenario'} is not a table, so it has no field {last!r}")
        node[last] = copy.deepcopy(value)
    else:
        _step(node, last, path, where)               # checks the index or name
        index = last if isinstance(last, int) else [_item_name(i) for i in node].index(last[1])
        node[index] = copy.deepcopy(value)


def apply_point(data: dict, point: Mapping[str, Any]) -> dict:
    """A copy of scenario dict `data` with every path of `point` set to its value."""
    out = copy.deepcopy(data)
    for path, value in point.items():
        set_path(out, path, value)
    return out


def read_grid(path: str | Path) -> dict[str, list]:
    """A grid from a TOML file: `"pipeline[0].capacity" = [100, 1000]`, or nested `[traffic.arrivals]` tables."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{path}: grid file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"{path}: cannot read the grid file ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: not valid TOML: {exc}") from None
    grid: dict[str, list] = {}

    def walk(prefix: str, table: dict) -> None:
        for key, value in table.items():
            full = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                walk(full, value)
            else:
                grid[full] = value

    walk("", data)
    return check_grid(grid, source=str(path))


def check_grid(grid: Mapping[str, Any], source: str = "grid") -> dict[str, list]:
    """The grid as {path: list of values}; each path parsed, each value list non-empty."""
    if not isinstance(grid, Mapping):
        raise SweepError(f"{source}: expected a dict of grid paths to lists of values, got {type(grid).__name__}")
    out = {}
    for path, values in grid.items():
        parse_path(path)
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise SweepError(f"grid path {path!r}: expected a list of values to try, got {values!r}")
        values = list(values)
        if not values:
            raise SweepError(f"grid path {path!r}: expected at least one value, got an empty list")
        out[path] = values
    return out


# --------------------------------------------------------------------------- the scenario


@dataclass(frozen=True)
class Source:
    """A scenario as the workers get it: its TOML dict and the path relative trace files resolve against."""

    data: dict
    path: str
    name: str


def scenario_source(scenario) -> Source:
    """Accept a scenario file path, its TOML text, its dict, or a `Scenario` loaded from a file."""
    if isinstance(scenario, Scenario):
        file = Path(scenario.path)
        if not file.is_file() or load_scenario(file) != scenario:
            raise SweepError("a sweep needs the scenario as a file, TOML text or dict (each grid point is "
                             "validated like a file); this Scenario was built or changed in memory: pass "
                             "its file path or dict instead")
        scenario = file
    if isinstance(scenario, Mapping):
        data, path = copy.deepcopy(dict(scenario)), "<sweep>"
    elif isinstance(scenario, str) and "\n" in scenario:
        try:
            data, path = tomllib.loads(scenario), "<sweep>"
        except tomllib.TOMLDecodeError as exc:
            raise SweepError(f"scenario text: not valid TOML: {exc}") from None
    elif isinstance(scenario, (str, Path)):
        file = Path(scenario)
        load_scenario(file)                             # the file's own errors first, naming the file
        data, path = tomllib.loads(file.read_text(encoding="utf-8")), str(file.resolve())
    else:
        raise SweepError(f"expected a scenario file path, TOML text, dict or Scenario, got {type(scenario).__name__}")
    return Source(data=data, path=path, name=str(data.get("name", Path(path).stem)))


def _validate(source: Source, point: Mapping[str, Any]) -> dict:
    """The point's scenario dict, checked by `scenario_from_dict`; errors name the grid point."""
    data = apply_point(source.data, point)
    try:
        scenario_from_dict(data, path=source.path)
    except ScenarioError as exc:
        shown = ", ".join(f"{p} = {_label(v)}" for p, v in point.items())
        raise SweepError(f"grid point {shown}: {exc}") from None
    return data


def grid_points(source: Source, grid: Mapping[str, list]) -> list[dict]:
    """Every combination of the grid (first path varies slowest), each validated before anything runs."""
    for path, values in grid.items():               # one path at a time first: the error names it alone
        for value in values:
            _validate(source, {path: value})
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    for point in points:
        _validate(source, point)
    return points


# --------------------------------------------------------------------------- one run


def run_point(scenario: dict | str, seed: int, requests: int | None = None, path: str = "<sweep>") -> dict:
    """Simulate one grid point on one seed (`lab.runs.run`) and return `Result.summary()`.

    Module-level and given plain data (a scenario dict or TOML text), so a process pool or a Dask
    worker can run it; `path` is where relative trace paths resolve.
    """
    data = tomllib.loads(scenario) if isinstance(scenario, str) else scenario
    try:
        return lab_runs.run(scenario_from_dict(data, path=path), int(seed), requests).summary()
    except CostlabError as exc:                     # re-raised as a one-argument error: it pickles back
        raise SweepError(f"seed {seed}: {exc}") from None


def run_points(scenarios: list, seed: int, requests: int | None = None, path: str = "<sweep>") -> list[dict]:
    """`run_point` for several grid points on one seed, in one worker: points that differ only in
    their pipeline share one request stream and baseline there (`lab.sim.BASELINES`)."""
    return [run_point(scenario, seed, requests, path) for scenario in scenarios]


def _baseline_groups(datas: list, seeds: list, requests: int | None, path: str) -> list[tuple[int, list[int]]]:
    """(seed, grid point indices) with one baseline each: same traffic, providers and size."""
    groups: dict[tuple, list[int]] = {}
    keys = []
    for k, data in enumerate(datas):
        try:
            key = baseline_key(scenario_from_dict(copy.deepcopy(data), path=path), 0, requests)
        except CostlabError:
            key = None                  # the worker reports it, with its seed
        keys.append(key if key is not None else ("point", k))
    for seed in seeds:
        for k, key in enumerate(keys):
            groups.setdefault((key, seed), []).append(k)
    return [(seed, ks) for (_, seed), ks in groups.items()]


def metrics_of(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric fields of a summary, flattened to dotted names (`latency_ms.p95`, `by_stage.cache.hits`)."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(metrics_of(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and name not in _NOT_METRICS:
            out[name] = float(value)
    return out


# --------------------------------------------------------------------------- running many


class _Pool:
    """Submit and collect on either backend: `concurrent.futures` processes or a Dask client."""

    def __init__(self, client, workers: int):
        self.client = client
        self.executor = None
        if client is None:
            self.executor = concurrent.futures.ProcessPoolExecutor(max_workers=workers)

    def submit(self, fn, *args):
        if self.client is not None:
            return self.client.submit(fn, *args, pure=False)
        return self.executor.submit(fn, *args)

    def as_completed(self, futures):
        if self.client is not None:
            from distributed import as_completed  # optional: only a sweep on a Dask client needs it

            return as_completed(futures)
        return concurrent.futures.as_completed(futures)

    def close(self, futures) -> None:
        if self.client is not None:
            self.client.cancel([f for f in futures if not f.done()])
        else:
            self.executor.shutdown(wait=True, cancel_futures=True)


def sweep_runs(scenario, grid: Mapping[str, Any], seeds=DEFAULT_SEEDS, client=None, requests: int | None = None,
               *, workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Every grid point on every seed: one row per run (grid values, `seed`, every summary metric).

    `client`: a `dask.distributed.Client` to run on; None runs `workers` local processes
    (default: one per core). Runs are independent, so the numbers do not depend on where they ran.
    """
    from tqdm.auto import tqdm  # loads IPython's display hooks; `import lab` imports this module

    if requests is not None and (isinstance(requests, bool) or int(requests) < 1):
        raise SweepError(f"requests: expected a whole number >= 1, got {requests!r}")
    source = scenario_source(scenario)
    grid = check_grid(grid)
    seed_list = lab_runs.seed_list(seeds)
    points = grid_points(source, grid)
    datas = [apply_point(source.data, p) for p in points]
    tasks = [(k, seed) for k in range(len(points)) for seed in seed_list]
    groups = _baseline_groups(datas, seed_list, requests, source.path)
    workers = max(1, min(workers or os.cpu_count() or 1, len(groups)))
    pool = _Pool(client, workers)
    futures = {}
    summaries: dict[tuple[int, int], dict] = {}
    try:
        for seed, ks in groups:
            futures[pool.submit(run_points, [datas[k] for k in ks], seed, requests, source.path)] = (seed, ks)
        with tqdm(total=len(tasks), desc=f"sweep {source.name}", unit="run", disable=not progress) as bar:
            for future in pool.as_completed(list(futures)):
                seed, ks = futures[future]
                for k, summary in zip(ks, future.result()):
                    summaries[k, seed] = summary
                bar.update(len(ks))
    finally:
        pool.close(list(futures))
    rows = []
    for k, seed in tasks:
        row = {path: _label(value) for path, value in points[k].items()}
        row["seed"] = seed
        row.update(metrics_of(summaries[k, seed]))
        rows.append(row)
    import pandas as pd  # loaded when a sweep runs, not by `import lab`

    runs = pd.DataFrame(rows)
    runs.attrs["grid"] = list(grid)
    runs.attrs["scenario"] = source.name
    return runs


def summarize(runs: pd.DataFrame, metrics: Iterable[str] | None = None, level: float = CI_LEVEL) -> pd.DataFrame:
    """One row per grid point: `seeds`, then `<metric>.mean`, `.ci95_low`, `.ci95_high` (Student t over seeds).

    `metrics` keeps only these summary fields (a name or a prefix such as `by_stage.cache`).
    With one seed the interval is NaN: it cannot be told from one run.
    """
    # lab.analysis loads pandas and lab.analysis.stats scipy.stats (about 1 s); `import lab` imports this module
    from lab.analysis.stats import mean_ci

    grid = list(runs.attrs.get("grid", []))
    names = [c for c in runs.columns if c not in grid and c != "seed"]
    if metrics is not None:
        wanted = list(metrics)
        for w in wanted:
            if not any(n == w or n.startswith(w + ".") for n in names):
                raise SweepError(f"metric {w!r}: not in the summary{did_you_mean(w, names)}")
        names = [n for n in names if any(n == w or n.startswith(w + ".") for w in wanted)]
    tag = f"ci{round(level * 100)}"
    rows = []
    groups = runs.groupby(grid, sort=False, dropna=False) if grid else [((), runs)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(grid, key))
        row["seeds"] = len(group)
        for name in names:
            values = group[name].dropna().to_numpy()
            mean, low, high = mean_ci(values, level) if len(values) else (math.nan, math.nan, math.nan)
            row[f"{name}.mean"], row[f"{name}.{tag}_low"], row[f"{name}.{tag}_high"] = mean, low, high
        rows.append(row)
    import pandas as pd  # loaded when a sweep runs, not by `import lab`

    out = pd.DataFrame(rows)
    out.attrs["grid"] = grid
    out.attrs["scenario"] = runs.attrs.get("scenario", "")
    return out


def sweep(scenario, grid: Mapping[str, Any], seeds=DEFAULT_SEEDS, client=None, requests: int | None = None,
          *, workers: int | None = None, metrics: Iterable[str] | None = None, progress: bool = True) -> pd.DataFrame:
    """Run every combination of `grid` on every seed; one row per grid point with means and 95 % CIs.

    `scenario`: a scenario file, its TOML text or dict, or a `Scenario` loaded from a file.
    `grid`: {dotted path: [values]}. `seeds`: a count (seeds 0..N-1) or a list. `client`: a
    `dask.distributed.Client`, or None for local processes (`workers`, default one per core).
    `requests` overrides each run's size. Columns: the grid paths, `seeds`, then for every
    summary metric `<metric>.mean`, `<metric>.ci95_low`, `<metric>.ci95_high`.
    """
    runs = sweep_runs(scenario, grid, seeds, client, requests, workers=workers, progress=progress)
    return summarize(runs, metrics)


def _label(value: Any) -> Any:
    """A grid value as a table cell: scalars as they are, tables and lists as compact JSON."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
