# %% [markdown]
# # 05 · Batching and batch APIs
#
# Two different ideas share the name. **Request batching** sends several requests that share a
# system prompt as one call: the prompt is paid once per batch, but the answers are generated one
# after another, so everyone waits longer. **Batch APIs** (OpenAI Batch, Anthropic Message
# Batches, Gemini Batch Mode) take work that can wait hours and bill it at half price.
#
# **After this lesson you can**
# - size a request batch against an SLA
# - decide which work can go to a batch API and what it costs in latency
# - tell the two apart: one shares tokens, the other gets a discount
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
# ## Experiment 1: batch size
# **Question:** a dashboard page fires 20 questions at once behind a 1,200-token instruction
# prompt. Batches of 1, 2, 5, 10, 20: how much cheaper, and how much slower?

# %%
dashboard = lessons.scenario_dict("analytics-dashboard-batching")
def with_size(n):
    return lessons.variant(dashboard, pipeline=[{"stage": "batch", "max_batch_size": n, "window_ms": 150}])

sizes = lessons.sweep_values(with_size, [1, 2, 5, 10, 20], seed, requests, label="max batch size")
sizes[["reduction_pct", "p95_ms"]]

# %%
plots.sweep(sizes, "reduction_pct", y2="p95_ms", title="Batching: saving and p95 latency",
            y2_hline=8000, y2_hline_label="SLA 8 s")

# %% [markdown]
# The saving flattens (the shared prompt is already split 5 or 10 ways) while p95 latency has
# tripled: past some size you pay latency for almost nothing. (Beyond 10 little changes: few pages
# gather more questions within the 150 ms window.) An SLA-aware batch flushes early when waiting
# would break the SLA.

# %% [markdown]
# ## Experiment 2: the batch API
# **Question:** a nightly job enriches product records; nobody waits for a single answer. Send a
# growing share to the batch API: how do cost and the median latency move?

# %%
nightly = lessons.scenario_dict("nightly-enrichment-batch-api")
def with_share(share):
    return lessons.variant(nightly, {"providers[0].rate_limits": "none"},
                           pipeline=[{"stage": "batch_api", "share": share}])

shares = lessons.sweep_values(with_share, [0.0, 0.25, 0.5, 0.75, 1.0], seed, requests, label="share sent to the batch API")
shares["p50_min"] = shares["p50_ms"] / 60_000
shares[["reduction_pct", "p50_min"]]

# %%
plots.sweep(shares, "reduction_pct", y2="p50_min", title="Batch API: half price, minutes instead of seconds")

# %% [markdown]
# Half price for everything that goes, minutes to hours of waiting for it. Good for nightly jobs,
# evaluations and embeddings backfills; never for a user waiting at a screen.

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("05")
ex

# %%
print(ex.measure(max_batch_size=2, window_ms=150))    # explore
max_batch_size, window_ms = 2, 150                    # your answer
ex.check(max_batch_size=max_batch_size, window_ms=window_ms)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# From experiment 1: 2 saves too little, 10 is too slow. `max_batch_size=5, window_ms=150` saves
# about 42 % at p95 about 4 s.
# </details>

# %% [markdown]
# ## Play
# Batch window and size on the dashboard scenario.

# %%
from lab.widgets import Dashboard

Dashboard("analytics-dashboard-batching", knobs=["batch window (ms)", "batch size"], requests=requests, seed=seed)

# %% [markdown]
# ## What to remember
# - request batching shares a prompt's tokens and costs latency: size it against the SLA
# - batch APIs halve the price of work that can wait hours
# - check which one you are talking about
#
# **Next:** [06 · Provider prompt caching](06_prompt_caching.ipynb)
