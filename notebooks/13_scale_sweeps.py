# %% [markdown]
# # 13 · Scale: parameter sweeps
#
# One run answers one question. Choosing a configuration means many runs: a **grid** of settings,
# each on several **seeds**, summarised with confidence intervals. `lab.sweep` runs every
# combination in parallel — on local processes, or on a Dask cluster with the same code — and
# returns one row per grid point with the mean and 95 % interval of every metric.
#
# **After this lesson you can**
# - sweep a two-knob grid over seeds and read it as heatmaps
# - use intervals to tell real differences from seed noise
# - choose a configuration under a constraint, and scale the search out
#
# *How to use it:* run the cells in order (Shift-Enter). Before each experiment, answer its
# question in your head; then run it and compare. Every number comes from a simulation you can
# re-run with another `seed`.

# %% tags=["parameters"]
# Parameters (papermill sets these when it runs the notebook headless; keep the "parameters" tag).
requests = 3000   # requests per simulation: small, so every cell runs in a second or two
seed = 0          # the same seed gives the same numbers, bit for bit
seeds = 3         # seeds per grid point
workers = 2       # local processes (lab.sweep also takes a dask.distributed Client)

# %%
# %matplotlib inline
import lab
import lab.plots as plots
from lab import lessons

# %% [markdown]
# The catalog assistant *without* invalidation: a cached answer about a product that changed is
# wrong until its TTL expires. Short TTLs are fresh and dear; long ones cheap and stale.

# %%
catalog = lessons.stale_catalog_dict()
grid = {"pipeline[cache].ttl_s": list(lessons.SWEEP_TTLS), "pipeline[cache].capacity": list(lessons.SWEEP_CAPACITIES)}
grid

# %% [markdown]
# ## Experiment 1: the grid
# **Question:** which knob moves cost more, TTL or capacity? Which one moves quality?

# %%
table = lab.sweep(catalog, grid, seeds=seeds, requests=requests, workers=workers, progress=False,
                  metrics=["cost_usd", "quality_mean", "latency_ms.p95"])
table[["pipeline[cache].ttl_s", "pipeline[cache].capacity", "seeds", "cost_usd.mean", "quality_mean.mean"]]

# %%
plots.heatmap(table, "pipeline[cache].ttl_s", "pipeline[cache].capacity", "cost_usd.mean", title="Mean cost (USD)", fmt="{:.3f}")

# %%
plots.heatmap(table, "pipeline[cache].ttl_s", "pipeline[cache].capacity", "quality_mean.mean", title="Mean quality", fmt="{:.3f}", cmap="RdYlGn")

# %% [markdown]
# ## Experiment 2: is a difference real?
# **Question:** two neighbouring grid points differ by a little in cost. With this many seeds,
# can you tell them apart?

# %%
plots.sweep_ci(table, "pipeline[cache].ttl_s", "quality_mean", group="pipeline[cache].capacity",
               hline=0.95, hline_label="quality floor 0.95", title="Quality against TTL (95 % intervals)")

# %% [markdown]
# Overlapping bands mean "not separated yet": more seeds shrink them (by about the square root
# of the number of seeds). Decide on points whose interval clears your floor, not on means alone.

# %% [markdown]
# ## Experiment 3: traffic x capacity
# **Question:** at 1x, 3x and 10x today's traffic, how many provider slots keep p95 under the SLA?

# %%
capacity = lab.sweep(lessons.scenario_path("support-chatbot"),
                     {"traffic.arrivals.rate_per_s": [20, 60, 200], "providers[0].concurrency": [16, 64, 256]},
                     seeds=1, requests=requests, workers=workers, progress=False, metrics=["latency_ms.p95"])
plots.heatmap(capacity, "traffic.arrivals.rate_per_s", "providers[0].concurrency", "latency_ms.p95.mean",
              title="p95 latency (ms, log colour scale); SLA 8,000 ms", fmt="{:,.0f}", cmap="RdYlGn_r", log=True)

# %% [markdown]
# ### Scaling out
# The same call runs on a cluster: start a Dask scheduler and workers, then
#
# ```python
# from distributed import Client
# table = lab.sweep(catalog, grid, seeds=20, client=Client("tcp://scheduler:8786"))
# ```
#
# or from a shell: `costlab sweep scenarios/support-chatbot.toml --grid grid.toml --seeds 20`.
# Each run is independent and seeded, so the numbers do not depend on where they ran.

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("13")
ex

# %%
ttl_s, capacity = 60, 2000     # your answer: a grid point
ex.check(ttl_s=ttl_s, capacity=capacity)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# Read the table: keep rows with `quality_mean.mean >= 0.95`, then take the cheapest (the check
# uses 3,000 requests on seeds 0, 1 and 2, like the default sweep). `ex.reference` holds it.
# </details>

# %% [markdown]
# ## What to remember
# - a decision is a grid times seeds, summarised with intervals
# - heatmaps show which knob matters; intervals show which differences are real
# - the same sweep scales from a laptop's cores to a cluster
#
# **Next:** [14 · Where a bill's tokens go: the token analyzer](14_token_analyzer.ipynb)
