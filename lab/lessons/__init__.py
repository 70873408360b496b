"""What the notebooks in `notebooks/` call: scenarios to start from, experiments and self-checks.

A lesson cell asks one question and calls one function here (or a chart in `lab.plots`), so the
notebook stays short and the work stays in tested library code:

    from lab import lessons
    import lab.plots as plots
    base = lessons.scenario_dict("support-chatbot")            # the TOML file as a dict
    table = lessons.compare({"no cache": lessons.variant(base, pipeline=[]),
                             "cache": lessons.variant(base, {"pipeline[cache].capacity": 500})},
                            requests=2000)
    plots.bars(table, "cost_usd", title="What a cache saves")
    ex = lessons.exercise("03")      # the lesson's "try it": its task, `measure(...)` and `check(...)`
    ex.check(capacity=700)           # shows a pass or a hint; never raises

Every self-check runs its own small simulation (fixed seed and size, stated in the task), so its
verdict depends on the learner's setting only, not on how big the notebook's own runs were.

The package: `scenarios` (files, dicts, variants), `experiments` (compare, sweeps, tables),
`prices` (one call's cost, tokens, a live session's worst case), `checks` (the self-check
framework) and `exercises` (one "try it" per lesson).
"""

from __future__ import annotations

import functools

from lab.errors import ConfigError
from lab.lessons.checks import Check, Exercise
from lab.lessons.exercises.foundations import CheapestCall, NoCallShare, ReadTheBill
from lab.lessons.exercises.guardrails import MaxTokens, Resilience
from lab.lessons.exercises.operations import (
    SWEEP_CAPACITIES,
    SWEEP_TTLS,
    GatewayHolds,
    KpiFormula,
    LiveBudget,
    SweepChoice,
    TwinConcurrency,
)
from lab.lessons.exercises.strategies import (
    Batching,
    CacheCapacity,
    CascadeThreshold,
    DedupWindow,
    PromptCacheTtl,
)
from lab.lessons.exercises.tokens import TokenBill
from lab.lessons.experiments import (
    budget_table,
    che_lru_hit_ratio,
    compare,
    run_variants,
    sweep_values,
    table,
    with_incident,
)
from lab.lessons.prices import (
    LESSON_MODELS,
    LIVE_PROMPT,
    call_cost_usd,
    call_costs,
    calls_table,
    long_system_prompt,
    price_sheet,
    token_counts,
    worst_case_usd,
)
from lab.lessons.scenarios import (
    BUDGET_SCENARIO,
    CASCADE_MODELS,
    ROUTING_SCENARIO,
    build,
    scenario_dict,
    scenario_path,
    stale_catalog_dict,
    variant,
)
from lab.runs import run

#: the numbered lessons: (number, notebook file, title)
LESSONS = (
    ("00", "00_start_here.ipynb", "Start here: run a scenario, read the bill"),
    ("01", "01_tokens_and_prices.ipynb", "Tokens and prices"),
    ("02", "02_baselines_and_the_ledger.ipynb", "Baselines and the ledger"),
    ("03", "03_response_caching.ipynb", "Response caching: policies, TTLs, stampedes"),
    ("04", "04_deduplication.ipynb", "In-flight deduplication"),
    ("05", "05_batching.ipynb", "Batching and batch APIs"),
    ("06", "06_prompt_caching.ipynb", "Provider prompt caching"),
    ("07", "07_routing_and_cascades.ipynb", "Routing and cascades: the cost-quality frontier"),
    ("08", "08_rate_limits_and_budgets.ipynb", "Rate limits and budgets"),
    ("09", "09_resilience.ipynb", "Resilience and outages"),
    ("10", "10_digital_twin.ipynb", "A digital twin from a real trace"),
    ("11", "11_analytics.ipynb", "Analytics: KPIs, anomalies, forecasts and a report"),
    ("12", "12_live_providers.ipynb", "Live providers: replay by default, live with keys and a budget"),
    ("13", "13_scale_sweeps.ipynb", "Scale: parameter sweeps"),
    ("14", "14_class_gateway.ipynb", "The class gateway: real SDKs, one key, a cap per learner"),
    ("15", "15_token_analyzer.ipynb", "Where a bill's tokens go: the token analyzer"),
)

_EXERCISES: dict[str, type[Exercise]] = {cls.lesson: cls for cls in (
    ReadTheBill, CheapestCall, NoCallShare, CacheCapacity, DedupWindow, Batching, PromptCacheTtl,
    CascadeThreshold, MaxTokens, Resilience, TwinConcurrency, KpiFormula, LiveBudget, SweepChoice, GatewayHolds, TokenBill)}


def exercise(lesson: str) -> Exercise:
    """The "try it" of lesson `lesson` ("00" ... "13"); shows its task when displayed.

    One instance per lesson, so what an exercise computed once (a smallest setting, a best
    grid point) is reused by later checks.
    """
    key = str(lesson)[:2].zfill(2)
    if key not in _EXERCISES:
        raise ConfigError(f"lesson {lesson!r}: expected one of {', '.join(sorted(_EXERCISES))}")
    return _exercise(key)


@functools.cache
def _exercise(key: str) -> Exercise:
    return _EXERCISES[key]()


__all__ = [
    "BUDGET_SCENARIO", "CASCADE_MODELS", "LESSONS", "LESSON_MODELS", "LIVE_PROMPT", "ROUTING_SCENARIO", "SWEEP_CAPACITIES",
    "SWEEP_TTLS", "Check", "Exercise", "budget_table", "build", "call_cost_usd", "call_costs",
    "calls_table", "che_lru_hit_ratio", "compare", "exercise", "long_system_prompt", "price_sheet", "run",
    "run_variants", "scenario_dict", "scenario_path", "stale_catalog_dict", "sweep_values",
    "table", "token_counts", "variant", "with_incident", "worst_case_usd",
]
