# %% [markdown]
# # 07 · Routing and cascades: the cost-quality frontier
#
# Cheap models answer easy requests as well as dear ones, and hard requests worse. A **router**
# picks a model per request (cheapest, fastest, best, or a weighted balance, among models expected
# to meet a quality need); a **cascade** tries the cheap model first and escalates when a judge
# scores the answer below a threshold — paying for the discarded answer. In costlab, each request
# has a *difficulty* and each model a *skill*; quality = 1 / (1 + exp(12 (difficulty - skill))).
#
# **After this lesson you can**
# - route requests by strategy and a quality need
# - trace a cascade's cost-quality curve by its threshold
# - pick a point on the Pareto frontier under a quality floor
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

# %%
routing = lessons.ROUTING_SCENARIO      # Sonnet first (the baseline); Haiku and Flash-Lite available
routing["providers"]

# %% [markdown]
# ## Experiment 1: routers
# **Question:** route everything to the cheapest model. What happens to mean quality? And if the
# router may only pick models expected to reach quality 0.8 on each request?

# %%
routers = lessons.compare({
    "all Sonnet": lessons.variant(routing),
    "cheapest": lessons.variant(routing, pipeline=[{"stage": "router", "strategy": "cheapest"}]),
    "cheapest, need 0.8": lessons.variant(routing, {"traffic.min_quality": 0.8},
                                          pipeline=[{"stage": "router", "strategy": "cheapest"}]),
}, seed, requests)
routers[["cost_usd", "quality_mean", "p95_ms"]]

# %%
points = [{"label": k, "cost_usd": row.cost_usd, "quality": row.quality_mean} for k, row in routers.iterrows()]
plots.cost_quality_frontier(points, title="Routers: cost against quality")

# %% [markdown]
# Blind cheapest routing saves almost everything and loses a lot of quality; a quality need
# routes only the requests a cheap model can handle.

# %% [markdown]
# ## Experiment 2: a cascade's threshold
# **Question:** Flash-Lite, then Haiku, then Sonnet; escalate when the judged quality is below
# the threshold. Raising the threshold from 0.3 to 0.95: does quality rise steadily? And cost?

# %%
cascade = {"stage": "cascade", "models": lessons.CASCADE_MODELS}
thresholds = [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
by_threshold = lessons.sweep_values(lambda t: lessons.variant(routing, pipeline=[{**cascade, "threshold": t}]),
                                    thresholds, seed, requests, label="threshold")
curve = [{"label": f"t={t:g}", "cost_usd": row.cost_usd, "quality": row.quality_mean} for t, row in by_threshold.iterrows()]
plots.cost_quality_frontier(curve + points, title="Cascade thresholds and routers")

# %% [markdown]
# **Question:** every escalation is another full model call. What does that do to latency?

# %%
plots.sweep(by_threshold, "p95_ms", title="Cascade: p95 latency against threshold")

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("07")
ex

# %%
print(ex.measure(threshold=0.5))   # explore
threshold = 0.5                    # your answer
ex.check(threshold=threshold)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# Quality rises with the threshold; the cheapest threshold that reaches 0.85 is 0.7 (0.75 also
# passes, within 10 % of its cost).
# </details>

# %% [markdown]
# ## Play
# The cascade threshold, live (quality floor 0.85 drawn).

# %%
from lab.widgets import Dashboard

Dashboard({**routing, "pipeline": [{**cascade, "threshold": 0.8}]}, knobs=["cascade threshold"],
          requests=requests, seed=seed, quality_floor=0.85)

# %% [markdown]
# ## What to remember
# - routing needs a quality signal: without one, cheapest means worst
# - a cascade's threshold walks along a cost-quality curve; every escalation costs money and latency
# - choose on the Pareto frontier, under your quality floor
#
# **Next:** [08 · Rate limits and budgets](08_rate_limits_and_budgets.ipynb)
