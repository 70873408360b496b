# %% [markdown]
# # 10 · A digital twin from a real trace
#
# A **digital twin** is a scenario calibrated from your own traffic — a trace or a ledger — that
# behaves like it: the same arrival rate and burstiness, the same token lengths, the same repeats.
# Once it reproduces the source, you can ask it what-ifs you cannot try in production.
#
# **After this lesson you can**
# - calibrate a twin from the Azure LLM inference trace and read why it chose what it did
# - check a twin against its source before trusting it
# - ask what-ifs and size capacity with it
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
import lab.twin as twin
from lab import lessons
from lab.traces import read_trace, shipped_trace_path

# %%
trace_path = shipped_trace_path("azure_conv")     # one hour of Azure's conversation service (CC-BY 4.0)
trace = read_trace(trace_path, format="azure")
len(trace), float(trace.t_arrival_s[-1])

# %% [markdown]
# ## Experiment 1: calibrate
# **Question:** is this traffic Poisson (requests independent, a constant rate)? What in the
# trace would tell you?

# %%
fit = twin.fit(trace_path, format="azure", sla_p95_ms=8000)
print(fit.story())

# %%
twin_run = lessons.run(fit.scenario, seed)
plots.arrival_rates({"Azure trace": trace.t_arrival_s, "twin": twin_run.requests.t_arrival_s},
                    bucket_s=60, title="Requests per second, trace and twin")

# %% [markdown]
# The index of dispersion (variance / mean of counts per window) is 1 for Poisson and grows with
# the window when the rate drifts: the calibration tried Poisson, then rate profiles, and says
# which matched.

# %% [markdown]
# ## Experiment 2: validate
# **Question:** which of these would you trust least in a twin: the rate, token percentiles,
# burstiness at 1 s, or the hourly cost?

# %%
check = twin.validate(fit.scenario, trace_path, format="azure", seeds=2)
check

# %%
plots.twin_validation(check)

# %% [markdown]
# ## Experiment 3: what if?
# **Question:** this trace has no prompt identities, so caches have nothing to reuse. What could
# still save money: capping answers at 400 tokens, or sending 30 % to the batch API? Which keeps
# the 8 s SLA?

# %%
runs = twin.what_if(fit.scenario, {
    "cap answers at 400": [{"stage": "compress", "max_output_tokens": 400}],
    "batch API for 30 %": [{"stage": "batch_api", "share": 0.3}],
}, seeds=2, requests=requests)
twin.recommend(runs, sla_p95_ms=8000, quality_floor=0.9)

# %%
plots.bars(runs.table.set_index("policy"), "cost_usd_per_day", title="Cost per day by policy", fmt="${:,.2f}")

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("10")
ex

# %%
print(ex.measure(concurrency=16))   # explore
concurrency = 16                     # your answer: provider slots
ex.check(concurrency=concurrency)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# Queues explode below about 28 slots and vanish above: 32 passes (`ex.smallest` is the exact answer).
# </details>

# %% [markdown]
# ## What to remember
# - a twin is only as good as its validation: compare it with the source first
# - burstiness (dispersion), not just the mean rate, decides queueing
# - what-ifs on a twin are cheap; rank them under your SLA and quality floor
#
# **Next:** [11 · Analytics: KPIs, anomalies, forecasts and a report](11_analytics.ipynb)
