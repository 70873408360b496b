"""The simulation: requests arrive, pass the pipeline's stages, and are served by a provider.

One SimPy process walks the arrival times; each arrival is handed to the first stage. A
stage that answers (a cache hit) writes the ledger row at once; one that holds a request
(a dedup follower) finishes it when the leader's answer comes back; what passes every
stage goes to a provider, whose completion flows back through the stages in reverse
order. `simulate` runs the scenario and its no-optimization baseline on the same stream.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simpy
from simpy.core import NORMAL, URGENT

from lab.errors import ConfigError, ScenarioError
from lab.ledger import ERROR, OK, REJECTED, RunArrays
from lab.live import RUN_SESSIONS, Session
from lab.loader import load_scenario
from lab.pricing import model_prices
from lab.providers.mock import MockProvider
from lab.providers.sdk import LiveProvider
from lab.quality import QualityModel
from lab.result import Result
from lab.scenario import PRIORITIES, Scenario
from lab.stages import Stage, build_stage, stage_labels
from lab.traffic import Requests, make_requests

PROGRESS_MIN_REQUESTS = 200_000
ENGINES = ("auto", "simpy")


class Simulation:
    """One run of a request stream through a pipeline (empty for the baseline)."""

    def __init__(self, scenario: Scenario, requests: Requests, seed: int, *, optimized: bool = True,
                 progress: bool | None = None, label: str = "run", engine: str = "auto"):
        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
        self.scenario, self.requests, self.seed, self.engine = scenario, requests, seed, engine
        self.env = simpy.Environment()
        self.run = RunArrays(len(requests))
        if optimized:
            self.run.input_tokens[:] = requests.input_tokens
            self.run.output_tokens[:] = requests.output_tokens
        else:   # nothing changes what a baseline sends or gets back: the stream's own arrays
            self.run.input_tokens, self.run.output_tokens = requests.input_tokens, requests.output_tokens
        self.target = np.zeros(len(requests), dtype=np.int8)          # provider a request will go to
        self.retry_after_s = np.zeros(len(requests), dtype=np.float32)  # from a 429, for retry stages
        _, provider_seeds, stage_seeds = np.random.SeedSequence(seed).spawn(3)
        self.providers = [(LiveProvider if cfg.kind in ("live", "replay") else MockProvider)(
                              self, cfg, k, np.random.default_rng(s))
                          for k, (cfg, s) in enumerate(zip(scenario.providers, provider_seeds.spawn(len(scenario.providers))))]
        self.cache_write_1h = False   # a prompt-cache stage with 1-hour writes sets this
        self.quality_model = QualityModel(requests) if requests.difficulty is not None else None
        configs = scenario.pipeline if optimized else ()
        self.stages = [build_stage(cfg, self, j, np.random.default_rng(s))
                       for j, (cfg, s) in enumerate(zip(configs, stage_seeds.spawn(len(configs))))]
        self._guarded = any(s.outages or s.config.overhead_ms is not None for s in self.stages)
        self.routes = Routes(scenario, requests, configs) if optimized and scenario.routes else None
        self._start_hooks = [s for s in self.stages if hasattr(s, "on_start")]
        # the common path: no routes, no outage windows, no overheads; each stage's bound on_request
        self._plain = self.routes is None and not self._guarded
        self._on_request = tuple(s.on_request for s in self.stages)
        self._target = memoryview(self.target)        # the same buffer, read as Python ints
        self.trims_output = any(getattr(s, "changes_output_tokens", False) for s in self.stages)
        self._response_hooks = [s for s in reversed(self.stages) if type(s).on_response is not Stage.on_response]
        self.progress = len(requests) >= PROGRESS_MIN_REQUESTS if progress is None else progress
        self.label = label

    # -- the story ----------------------------------------------------------------

    def arrivals(self):
        """Hand each request to the pipeline at its arrival time (the reference: a Timeout per gap)."""
        env, times, forward = self.env, self.requests.t_arrival_s, self.forward
        bar = _progress_bar(len(times), self.label) if self.progress else None
        for i in range(len(times)):
            delay = times[i] - env.now
            if delay > 0:
                yield env.timeout(delay)
            forward(i, 0)
            if bar is not None and not i & 0xFFFF:
                bar.update(min(0x10000, len(times) - i))
        if bar is not None:
            bar.close()

    def drive(self) -> None:
        """Run the whole stream: arrivals merged into SimPy's event loop, no Timeout per arrival.

        Each arrival takes the place in the event order its `arrivals` Timeout would have had
        (same time, priority and a fresh event id taken at the same moment), and the clock moves
        as SimPy moves it (`now + delay`), so the run is the reference's event for event
        (tests/test_engines.py) at a fraction of the events.
        """
        env, forward = self.env, self.forward
        times = memoryview(np.ascontiguousarray(self.requests.t_arrival_s, dtype=np.float64))   # Python floats
        queue, step, eid = env._queue, env.step, env._eid
        bar = _progress_bar(len(times), self.label) if self.progress else None
        key = (0.0, URGENT, next(eid))    # where the reference's arrival process starts
        while queue and queue[0] < key:
            step()
        now = env._now = 0.0
        for i, t in enumerate(times):
            delay = t - now
            if delay > 0:
                now += delay
                key = (now, NORMAL, next(eid))
                while queue and queue[0] < key:
                    step()
                env._now = now
            forward(i, 0)
            if bar is not None and not i & 0xFFFF:
                bar.update(min(0x10000, len(times) - i))
        if bar is not None:
            bar.close()
        env.run()

    def forward(self, i: int, first_stage: int) -> None:
        """Offer request i to the stages from `first_stage` on; what none takes goes to a provider."""
        if self._plain:
            for on_request in (self._on_request[first_stage:] if first_stage else self._on_request):
                if on_request(i):
                    return
            self.providers[self._target[i]].submit(i)
        elif self.routes is not None:
            self._forward_guarded(i, self.routes.stages_from(i, first_stage))
        else:
            self._forward_guarded(i, range(first_stage, len(self.stages)))

    def _forward_guarded(self, i: int, indices) -> None:
        """`forward` for pipelines with outage windows, overheads or routes (the common path stays lean)."""
        stages, run, now = self.stages, self.run, self.env.now
        for k in indices:
            stage = stages[k]
            if stage.outages and stage.down(now):
                if stage.config.on_failure == "bypass":     # fail open: as if the stage were not there
                    stage.bypassed += 1
                    continue
                stage.failed_closed += 1                    # fail closed: the request is refused
                self.answer(i, REJECTED, stage)
                run.answered_by[i] = -1                     # a refusal is not a saving of the stage's
                return
            if stage._overhead is not None:
                run.overhead_ms[i] += stage.overhead_ms()
            if stage.on_request(i):
                return
        self.dispatch(i)

    def _hooks_for(self, i: int, hooks):
        """The hooks of the stages on request i's route (all of them without routes)."""
        if self.routes is None:
            return hooks
        mask = self.routes.mask_of(i)
        return [s for s in hooks if s.bit & mask]

    def dispatch(self, i: int) -> None:
        """Hand request i to its target provider (the first one unless a router chose)."""
        self.providers[self._target[i]].submit(i)

    def on_start(self, i: int, provider) -> None:
        for stage in self._hooks_for(i, self._start_hooks):
            stage.on_start(i, provider)

    def complete(self, i: int, outcome: int, status: int = 200) -> None:
        """A provider answered request i (or failed): record it and tell the stages, last first.

        A stage may take the response over (a retry, a cascade escalating): it returns True,
        and the request is not finished yet as far as the stages before it are concerned.
        """
        run = self.run
        run.outcome[i] = outcome
        run.status[i] = status
        run.t_done_s[i] = self.env._now
        if self.quality_model is not None and outcome == OK:
            run.quality[i] = self.quality_model.score(self.providers[run.provider[i]], i)
        hooks = self._response_hooks if self.routes is None else self._hooks_for(i, self._response_hooks)
        for stage in hooks:
            if stage.on_response(i):
                return

    def answer(self, i: int, outcome: int, stage, delay_s: float = 0.0, quality: float | None = None) -> None:
        """A stage answered request i itself (no provider), `delay_s` after now."""
        run = self.run
        run.outcome[i] = outcome
        run.answered_by[i] = stage.index
        run.t_done_s[i] = self.env._now + delay_s
        run.stage_flags[i] |= stage.bit
        if quality is not None:
            run.quality[i] = quality
        self.finish_upstream(i, stage.index)

    def follow(self, i: int, leader: int, stage, outcome: int) -> None:
        """Request i waited at `stage` for `leader`'s answer and shares it (and its finish time)."""
        run = self.run
        failed = run.outcome[leader] == ERROR
        run.outcome[i] = ERROR if failed else outcome
        if not failed:
            run.answered_by[i] = stage.index
        run.t_done_s[i] = max(self.env.now, run.t_done_s[leader])
        run.quality[i] = run.quality[leader]
        run.stage_flags[i] |= stage.bit
        self.finish_upstream(i, stage.index)

    def finish_upstream(self, i: int, answered_at: int) -> None:
        """The stages before `answered_at` passed request i on: tell them it has its answer."""
        if not answered_at:       # answered by the first stage: none before it
            return
        for stage in self._hooks_for(i, self._response_hooks):
            if stage.index < answered_at and stage.on_response(i):
                return

    def live_session(self, config) -> Session:
        """The spend-capped session a live or replayed provider entry calls through.

        Keyed by the request stream, so the optimized run and its baseline (the same stream)
        share one budget and one cassette.
        """
        return RUN_SESSIONS.get(self.requests, config)

    def price_of(self, provider):
        return model_prices(provider.name, provider.model, provider.config.service_tier)

    def background_done(self, i: int, provider) -> None:
        for stage in self.stages:
            hook = getattr(stage, "on_background_done", None)
            if hook is not None:
                hook(i, provider)

    def run_to_end(self) -> RunArrays:
        if self.engine == "simpy":
            self.env.process(self.arrivals())
            self.env.run()
        elif not self.stages and isinstance(self.providers[0], MockProvider):
            # nothing between arrival and provider: the same FIFO story needs no events
            self.providers[0].serve_stream(arrival_clock(self.requests.t_arrival_s))
        else:
            self.drive()
        unfinished = int((self.run.outcome < 0).sum())
        if unfinished:  # every request must end somewhere; anything else is a stage bug
            raise RuntimeError(f"{unfinished} requests never finished in {self.label}")
        self.price()
        return self.run

    def price(self) -> None:
        """Cost of every answered request, vectorized per provider, from genai-prices' numbers."""
        run = self.run
        for k, provider in enumerate(self.providers):
            mask = (run.provider == k) & (run.outcome == OK) & (run.answered_by < 0)
            if not mask.any():
                continue
            measured = getattr(provider, "measured_cost_usd", None)
            if measured is not None:   # live or replayed calls: what the provider billed
                run.cost_usd[mask] = measured[mask]
                continue
            prices = self.price_of(provider)
            run.cost_usd[mask] = prices.cost_usd(run.input_tokens[mask], run.output_tokens[mask],
                                                 run.cached_input_tokens[mask], run.cache_write_tokens[mask],
                                                 write_1h=self.cache_write_1h)
        run.cost_usd += run.extra_cost_usd

    def list_price(self) -> np.ndarray:
        """Each request served once, uncached, by the first provider: the baseline's bill.

        Priced whatever the baseline run's outcome, so a reduction compares serving the same
        work (a request the unprotected baseline lost to an outage is not a saving).
        """
        return self.price_of(self.providers[0]).cost_usd(self.run.input_tokens, self.run.output_tokens)


