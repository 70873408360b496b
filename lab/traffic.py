"""Traffic: when requests arrive and what each one asks, drawn in numpy blocks.

`make_requests(scenario, rng)` returns `Requests`, one array per attribute (columnar),
so a million requests cost a few tens of megabytes and no Python objects. Prompts are
drawn independently per request from a Zipf catalog (the independent reference model
that cache theory — Che's approximation — assumes). Token lengths belong to a prompt:
asking the same prompt twice sends the same tokens and gets the same answer length.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from lab.dists import draw_ranks, zipf_probabilities
from lab.errors import ScenarioError
from lab.scenario import PRIORITIES, Arrivals, Scenario, Traffic
from lab.traces import read_trace

#: the most requests (and rate segments) one run may generate; more is refused before anything is drawn
MAX_REQUESTS = 10_000_000
#: prompt keys of one-off requests start here, far above any catalog key
UNIQUE_KEY_BASE = 1 << 40


@dataclass
class Requests:
    """The request stream, one array per attribute; request i is index i everywhere."""

    t_arrival_s: np.ndarray          # float64, nondecreasing
    prompt: np.ndarray               # int64 key of the exact prompt (same key = same text)
    intent: np.ndarray               # int64 paraphrase group (semantic-cache key)
    similarity: np.ndarray           # float32 similarity of this wording to its group's stored one
    input_tokens: np.ndarray         # int32, whole prompt including any shared prefix
    output_tokens: np.ndarray        # int32
    tenant: np.ndarray               # int16 index into tenant_names
    feature: np.ndarray              # int16 index into feature_names
    priority: np.ndarray             # int8 index into PRIORITIES
    cacheable: np.ndarray            # bool: False for PII / non-deterministic requests
    prefix_id: np.ndarray            # int32 system-prompt variant, -1 when none
    prefix_tokens: np.ndarray        # int32 tokens of the shared prefix
    tenant_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    max_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # output cap sent
    difficulty: np.ndarray | None = None     # float32 in [0, 1] when the quality model is on
    may_wait: np.ndarray | None = None       # bool: tolerates a batch API's hours
    block_tokens: int = 0            # tokens per prefix block
    block_ids: np.ndarray | None = None      # trace prefix blocks (flat), e.g. Mooncake hash_ids
    block_offsets: np.ndarray | None = None
    update_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))   # data changes: when
    update_prompt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # and which
    trace_rows_skipped: int = 0      # corrupt trace rows dropped under skip_bad_rows = true
    key_input_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # per catalog prompt
    key_output_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # (warm, prefetch)
    session: np.ndarray | None = None        # int32 conversation of each turn ([traffic.sessions])
    turn: np.ndarray | None = None           # int16 turn within it, from 0
    context_key: np.ndarray | None = None    # int64: requests sharing it share leading blocks (prompt caching)

    def __len__(self) -> int:
        return len(self.t_arrival_s)

    @property
    def horizon_s(self) -> float:
        return float(self.t_arrival_s[-1]) if len(self) else 0.0


# --------------------------------------------------------------------------- arrivals


def poisson_times(rng: np.random.Generator, rate_per_s: float, *, n: int | None = None,
                  duration_s: float | None = None) -> np.ndarray:
    """Arrival times of a Poisson process: exactly `n` of them, or all within `duration_s`."""
    if n is not None:
        return np.cumsum(rng.exponential(1.0 / rate_per_s, n))
    count = rng.poisson(rate_per_s * duration_s)
    return np.sort(rng.uniform(0.0, duration_s, count))


def _piecewise_times(rng, rates: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """A Poisson process whose rate is `rates[k]` on [edges[k], edges[k+1])."""
    widths = np.diff(edges)
    counts = rng.poisson(rates * widths)
    starts = np.repeat(edges[:-1], counts)
    spans = np.repeat(widths, counts)
    return np.sort(starts + rng.random(counts.sum()) * spans)


def diurnal_profile(arrivals: Arrivals) -> np.ndarray:
    """Relative rate per bucket; the default is 24 hourly buckets of a sinusoid peaking at 14:00."""
    if arrivals.profile:
        return np.asarray(arrivals.profile, dtype=float)
    hours = np.arange(24) + 0.5
    return 1.0 + 0.6 * np.cos(2 * np.pi * (hours - 14.0) / 24.0)


def _diurnal_times(rng, a: Arrivals, horizon_s: float) -> np.ndarray:
    profile = diurnal_profile(a)
    rel = profile / profile.mean()                       # mean rate over a period = rate_per_s
    bucket_s = a.period_s / len(rel)
    n_buckets = int(np.ceil(horizon_s / bucket_s))
    rates = a.rate_per_s * rel[np.arange(n_buckets) % len(rel)]
    edges = np.arange(n_buckets + 1) * bucket_s
    edges[-1] = min(edges[-1], horizon_s) if horizon_s > edges[-2] else edges[-1]
    return _piecewise_times(rng, rates, edges)


def _mmpp_times(rng, a: Arrivals, horizon_s: float) -> np.ndarray:
    """Two-state Markov-modulated Poisson process, starting in its stationary state."""
    p_high = a.mean_high_s / (a.mean_high_s + a.mean_low_s)
    high = rng.random() < p_high
    edges, rates, t = [0.0], [], 0.0
    while t < horizon_s:
        stay = rng.exponential(a.mean_high_s if high else a.mean_low_s)
        t = min(t + stay, horizon_s)
        edges.append(t)
        rates.append(a.rate_high_per_s if high else a.rate_low_per_s)
        high = not high
    return _piecewise_times(rng, np.asarray(rates), np.asarray(edges))


def mean_rate_per_s(a: Arrivals) -> float:
    """Long-run arrival rate of a generated process (not defined for traces)."""
    if a.process in ("poisson", "diurnal"):
        return a.rate_per_s
    if a.process == "mmpp":
        return (a.rate_high_per_s * a.mean_high_s + a.rate_low_per_s * a.mean_low_s) / (a.mean_high_s + a.mean_low_s)
    raise ValueError("a trace has no generating rate")


def arrival_times(rng: np.random.Generator, a: Arrivals, *, n: int | None, duration_s: float | None) -> np.ndarray:
    """Arrival times of a generated process, by count or by duration."""
    if a.process == "poisson":
        return poisson_times(rng, a.rate_per_s, n=n, duration_s=None if n else duration_s)
    make = _diurnal_times if a.process == "diurnal" else _mmpp_times
    if n is None:
        return make(rng, a, duration_s)
    horizon = max(1.5 * n / mean_rate_per_s(a), 1.0)
    while True:  # stretch the horizon until there are enough arrivals; deterministic for a seed
        times = make(rng, a, horizon)
        if len(times) >= n:
            return times[:n]
        horizon *= 2


# --------------------------------------------------------------------------- what is asked


def _choose(rng, weights: list[float], n: int, dtype) -> np.ndarray:
    if len(weights) == 1:
        return np.zeros(n, dtype=dtype)
    w = np.asarray(weights, dtype=float)
    return draw_ranks(rng, w / w.sum(), n).astype(dtype)


def _tokens(dist, rng, n: int, minimum: int) -> np.ndarray:
    return np.maximum(np.rint(dist.sample(rng, n)), minimum).astype(np.int32)


def planned_size(scenario: Scenario, requests: int | None = None) -> tuple[float, float]:
    """(expected requests, rate segments to draw) of a generated run, known before anything is drawn."""
    a = scenario.traffic.arrivals
    n = requests or scenario.requests
    rate = mean_rate_per_s(a)
    horizon_s = 1.5 * n / rate if n else scenario.duration_s
    expected = float(n) if n else rate * horizon_s
    if a.process == "diurnal":
        segments = horizon_s / (a.period_s / len(diurnal_profile(a)))
    elif a.process == "mmpp":
        segments = 2 * horizon_s / (a.mean_high_s + a.mean_low_s)
    else:
        segments = 1.0
    return expected, segments


def check_size(scenario: Scenario, requests: int | None = None) -> None:
    """Refuse, with the number, a run that would draw more than MAX_REQUESTS requests or rate segments."""
    if scenario.traffic.arrivals.process == "trace":
        return                                   # bounded by the trace's rows
    expected, segments = planned_size(scenario, requests)
    field = "requests" if (requests or scenario.requests) else "duration_s"
    if not expected <= MAX_REQUESTS:
        raise ScenarioError(scenario.path, field, f"this run would generate about {expected:,.4g} requests; at most "
                            f"{MAX_REQUESTS:,} are simulated in one run (lower duration_s, the rate or requests)")
    if not segments <= MAX_REQUESTS:
        raise ScenarioError(scenario.path, "traffic.arrivals", f"this run would draw {segments:,.4g} rate segments "
                            f"(buckets or MMPP sojourns); at most {MAX_REQUESTS:,} (lower duration_s or lengthen "
                            "period_s / mean_high_s / mean_low_s)")


def make_requests(scenario: Scenario, rng: np.random.Generator, requests: int | None = None) -> Requests:
    """Draw the whole request stream of a scenario with one generator (deterministic per seed)."""
    tr: Traffic = scenario.traffic
    n_wanted = requests or scenario.requests
    check_size(scenario, requests)
    trace = None
    if tr.arrivals.process == "trace":
        trace = read_trace(tr.arrivals.path, tr.arrivals.format, skip_bad_rows=tr.arrivals.skip_bad_rows)
        if trace.skipped_rows:
            warnings.warn(f"{tr.arrivals.path}: skipped {trace.skipped_rows:,} corrupt row(s) (skip_bad_rows = true)",
                          stacklevel=2)
        t = trace.t_arrival_s * tr.arrivals.time_scale
        keep = len(t)
        if n_wanted:
            keep = min(keep, n_wanted)
        elif scenario.duration_s:
            keep = int(np.searchsorted(t, scenario.duration_s, side="left"))
        t = t[:keep]
    elif tr.sessions is not None:
        return make_session_requests(scenario, rng, n_wanted)
    else:
        try:
            t = arrival_times(rng, tr.arrivals, n=n_wanted, duration_s=scenario.duration_s)
        except ValueError as exc:            # numpy: a Poisson mean too large to draw
            raise ScenarioError(scenario.path, "traffic.arrivals", f"rates too large to draw ({exc})") from None
    n = len(t)

    # prompts: intent by Zipf popularity, then one of its wordings uniformly
    p = tr.prompts
    if p.catalog > 0:
        intent = draw_ranks(rng, zipf_probabilities(p.catalog, p.popularity.alpha), n)
        variant = rng.integers(0, p.paraphrases, n) if p.paraphrases > 1 else np.zeros(n, dtype=np.int64)
        prompt = intent * p.paraphrases + variant
        n_keys = p.catalog * p.paraphrases
    else:
        intent = UNIQUE_KEY_BASE + np.arange(n, dtype=np.int64)
        prompt = intent.copy()
        n_keys = 0
    similarity = np.clip(p.similarity.sample(rng, n), 0.0, 1.0).astype(np.float32)

    # token lengths: a property of the prompt when prompts repeat, else of the request
    system_tokens = tr.prefix.system_tokens if tr.prefix else 0
    if trace is not None:
        input_tokens = trace.input_tokens[:n].astype(np.int32)
        output_tokens = trace.output_tokens[:n].astype(np.int32)
    elif n_keys:
        key_in = _tokens(tr.input_tokens, rng, n_keys, 1)
        key_out = _tokens(tr.output_tokens, rng, n_keys, 1)
        input_tokens = (key_in[prompt] + system_tokens).astype(np.int32)
        output_tokens = key_out[prompt]
    else:
        input_tokens = (_tokens(tr.input_tokens, rng, n, 1) + system_tokens).astype(np.int32)
        output_tokens = _tokens(tr.output_tokens, rng, n, 1)

    tenant = _choose(rng, [w.weight for w in tr.tenants], n, np.int16)
    feature = _choose(rng, [w.weight for w in tr.features], n, np.int16)
    share = dict(tr.priorities)
    priority = _choose(rng, [share.get(k, 0.0) for k in PRIORITIES], n, np.int8)
    cacheable = rng.random(n) >= p.non_cacheable_share if p.non_cacheable_share else np.ones(n, dtype=bool)

    if tr.prefix and tr.prefix.system_tokens:
        prefix_id = rng.integers(0, tr.prefix.variants, n).astype(np.int32)
        prefix_tokens = np.full(n, system_tokens, dtype=np.int32)
    else:
        prefix_id = np.full(n, -1, dtype=np.int32)
        prefix_tokens = np.zeros(n, dtype=np.int32)

    req = Requests(t_arrival_s=t, prompt=prompt, intent=intent, similarity=similarity,
                   input_tokens=input_tokens, output_tokens=output_tokens, tenant=tenant, feature=feature,
                   priority=priority, cacheable=cacheable, prefix_id=prefix_id, prefix_tokens=prefix_tokens,
                   tenant_names=tuple(w.name for w in tr.tenants),
                   feature_names=tuple(w.name for w in tr.features),
                   block_tokens=tr.prefix.block_tokens if tr.prefix else 0)
    # the output cap each request sends; an answer longer than it is cut off there
    req.max_tokens = np.full(n, tr.max_tokens, dtype=np.int32)
    req.output_tokens = np.minimum(req.output_tokens, req.max_tokens)
    if n_keys and trace is None:   # what asking any catalog prompt would send and get (warming, prefetching)
        req.key_input_tokens = (key_in + system_tokens).astype(np.int32)
        req.key_output_tokens = np.minimum(key_out, tr.max_tokens).astype(np.int32)
    if tr.difficulty is not None:   # like its lengths, a prompt's difficulty belongs to the prompt
        draws = np.clip(tr.difficulty.sample(rng, n_keys or n), 0.0, 1.0).astype(np.float32)
        req.difficulty = draws[prompt] if n_keys else draws
    if tr.may_wait_share:
        req.may_wait = rng.random(n) < tr.may_wait_share
    if trace is not None:
        req.trace_rows_skipped = trace.skipped_rows
    if trace is not None and trace.block_ids is not None:
        req.block_tokens = trace.block_tokens
        req.block_offsets = trace.block_offsets[: n + 1]
        req.block_ids = trace.block_ids[: req.block_offsets[-1]]
    if tr.updates and tr.updates.rate_per_s > 0 and n:
        ut = poisson_times(rng, tr.updates.rate_per_s, duration_s=max(req.horizon_s, 1e-9))
        if p.catalog > 0 and tr.updates.follow_popularity:
            which = draw_ranks(rng, zipf_probabilities(p.catalog, p.popularity.alpha), len(ut))
        else:
            which = rng.integers(0, max(p.catalog, 1), len(ut))
        req.update_t_s, req.update_prompt = ut, which.astype(np.int64)
    return req


# --------------------------------------------------------------------------- sessions


def _session_starts(rng, tr: Traffic, n_wanted: int | None, duration_s: float | None) -> np.ndarray:
    """When conversations open: the arrival process, drawn until the turns reach the requests wanted."""
    if n_wanted is None:
        return arrival_times(rng, tr.arrivals, n=None, duration_s=duration_s)
    return arrival_times(rng, tr.arrivals, n=max(16, int(1.5 * n_wanted / max(tr.sessions.turns.expected, 1.0))),
                         duration_s=None)


def make_session_requests(scenario: Scenario, rng: np.random.Generator, n_wanted: int | None) -> Requests:
    """Turns of conversations: opened by the arrival process, each with its turns, think times and history.

    The opening message is drawn from the prompt catalog when there is one (people open with
    the same questions, so a cache and dedup meet them); later turns carry their history and
    are unique. Tenant, feature, priority and system-prompt variant belong to the session.
    """
    tr = scenario.traffic
    ss = tr.sessions
    starts = _session_starts(rng, tr, n_wanted, scenario.duration_s)
    turns = np.maximum(np.rint(ss.turns.sample(rng, len(starts))), 1).astype(np.int64)
    while n_wanted is not None and turns.sum() < n_wanted:   # more sessions (deterministic for a seed)
        starts = arrival_times(rng, tr.arrivals, n=2 * len(starts), duration_s=None)
        turns = np.maximum(np.rint(ss.turns.sample(rng, len(starts))), 1).astype(np.int64)
    n_sessions, total = len(starts), int(turns.sum())
    session = np.repeat(np.arange(n_sessions), turns)
    first = np.concatenate(([0], np.cumsum(turns)[:-1]))
    turn = np.arange(total) - np.repeat(first, turns)
    gaps = np.where(turn == 0, 0.0, ss.think_time_s.sample(rng, total))
    t = starts[session] + (np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], turns))

    user = _tokens(tr.input_tokens, rng, total, 1)
    out = np.minimum(_tokens(tr.output_tokens, rng, total, 1), tr.max_tokens)
    p = tr.prompts
    prompt = UNIQUE_KEY_BASE + np.arange(total, dtype=np.int64)
    intent = prompt.copy()
    openers = p.catalog > 0 and not ss.shared_prefix_tokens   # a context of its own makes every turn unique
    if openers:   # openers from the catalog, with the catalog's own lengths for each prompt
        opener = turn == 0
        ranks = draw_ranks(rng, zipf_probabilities(p.catalog, p.popularity.alpha), n_sessions)
        intent[opener], prompt[opener] = ranks, ranks * p.paraphrases
        key_in = _tokens(tr.input_tokens, rng, p.catalog * p.paraphrases, 1)
        key_out = np.minimum(_tokens(tr.output_tokens, rng, p.catalog * p.paraphrases, 1), tr.max_tokens)
        user[opener], out[opener] = key_in[prompt[opener]], key_out[prompt[opener]]
    exchanged = (user + out).astype(np.int64)
    history = np.cumsum(exchanged) - exchanged - np.repeat(np.cumsum(exchanged)[first] - exchanged[first], turns)
    if not ss.history:
        history[:] = 0
    system_tokens = tr.prefix.system_tokens if tr.prefix else 0
    input_tokens = (system_tokens + ss.shared_prefix_tokens + history + user).astype(np.int32)

    order = np.argsort(t, kind="stable")
    if scenario.duration_s is not None and n_wanted is None:
        order = order[t[order] < scenario.duration_s]
    if n_wanted is not None:
        order = order[:n_wanted]
    n = len(order)
    per_session = {name: _choose(rng, [w.weight for w in ws], n_sessions, dtype)
                   for name, ws, dtype in (("tenant", tr.tenants, np.int16), ("feature", tr.features, np.int16))}
    share = dict(tr.priorities)
    priority = _choose(rng, [share.get(k, 0.0) for k in PRIORITIES], n_sessions, np.int8)
    if tr.prefix and tr.prefix.system_tokens:
        prefix_id = rng.integers(0, tr.prefix.variants, n_sessions).astype(np.int32)[session[order]]
    else:
        prefix_id = np.full(n, -1, dtype=np.int32)
    s = session[order]
    req = Requests(t_arrival_s=t[order], prompt=prompt[order], intent=intent[order],
                   similarity=np.ones(n, dtype=np.float32), input_tokens=input_tokens[order],
                   output_tokens=out[order].astype(np.int32), tenant=per_session["tenant"][s],
                   feature=per_session["feature"][s], priority=priority[s],
                   cacheable=(rng.random(n) >= p.non_cacheable_share) if p.non_cacheable_share else np.ones(n, bool),
                   prefix_id=prefix_id, prefix_tokens=np.full(n, system_tokens, dtype=np.int32),
                   tenant_names=tuple(w.name for w in tr.tenants), feature_names=tuple(w.name for w in tr.features),
                   block_tokens=tr.prefix.block_tokens if tr.prefix else 128)
    req.max_tokens = np.full(n, tr.max_tokens, dtype=np.int32)
    req.session, req.turn = s.astype(np.int32), turn[order].astype(np.int16)
    req.context_key = UNIQUE_KEY_BASE + s.astype(np.int64)
    if openers:
        req.key_input_tokens = (key_in + system_tokens).astype(np.int32)
        req.key_output_tokens = key_out.astype(np.int32)
    return req
