# %% [markdown]
# # 04 · In-flight deduplication
#
# A cache only helps once an answer is stored. But when a burst of identical requests arrives
# *while the first answer is still being generated*, a cache misses them all. **In-flight
# deduplication** (single-flight) lets the first request lead and makes the identical ones wait
# for its answer: they pay nothing and get it the moment it arrives.
#
# **After this lesson you can**
# - explain when identical requests overlap in flight: bursts and slow answers
# - measure what dedup saves, and what a short reuse window adds
# - decide whether tenants may share answers
#
# *How to use it:* run the cells in order (Shift-Enter). Before each experiment, answer its
# question in your head; then run it and compare. Every number comes from a simulation you can
# re-run with another `seed`.

# %% tags=["parameters"]
# Parameters (papermill sets these when it runs the notebook headless; keep the "parameters" tag).
requests = 10000   # requests per simulation: small, so every cell runs in a second or two
seed = 0          # the same seed gives the same numbers, bit for bit

# %%
# %matplotlib inline
import lab.plots as plots
from lab import lessons

# %% [markdown]
# ## Experiment 1: a burst
# **Question:** a social feed gets bursts of 60 requests a second for a few hundred trending
# posts. With no cache at all, what share of requests could simply wait for an identical one
# already in flight?

# %%
feed = lessons.scenario_dict("bursty-social-feed")
burst = {
    "no optimization": lessons.variant(feed, pipeline=[]),
    "dedup": lessons.variant(feed, pipeline=[{"stage": "dedup", "shared": True}]),
    "dedup + 30 s cache": lessons.variant(feed),
}
burst_runs = lessons.run_variants(burst, seed, requests)
lessons.table(burst_runs)[["provider_calls", "reduction_pct", "p95_ms"]]

# %%
optimized = {k: r for k, r in burst_runs.items() if k != "no optimization"}
plots.calls_over_time(optimized, bucket_s=10.0, title="Provider calls during bursts")


# %% [markdown]
# Without dedup every burst hits the model at full rate and the 64 slots queue up (look at the
# p95 without optimization). Dedup alone removes a large part of the calls; a short cache catches the
# repeats that come after the answer.

# %% [markdown]
# ## Experiment 2: slow answers overlap more
# **Question:** if the model generated tokens faster, would dedup merge more requests or fewer?

# %%
def with_speed(tokens_per_s):
    return lessons.variant(feed, {"providers[0].ttft_ms": {"dist": "constant", "value": 400},
                                  "providers[0].tokens_per_s": tokens_per_s},
                           pipeline=[{"stage": "dedup", "shared": True}])

speed = lessons.sweep_values(with_speed, [20, 50, 100, 300, 1000], seed, requests, label="output tokens per second")
plots.sweep(speed, "reduction_pct", logx=True, title="Dedup saving against generation speed")

# %% [markdown]
# The longer an answer takes, the more identical requests arrive during it: dedup pays most on
# slow models, long answers and bursty traffic.

# %% [markdown]
# ## Experiment 3: may tenants share?
# **Question:** web and mobile users ask about the same posts. Merging across tenants saves
# more; what does it risk?

# %%
sharing = {
    "per tenant": lessons.variant(feed, pipeline=[{"stage": "dedup", "shared": False}]),
    "shared": lessons.variant(feed, pipeline=[{"stage": "dedup", "shared": True}]),
}
plots.bars(lessons.compare(sharing, seed, requests), "reduction_pct", title="Dedup saving", fmt="{:.1f} %")

# %% [markdown]
# Sharing is only safe when an answer contains nothing tenant-specific. Keys include the tenant by
# default, so one customer's answer never reaches another; turning it off is a product decision.

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("04")
ex

# %%
print(ex.measure(window_s=2))     # explore
window_s = 2                      # your answer, in seconds
ex.check(window_s=window_s)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# Measure a few windows (2, 5, 10, 20 s) and narrow down: about 7-8 s reaches 70 %; 8 passes.
# </details>

# %% [markdown]
# ## What to remember
# - dedup catches what a cache cannot: identical requests while the first is in flight
# - it pays most in bursts and on slow answers
# - merging across tenants is a privacy decision, not just a cost one
#
# **Next:** [05 · Batching and batch APIs](05_batching.ipynb)