class Routes:
    """Which stages each request meets: the first `[[routes]]` entry whose match it fits.

    A route lists stages of `[[pipeline]]` by name, in pipeline order; a stage on several
    routes is one stage (one store) serving all of them. A request no route matches meets
    no stage. Stages a variant dropped (an ablation) are skipped.
    """

    def __init__(self, scenario, requests, configs):
        labels = stage_labels(configs)
        index = {name: k for k, name in enumerate(labels)}
        req = requests
        self.route_of = np.full(len(req), len(scenario.routes), dtype=np.int16)   # last: no route
        for r in range(len(scenario.routes) - 1, -1, -1):     # the first match wins: write it last
            self.route_of[route_matches(scenario.routes[r], req)] = r
        self.route_of = self.route_of.tolist()
        self.sequences = [[index[n] for n in route.stages if n in index] for route in scenario.routes] + [[]]
        self.masks = [int(sum(1 << k for k in seq)) for seq in self.sequences]

    def stages_from(self, i: int, first_stage: int) -> list[int]:
        return [k for k in self.sequences[self.route_of[i]] if k >= first_stage]

    def mask_of(self, i: int) -> int:
        return self.masks[self.route_of[i]]


def route_matches(route, req) -> np.ndarray:
    """Requests a route's match fields (feature, tenant, priority; any listed value) select."""
    keep = np.ones(len(req), dtype=bool)
    for values, codes, names in ((route.feature, req.feature, req.feature_names),
                                 (route.tenant, req.tenant, req.tenant_names),
                                 (route.priority, req.priority, PRIORITIES)):
        if values:
            keep &= np.isin(codes, [names.index(v) for v in values if v in names])
    return keep


