# %% [markdown]
# # 09 · Resilience and outages
#
# Providers fail: 429s, 500s, overloads (Anthropic 529), and whole outages. **Retries** with
# exponential backoff and jitter recover transient errors; a **circuit breaker** stops calling a
# provider that keeps failing and probes it now and then; **fallback** sends traffic to another
# provider while the breaker is open. Each has a price: latency, duplicated load, a dearer model.
#
# **After this lesson you can**
# - tell transient errors from outages by how requests end over time
# - combine retries, a breaker and fallback
# - put a price on resilience
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
# The outage-day scenario: gpt-4o with 8 % server errors and a 20-minute outage (from minute 30
# to 50), Claude Sonnet available as a fallback. This lesson keeps the full 90 minutes and thins
# the traffic to `requests` requests, so the outage is always in the run.

# %%
outage = lessons.scenario_dict("provider-outage-day")
outage["traffic"]["arrivals"]["rate_per_s"] = requests / outage["duration_s"]
variants = {
    "no protection": lessons.variant(outage, pipeline=[]),
    "retries": lessons.variant(outage, pipeline=[{"stage": "retry", "max_attempts": 4}]),
    "retries + breaker + fallback": lessons.variant(outage),
}

# %% [markdown]
# ## Experiment 1: how requests end
# **Question:** with no protection, which share fails: about 8 %, about 30 %, or more? With
# retries? With fallback?

# %%
outage_runs = lessons.run_variants(variants, seed)
outage_table = lessons.table(outage_runs)
outage_table[["error_rate", "p95_ms", "cost_usd", "baseline_cost_usd"]]

# %%
plots.outcomes_over_time(outage_runs["no protection"], bucket_s=300, title="No protection")

# %%
plots.outcomes_over_time(outage_runs["retries + breaker + fallback"], bucket_s=300, title="Retries, breaker and fallback")

# %% [markdown]
# Retries fix the scattered 8 % (a second attempt usually works) but not the outage: every attempt
# during it fails too. Only fallback turns the outage into answers.

# %% [markdown]
# ## Experiment 2: the price
# **Question:** the baseline's bill counts every request at gpt-4o's list price. Will the
# resilient run cost less than that, the same, or more?

# %%
plots.bars(outage_table, "cost_usd", hline=float(outage_table["baseline_cost_usd"].iloc[0]), hline_label="every request at list price", title="What resilience costs", fmt="${:.3f}")

# %% [markdown]
# The unprotected run looks cheap because failed calls are not billed: it "saved" money by not
# answering. Fallback serves those requests on a dearer model. Compare costs only between runs
# that answer the same requests.

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("09")
ex

# %%
print(ex.measure(max_attempts=4, fallback=False))   # explore
max_attempts, fallback = 4, False                    # your answer
ex.check(max_attempts=max_attempts, fallback=fallback)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# Fallback is required (an outage outlasts any backoff); with it, 3 attempts bring failures under
# 0.1 %: `max_attempts=3, fallback=True`.
# </details>

# %% [markdown]
# ## What to remember
# - retries handle transient errors; outages need a breaker and a fallback
# - retry only what can succeed (429, 5xx), never a 400, and never sooner than Retry-After
# - resilience costs money: compare bills only for the same answered work
#
# **Next:** [10 · A digital twin from a real trace](10_digital_twin.ipynb)
