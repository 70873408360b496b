"""The fourteen "try it" exercises, one class per lesson, grouped by the part of the course they close.

`foundations` (00-02: the bill, prices, the ledger), `strategies` (03-07: caches, dedup,
batching, prompt caching, cascades), `guardrails` (08-09: limits, budgets, outages) and
`operations` (10-13: twins, KPIs, live calls, sweeps). `lab.lessons.exercise(number)` finds one.
"""