def arrival_clock(t_arrival_s: np.ndarray) -> np.ndarray:
    """SimPy's clock at each arrival: `now + (t - now)`, which is `t` save for a rare last bit.

    Vectorized on the assumption that the clock equals the previous arrival time; where that
    gives anything but `t`, the clock is walked one arrival at a time until it agrees again.
    """
    t = np.asarray(t_arrival_s, dtype=np.float64)
    if not len(t):
        return t.copy()
    prev = np.concatenate(([0.0], t[:-1]))
    gap = t - prev
    clock = np.where(gap > 0, prev + gap, prev)
    k, n = 0, len(t)
    for j in np.flatnonzero(clock != t).tolist():
        if j < k:
            continue
        now = float(clock[j - 1]) if j else 0.0
        k = j
        while k < n:
            delay = float(t[k]) - now
            if delay > 0:
                now += delay
            clock[k] = now
            k += 1
            if now == t[k - 1]:
                break
    return clock


def _progress_bar(total: int, label: str):
    from tqdm.auto import (
        tqdm,  # tqdm.auto probes for Jupyter widgets (ipywidgets) at import: only for long runs
    )

    return tqdm(total=total, desc=f"costlab {label}", unit="req", unit_scale=True, leave=False)


def _checked_arguments(scenario, seed, requests) -> tuple[Scenario, int, int | None]:
    """One clear error for a wrong argument, before anything is drawn."""
    if isinstance(scenario, (str, Path)):
        scenario = load_scenario(scenario)
    if not isinstance(scenario, Scenario):
        raise ConfigError(f"simulate: expected a Scenario or the path of a scenario file, got {type(scenario).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: expected a whole number >= 0, got {seed!r:.40}")
    if requests is not None and (isinstance(requests, bool) or not isinstance(requests, (int, np.integer))
                                 or requests < 1):
        raise ConfigError(f"requests: expected a whole number >= 1 (or none for the scenario's own size), "
                          f"got {requests!r:.40}")
    return scenario, int(seed), None if requests is None else int(requests)


