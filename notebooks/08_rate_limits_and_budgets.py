# %% [markdown]
# # 08 · Rate limits and budgets
#
# Providers limit requests per minute (RPM) and tokens per minute (TPM); over the limit they
# answer **429** with a Retry-After. OpenAI counts `max_tokens` against TPM *before* generating,
# used or not. A client-side **token bucket** keeps you under the limit by queueing; a **budget**
# caps spend per tenant by reserving each request's worst case before sending it, and then warns,
# queues, downgrades or rejects.
#
# **After this lesson you can**
# - say what a limiter can and cannot do when traffic exceeds the limit
# - size max_tokens against a TPM limit
# - choose a budget action per product need
#
# *How to use it:* run the cells in order (Shift-Enter). Before each experiment, answer its
# question in your head; then run it and compare. Every number comes from a simulation you can
# re-run with another `seed`.

# %% tags=["parameters"]
# Parameters (papermill sets these when it runs the notebook headless; keep the "parameters" tag).
requests = 2000   # requests per simulation: small, so every cell runs in a second or two
seed = 0          # the same seed gives the same numbers, bit for bit

# %%
# %matplotlib inline
import lab.plots as plots
from lab import lessons

# %% [markdown]
# ## Experiment 1: over the limit
# **Question:** the provider allows 400 requests a minute; traffic brings 600. What happens with
# no protection, with retries, and with a client-side bucket at 380 RPM?

# %%
over = {"name": "over-the-limit", "duration_s": 600,
        "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 10.0},
                    "input_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.5},
                    "output_tokens": {"dist": "lognormal", "median": 200, "sigma": 0.5},
                    "max_tokens": 1000, "priorities": {"high": 0.2, "normal": 0.5, "low": 0.3}},
        "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 64, "rpm": 400}],
        "sla": {"p95_ms": 20000}}
limits = lessons.run_variants({
    "no protection": lessons.variant(over),
    "retries": lessons.variant(over, pipeline=[{"stage": "retry"}]),
    "client bucket 380 RPM": lessons.variant(over, pipeline=[{"stage": "rate_limit", "rpm": 380, "high_priority": "queue"}]),
}, seed, requests)
lessons.table(limits)[["error_rate", "p50_ms", "p95_ms"]]

# %%
plots.latency_cdf(limits, sla_ms=20000, title="Over the limit: errors or waiting")

# %% [markdown]
# Retries cannot create capacity: they only spread the 429s out. A bucket turns errors into a
# queue that grows as long as demand exceeds the limit. The real fixes are more capacity (a higher
# tier, a second model or provider) or less demand (caching, batch APIs).

# %% [markdown]
# ## Experiment 2: max_tokens against TPM
# **Question:** answers average about 200 tokens but requests ask for `max_tokens = 4096`, under a
# 200,000 TPM limit that counts input + max_tokens. Does the unused allowance matter?

# %%
import pandas as pd

ex = lessons.exercise("08")
cap_table = pd.DataFrame({n: ex.measure(n) for n in [256, 1024, 4096]}).T
cap_table.index.name = "max_tokens"
plots.sweep(cap_table, ["error_rate", "cut_share"], logx=True, ylabel="share of requests",
            title="max_tokens: refused (429) against cut off")

# %% [markdown]
# A large cap reserves TPM nobody uses, and the provider refuses requests it could have served; a
# small one cuts long answers off. The right cap sits just above your long answers.

# %% [markdown]
# ## Experiment 3: when a tenant's budget runs out
# **Question:** three tenants, $2 a day each. Which action keeps every tenant within budget *and*
# still answers people: warn, queue, downgrade to Haiku, or reject?

# %%
tenants = lessons.scenario_dict("multi-tenant-budgets")
actions = lessons.run_variants({
    a: lessons.variant(tenants, pipeline=[{"stage": "budget", "daily_usd": 2.0, "per": "tenant", "action": a,
                                           "downgrade_to": "claude-haiku-4-5"}])
    for a in ("warn", "queue", "downgrade", "reject")}, seed, requests)
budgets = lessons.budget_table(actions)
budgets

# %%
plots.bars(budgets, "max_tenant_spend_usd", hline=2.0, hline_label="budget $2/day", title="Largest tenant spend by action", fmt="${:.2f}")

# %% [markdown]
# *warn* overspends; *queue* keeps each day within budget by making people wait until the next day
# (look at p95: days); *reject* and *downgrade* keep it too — downgrade answers a few more
# requests, on the cheaper model, before the day's budget is gone. The reservation (input +
# max_tokens at the dearest model) is what keeps concurrent requests from overshooting.

# %% [markdown]
# ## Experiment 4: a budget that binds
# **Question:** one product on gpt-4o costs about \$13 for these 2,000 requests. With a \$3 daily
# budget that rejects, what does halving the budget to \$1.50 do to the bill, and to the share of
# people turned away?

# %%
binds = lessons.BUDGET_SCENARIO
halving = lessons.run_variants({
    "no budget": lessons.variant(binds, pipeline=[]),
    "budget 3 USD": lessons.variant(binds, {"pipeline[budget].daily_usd": 3.0}),
    "budget 1.50 USD": lessons.variant(binds, {"pipeline[budget].daily_usd": 1.5}),
    "1.50 USD, downgrade": lessons.variant(binds, {"pipeline[budget].daily_usd": 1.5, "pipeline[budget].action": "downgrade"}),
}, seed, requests)
lessons.table(halving)[["cost_usd", "rejected_rate", "p95_ms", "quality_mean"]]

# %%
halving["budget 1.50 USD"]

# %%
plots.bars(lessons.table(halving), "cost_usd", title="The bill under a budget that binds", fmt="${:.2f}")

# %% [markdown]
# A budget that binds *is* the bill: the cost is the budget, and what it stops is requests, so
# halving it halves the bill and turns many more people away. Downgrading to gpt-4o-mini at the
# limit answers more of them for the same money (at a lower mean quality).

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("08")
ex

# %%
print(ex.measure(max_tokens=512))   # explore
max_tokens = 4096                   # your answer
ex.check(max_tokens=max_tokens)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# Between the cut-off and the 429s: answers over about 500 tokens are rare (p99), and at 2.5
# requests a second the TPM allows input + max_tokens up to about 1,300 per request. 700 passes.
# </details>

# %% [markdown]
# ## Play
# The budget that binds: drag the daily budget from \$1 to \$20 and watch the bill follow it until
# the budget stops binding; switch the action to *warn* and it stops protecting anything.

# %%
from lab.widgets import Dashboard

Dashboard(lessons.BUDGET_SCENARIO, knobs=["daily budget (USD)", "budget action", "traffic rate (req/s)"],
          requests=requests, seed=seed)

# %% [markdown]
# ## What to remember
# - limits are capacity: a limiter or retries cannot serve more than the limit
# - max_tokens is reserved against TPM: cap it just above real answers
# - budgets need reservations for concurrency, and an action that fits the product
#
# **Next:** [09 · Resilience and outages](09_resilience.ipynb)
