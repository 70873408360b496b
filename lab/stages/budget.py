"""Budgets: a spending limit per tenant (or feature, or everyone), daily and/or monthly.

The story: before a request is sent, its worst case — its input plus its `max_tokens` of
output, at the most expensive provider it could reach, with no cache discount — is
reserved against the budget. If the reservation does not fit, the budget acts: `warn`
(send anyway, flagged), `queue` (hold it until spend is settled or the period rolls
over), `downgrade` (send it to a cheaper provider if that fits), or `reject`. When the
answer returns, the reservation is replaced by the actual cost. Because every in-flight
request holds its worst case, concurrent requests can never overshoot the budget
(budget overshoot under concurrency is a long-running bug class in LLM gateways).
Alerts fire when settled spend crosses 50 %, 80 % and 100 % of a budget.

Levers a cost engineer sets: `reserve` = "worst" (the above) or an output percentile such
as "p99" (input plus the traffic's 99th-percentile answer: more of the budget is used, and
an answer longer than its reservation can overshoot — the summary shows utilisation,
reserved vs billed and any overshoot); `block_at` (the share of the limit that blocks),
`warn_at` (an earlier share that flags requests) and `exempt` priorities that are never blocked.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

import numpy as np

from lab.config import Table
from lab.ledger import OK, REJECTED
from lab.scenario import PRIORITIES
from lab.stages.base import Options, Stage

CAN_FAIL = True   # it has a store or a worker: `outages` and `on_failure` apply
NAME = "budget"
DAY_S, MONTH_S = 86_400.0, 30 * 86_400.0


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    daily_usd: float | None = None
    monthly_usd: float | None = None
    per: str = "tenant"                    # "tenant" | "feature" | "all"
    action: str = "reject"                 # "warn" | "queue" | "downgrade" | "reject"
    downgrade_to: str = ""                 # model of a listed provider (default: the cheapest)
    alerts: tuple[float, ...] = (0.5, 0.8, 1.0)
    daily_usd_by: tuple[tuple[str, float], ...] = ()    # per tenant/feature name: its own daily limit
    reserve: str = "worst"                 # "worst" (input + max_tokens) | "pNN": that output percentile
    block_at: float = 1.0                  # share of the limit at which requests are held back
    warn_at: float | None = None           # share of the limit from which admitted requests are flagged
    exempt: tuple[str, ...] = ()           # priorities never blocked (admitted and counted)


def parse(t: Table) -> Config:
    c = Config(daily_usd=t.number("daily_usd", Config.daily_usd, min=0.0),
               monthly_usd=t.number("monthly_usd", Config.monthly_usd, min=0.0),
               per=t.string("per", Config.per, choices=("tenant", "feature", "all")),
               action=t.string("action", Config.action, choices=("warn", "queue", "downgrade", "reject")),
               downgrade_to=t.string("downgrade_to", Config.downgrade_to),
               alerts=t.numbers("alerts", Config.alerts, min=0.0),
               daily_usd_by=_named_limits(t),
               reserve=_reserve(t),
               block_at=t.number("block_at", Config.block_at, min=0.0, strict_min=True),
               warn_at=t.number("warn_at", Config.warn_at, min=0.0, strict_min=True),
               exempt=_exempt(t))
    if c.daily_usd is None and c.monthly_usd is None and not c.daily_usd_by:
        t.fail("daily_usd", "give daily_usd and/or monthly_usd")
    return c


def _reserve(t: Table) -> str:
    value = t.string("reserve", Config.reserve)
    if value != "worst" and not (re.fullmatch(r"p\d{1,2}(\.\d+)?", value) and 0 < float(value[1:]) < 100):
        t.fail("reserve", f'expected "worst" or an output percentile such as "p99" or "p90", got {value!r}')
    return value


def _exempt(t: Table) -> tuple[str, ...]:
    value = t.raw("exempt", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v in PRIORITIES for v in value):
        t.fail("exempt", f"expected a list of priorities ({', '.join(PRIORITIES)}), got {value!r:.60}")
    return tuple(value)


def reserve_output_tokens(config: Config, requests, output_dist) -> np.ndarray:
    """Output tokens each request reserves: its max_tokens, or a percentile of the answer lengths.

    The percentile comes from the scenario's output distribution; replayed traffic (a trace
    has none) uses the recorded lengths' own percentile. Never above the request's cap.
    """
    cap = requests.max_tokens
    if config.reserve == "worst":
        return cap
    q = float(config.reserve[1:]) / 100.0
    tokens = (output_dist.quantile(q) if output_dist is not None
              else float(np.quantile(requests.output_tokens, q)) if len(requests) else 0.0)
    return np.minimum(cap, max(1, math.ceil(tokens))).astype(cap.dtype)


def _named_limits(t: Table) -> tuple[tuple[str, float], ...]:
    if not t.has("daily_usd_by"):
        return ()
    table = t.table("daily_usd_by")
    out = tuple((name, table.number(name, min=0.0)) for name in list(table.data))
    table.done()
    return out


class Account:
    """One budget key's money in one period: settled spend and open reservations."""

    __slots__ = ("spent_usd", "reserved_usd", "period", "alerted")

    def __init__(self, period: int):
        self.spent_usd, self.reserved_usd, self.period, self.alerted = 0.0, 0.0, period, 0


class BudgetStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.limits = [(lim, span) for lim, span in ((config.daily_usd, DAY_S), (config.monthly_usd, MONTH_S))
                       if lim is not None]
        if config.daily_usd_by and config.daily_usd is None:
            self.limits.insert(0, (float("inf"), DAY_S))
        names = sim.requests.tenant_names if config.per == "tenant" else sim.requests.feature_names
        self.daily_by_key = {names.index(n): usd for n, usd in config.daily_usd_by if n in names}
        self.accounts: dict[tuple[int, float], Account] = {}
        self.holds: dict[int, tuple[int, float]] = {}          # request -> (key, reserved usd)
        self.queue: deque[int] = deque()
        self.wake_at: float | None = None
        self.prices = [sim.price_of(p) for p in sim.providers]
        req = sim.requests
        # every request's worst case at every provider, priced once in numpy: (providers, requests)
        trace = sim.scenario.traffic.arrivals.process == "trace"
        self.reserved_out = reserve_output_tokens(config, req, None if trace else sim.scenario.traffic.output_tokens)
        self.worst_usd = np.stack([p.cost_usd(req.input_tokens, self.reserved_out) for p in self.prices])
        self.exempt = {PRIORITIES.index(p) for p in config.exempt}
        self.early_warnings = self.exempted = 0
        self.reserved_total_usd = self.billed_total_usd = 0.0
        self.closed: list[tuple[int, float, float]] = []      # (key, span, spent) of periods that ended
        self._routes_later: bool | None = None
        self.cheapest = self._cheapest_provider()
        self.alerts: list[dict] = []
        self.warned = self.queued = self.downgraded = self.rejected = 0
        self.draining = False

    def _cheapest_provider(self) -> int:
        if self.config.downgrade_to:
            for k, p in enumerate(self.sim.providers):
                if p.model == self.config.downgrade_to or f"{p.name}/{p.model}" == self.config.downgrade_to:
                    return k
        costs = [float(p.cost_usd([1000], [1000])[0]) for p in self.prices]
        return int(np.argmin(costs))

    def key(self, i: int) -> int:
        per, req = self.config.per, self.sim.requests
        return int(req.tenant[i]) if per == "tenant" else int(req.feature[i]) if per == "feature" else 0

    def account(self, key: int, span: float, now: float) -> Account:
        period = int(now // span)
        acc = self.accounts.get((key, span))
        if acc is None or acc.period != period:
            # a new period starts with no spend; reservations still in flight carry over
            carried = acc.reserved_usd if acc is not None else 0.0
            if acc is not None:
                self.closed.append((key, span, acc.spent_usd))
            acc = self.accounts[(key, span)] = Account(period)
            acc.reserved_usd = carried
        return acc

    def worst_case_usd(self, i: int, providers) -> float:
        return max(float(self.worst_usd[k, i]) for k in providers)

    def limit_for(self, key: int, limit: float, span: float) -> float:
        return self.daily_by_key.get(key, limit) if span == DAY_S else limit

    def fits(self, key: int, amount: float, now: float, level: float | None = None) -> bool:
        """Does `amount` more stay within `level` (default `block_at`) of every limit?"""
        level = self.config.block_at if level is None else level
        return all(self.account(key, span, now).spent_usd + self.account(key, span, now).reserved_usd + amount
                   <= self.limit_for(key, limit, span) * level + 1e-12 for limit, span in self.limits)

    def reserve(self, i: int, key: int, amount: float, now: float) -> None:
        for _, span in self.limits:
            self.account(key, span, now).reserved_usd += amount
        self.holds[i] = (key, amount)
        self.reserved_total_usd += amount

    # -- the story -----------------------------------------------------------------------

    def on_request(self, i: int) -> bool:
        return self._admit(i, first_time=True)

    def _admit(self, i: int, first_time: bool) -> bool:
        """Reserve and pass request i on (False), or act on it (True: held, rejected)."""
        sim, now = self.sim, self.sim.env.now
        key = self.key(i)
        reachable = range(len(sim.providers)) if self.stage_routes_later() else (int(sim.target[i]),)
        worst = self.worst_case_usd(i, reachable)
        if self.fits(key, worst, now):
            if self.config.warn_at is not None and not self.fits(key, worst, now, self.config.warn_at):
                self.early_warnings += 1
                self.touch(i)
            self.reserve(i, key, worst, now)
            return False
        if self.exempt and int(sim.requests.priority[i]) in self.exempt:
            self.exempted += 1
            self.touch(i)
            self.reserve(i, key, worst, now)
            return False
        action = self.config.action
        if action == "warn":
            self.warned += 1
            self.touch(i)
            self.reserve(i, key, worst, now)
            return False
        if action == "downgrade" and int(sim.target[i]) != self.cheapest:
            cheaper = self.worst_case_usd(i, (self.cheapest,))
            if self.fits(key, cheaper, now):
                sim.target[i] = self.cheapest
                self.downgraded += 1
                self.touch(i)
                self.reserve(i, key, cheaper, now)
                return False
        if action == "queue" and not self._never_fits(worst, key):
            if first_time:
                self.queued += 1
                self.touch(i)
            self.queue.append(i)
            self._schedule_wake(now)
            return True
        self.rejected += 1
        sim.answer(i, REJECTED, self)
        return True

    def stage_routes_later(self) -> bool:
        """A router after this stage may pick any provider: reserve for the dearest."""
        if self._routes_later is None:   # known once every stage is built
            self._routes_later = any(s.name in ("router", "cascade") and s.index > self.index for s in self.sim.stages)
        return self._routes_later

    def _never_fits(self, amount: float, key: int = -1) -> bool:
        return any(amount > self.limit_for(key, limit, span) * self.config.block_at for limit, span in self.limits)

    def _schedule_wake(self, now: float) -> None:
        """Queued requests are retried when the shortest budget period rolls over."""
        span = min(span for _, span in self.limits)
        at = (math.floor(now / span) + 1) * span
        if self.wake_at is None or at < self.wake_at:
            self.wake_at = at
            self.sim.env.timeout(at - now).callbacks.append(self._wake)

    def _wake(self, event) -> None:
        self.wake_at = None
        self._drain()

    def _drain(self) -> None:
        """Admit queued requests in arrival order until one still does not fit."""
        if self.draining:
            return
        self.draining = True
        try:
            while self.queue:
                i = self.queue.popleft()
                if self._admit(i, first_time=False):
                    if self.queue and self.queue[-1] == i:   # still does not fit: back to the front
                        self.queue.rotate(1)
                        return
                    continue
                self.sim.forward(i, self.index + 1)
        finally:
            self.draining = False

    def on_response(self, i: int) -> bool:
        hold = self.holds.pop(i, None)
        if hold is None:
            return False
        key, reserved = hold
        now = self.sim.env.now
        actual = self.actual_cost_usd(i)
        self.billed_total_usd += actual
        for limit, span in self.limits:
            acc = self.account(key, span, now)
            acc.reserved_usd -= reserved
            acc.spent_usd += actual
            self._alert(key, acc, self.limit_for(key, limit, span), span, now)
        if self.queue:
            self._drain()
        return False

    def actual_cost_usd(self, i: int) -> float:
        """What request i will be billed, priced exactly as the ledger will price it."""
        sim, run = self.sim, self.sim.run
        cost = float(run.extra_cost_usd[i])
        if run.outcome[i] == OK and run.answered_by[i] < 0:
            k = int(run.provider[i])
            s = slice(i, i + 1)
            cost += float(self.prices[k].cost_usd(run.input_tokens[s], run.output_tokens[s], run.cached_input_tokens[s],
                                                  run.cache_write_tokens[s], write_1h=sim.cache_write_1h)[0])
        return cost

    def _alert(self, key: int, acc: Account, limit: float, span: float, now: float) -> None:
        levels = sorted(self.config.alerts)
        while acc.alerted < len(levels) and 0 < limit < float("inf") and acc.spent_usd >= levels[acc.alerted] * limit:
            self.alerts.append({"t_s": now, "key": self._key_name(key), "period": "day" if span == DAY_S else "month",
                                "threshold_pct": 100 * levels[acc.alerted], "spent_usd": acc.spent_usd})
            acc.alerted += 1

    def _key_name(self, key: int) -> str:
        req = self.sim.requests
        if self.config.per == "tenant":
            return req.tenant_names[key]
        return req.feature_names[key] if self.config.per == "feature" else "all"

    def saved_usd(self, result) -> float:
        """Spend avoided by rejecting (the baseline cost of rejected requests) plus downgrades' difference."""
        run, base = result.run, result.baseline
        rejected = run.answered_by == self.index
        saved = float(base.cost_usd[rejected].sum())
        if self.downgraded:
            touched = ((run.stage_flags & self.bit) != 0) & ~rejected & (run.outcome == OK) & (run.answered_by < 0)
            for k, p in enumerate(self.prices):
                m = touched & (run.provider == k)
                if m.any():
                    full_here = p.cost_usd(run.input_tokens[m], run.output_tokens[m])
                    full_first = self.prices[0].cost_usd(run.input_tokens[m], run.output_tokens[m])
                    saved += float((full_first - full_here).sum())
        return saved

    def stats(self) -> dict:
        out = {"warned": self.warned, "queued": self.queued, "downgraded": self.downgraded,
               "rejected": self.rejected, "alerts": self.alerts[:50], **self.reservation_stats()}
        if self.config.warn_at is not None or self.exempt:
            out.update(early_warnings=self.early_warnings, exempted=self.exempted)
        return out

    def reservation_stats(self) -> dict:
        """The fullest period's share of its limit, what was held vs billed, and any overshoot (all periods)."""
        used, over, over_n = 0.0, 0.0, 0
        periods = self.closed + [(key, span, acc.spent_usd) for (key, span), acc in self.accounts.items()]
        for key, span, spent in periods:
            limit = next((self.limit_for(key, lim, s) for lim, s in self.limits if s == span), float("inf"))
            if 0 < limit < float("inf"):
                used = max(used, spent / limit)
                if spent > limit + 1e-12:
                    over += spent - limit
                    over_n += 1
        return {"reserve": self.config.reserve, "reserve_output_tokens": int(self.reserved_out.max(initial=0)),
                "utilisation": used, "reserved_usd": self.reserved_total_usd, "billed_usd": self.billed_total_usd,
                "reserved_minus_billed_usd": self.reserved_total_usd - self.billed_total_usd,
                "overshoot_usd": over, "overshoots": over_n}


Stage = BudgetStage