@dataclass(frozen=True)
class Baseline:
    """A request stream and its no-optimization run: what every pipeline on that traffic shares.

    `key` names what it depends on (traffic, providers, size, seed; not the pipeline, name or
    SLA). Its arrays are read-only, so Results that share it cannot change each other's.
    """

    key: str
    requests: Requests
    run: RunArrays


def baseline_key(scenario: Scenario, seed: int, requests: int | None) -> str | None:
    """A hash of what a baseline depends on, or None when it must not be shared.

    Live and replayed providers are never shared: their calls are real (or recorded) and a
    run and its baseline share one spend cap. A trace's size and modification time are part
    of the key, so an edited trace is read again.
    """
    if any(p.kind != "mock" for p in scenario.providers):
        return None
    trace = scenario.traffic.arrivals.path
    stat = os.stat(trace) if trace and os.path.exists(trace) else None
    facts = (scenario.traffic, scenario.providers, scenario.duration_s, scenario.requests, requests, seed,
             scenario.path, (stat.st_size, stat.st_mtime_ns) if stat else None)
    return hashlib.sha256(pickle.dumps(facts, protocol=5)).hexdigest()


def make_baseline(scenario: Scenario, seed: int = 0, requests: int | None = None, *,
                  progress: bool | None = None, key: str | None = None, engine: str = "auto") -> Baseline:
    """Draw the stream for (scenario, seed) and run it with no stages, priced at list price."""
    traffic_seed = np.random.SeedSequence(seed).spawn(3)[0]
    stream = make_requests(scenario, np.random.default_rng(traffic_seed), requests)
    if len(stream) == 0:
        raise ScenarioError(scenario.path, "duration_s", "the scenario produced no requests: "
                            "raise duration_s or the arrival rate")
    base_sim = Simulation(scenario.replace(pipeline=()), stream, seed, optimized=False, progress=progress,
                          label="baseline", engine=engine)
    run = base_sim.run_to_end()
    run.cost_usd = base_sim.list_price()
    base_sim.providers.clear()   # they point back at the sim: break the cycle so their draws go now, not at a GC
    if key is not None:
        for arrays in (vars(stream), vars(run)):
            for name, value in arrays.items():
                if isinstance(value, np.ndarray):
                    arrays[name] = frozen(value)
    return Baseline(key or "", stream, run)


def frozen(values: np.ndarray) -> np.ndarray:
    """`values` made read-only; a column holding one value throughout becomes a view of that one.

    A shared baseline keeps its stream and run for every pipeline on that traffic: of a 1M-request
    support-chatbot baseline, 54 MB are columns like `max_tokens` or `queue_ms` that never vary.
    The test is bitwise (0.0 and -0.0 differ), so every read gives exactly what was stored.
    """
    if values.ndim == 1 and values.size > 1 and values.dtype.kind in "biuf":
        bits = values.view(f"u{values.itemsize}")
        if (bits == bits[0]).all():
            return np.broadcast_to(values[:1].copy(), values.shape)   # read-only, 0-stride
    values.setflags(write=False)
    return values


class BaselineCache:
    """Baselines by `baseline_key`, most recently used kept, at most `max_requests` rows in all.

    `simulate` asks it first, so what-ifs, recommendations, sweeps, grading seeds and
    ablations that vary only the pipeline compute each (traffic, seed) baseline once.
    """

    def __init__(self, max_requests: int = 1_000_000, max_entries: int = 64):
        self.max_requests, self.max_entries = max_requests, max_entries
        self.entries: OrderedDict[str, Baseline] = OrderedDict()
        self.hits = self.misses = 0
        self.enabled = True

    def get(self, scenario: Scenario, seed: int = 0, requests: int | None = None, *,
            progress: bool | None = None, engine: str = "auto") -> Baseline:
        key = baseline_key(scenario, seed, requests) if self.enabled else None
        if key is not None and key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        baseline = make_baseline(scenario, seed, requests, progress=progress, key=key, engine=engine)
        if key is not None and len(baseline.requests) <= self.max_requests:
            self.entries[key] = baseline
            while (len(self.entries) > self.max_entries
                   or sum(len(b.requests) for b in self.entries.values()) > self.max_requests):
                self.entries.popitem(last=False)
        return baseline

    def clear(self) -> None:
        self.entries.clear()
        self.hits = self.misses = 0

    @contextmanager
    def disabled(self):
        """Every baseline computed afresh inside the block (to measure what sharing saves)."""
        self.enabled = False
        try:
            yield self
        finally:
            self.enabled = True


#: the process's shared baselines (each worker of a sweep has its own)
BASELINES = BaselineCache()


def simulate(scenario: Scenario, seed: int = 0, requests: int | None = None, *, progress: bool | None = None,
             baseline: Baseline | None = None, engine: str = "auto"):
    """Run `scenario` and its no-optimization baseline on the same request stream.

    `requests` overrides the scenario's size. The same seed gives the same numbers, bit for bit.
    The baseline (the stream and its stage-free run) comes from `BASELINES` unless one is
    given; it depends on traffic, providers, size and seed, never on the pipeline. `requests` is a
    whole number >= 1, `seed` a whole number >= 0; a path (str or Path) is loaded first.
    """
    scenario, seed, requests = _checked_arguments(scenario, seed, requests)
    if baseline is not None and baseline.key and baseline.key != baseline_key(scenario, seed, requests):
        raise ValueError("simulate: the baseline given was made for other traffic, providers, size or seed")
    if baseline is None and baseline_key(scenario, seed, requests) is None:
        # live or replayed calls: the run goes first, as it always has, then its baseline
        traffic_seed = np.random.SeedSequence(seed).spawn(3)[0]
        stream = make_requests(scenario, np.random.default_rng(traffic_seed), requests)
        if len(stream) == 0:
            raise ScenarioError(scenario.path, "duration_s", "the scenario produced no requests: "
                                "raise duration_s or the arrival rate")
        optimized = Simulation(scenario, stream, seed, progress=progress, label="optimized", engine=engine)
        run = optimized.run_to_end()
        base_sim = Simulation(scenario, stream, seed, optimized=False, progress=progress, label="baseline",
                              engine=engine)
        base = base_sim.run_to_end()
        base.cost_usd = base_sim.list_price()
        baseline = Baseline("", stream, base)
    else:
        if baseline is None:
            baseline = BASELINES.get(scenario, seed, requests, progress=progress, engine=engine)
        optimized = Simulation(scenario, baseline.requests, seed, progress=progress, label="optimized",
                               engine=engine)
        run = optimized.run_to_end()
    stream = baseline.requests
    return Result(scenario=scenario, seed=seed, requests=stream, run=run, baseline=baseline.run,
                  stages=optimized.stages, providers=optimized.providers, requested=requests)
