# %% [markdown]
# # 02 · Baselines and the ledger
#
# Every costlab run comes with its **baseline**: the same request stream sent straight to the
# first provider, each request billed once at list price. The **ledger** has one row per request
# with what it cost, what it would have cost in the baseline, its latency and its outcome. One
# simulation is one sample: another seed is other traffic from the same distributions.
#
# **After this lesson you can**
# - explain exactly what the baseline is and why reductions are measured against it
# - use several seeds and a confidence interval instead of one number
# - slice the ledger with pandas: by outcome, tenant, time
# - save experiments, list them, reopen one and compare two, next week as today
#
# *How to use it:* run the cells in order (Shift-Enter). Before each experiment, answer its
# question in your head; then run it and compare. Every number comes from a simulation you can
# re-run with another `seed`.

# %% tags=["parameters"]
# Parameters (papermill sets these when it runs the notebook headless; keep the "parameters" tag).
requests = 2000   # requests per simulation: small, so every cell runs in a second or two
seed = 0          # the same seed gives the same numbers, bit for bit
store_url = None  # your experiment store: None means $COSTLAB_STORE, else ~/.costlab/lab.db

# %%
# %matplotlib inline
import lab
import lab.plots as plots
from lab import lessons

# %%
scenario = lab.load_scenario(lessons.scenario_path("support-chatbot"))
result = lab.simulate(scenario, seed=seed, requests=requests)
result.summary()["baseline"]

# %% [markdown]
# ## Experiment 1: cost over time, with and without
# **Question:** the cache starts empty. Will the optimized cost per minute be flat, or will it
# fall as the run goes on?

# %%
result.ledger[["request_id", "t_arrival_s", "tenant", "outcome", "cost_usd", "baseline_cost_usd", "latency_ms"]].head(8)

# %%
plots.cost_over_time(result)

# %% [markdown]
# The baseline's cost per minute only follows traffic. The optimized cost starts close to it and
# falls while the cache warms up: a short run *understates* what a cache saves in steady state.

# %% [markdown]
# ## Experiment 2: one seed is one sample
# **Question:** run the same scenario on four seeds. Will the reduction differ by less than one
# point, a few points, or more?

# %%
from lab.analysis.baselines import run_seeds

runs = run_seeds(scenario, seeds=range(seed, seed + 4), requests=requests, progress=False)
runs.comparison().table()[["label", "baseline", "candidate", "change_pct", "ci_low", "ci_high"]]

# %%
plots.seed_costs(runs)

# %% [markdown]
# Seeds are paired: each seed's optimized run and its baseline saw the same requests, so the
# interval on the *reduction* is much tighter than the spread of the bills themselves.

# %% [markdown]
# ## Experiment 3: who costs what?
# **Question:** the chatbot serves two tenants, retail (3 parts of the traffic) and travel (1
# part). Does retail save as much as travel, in percent?

# %%
plots.attribution_bars(result, by="tenant")

# %% [markdown]
# ## Experiment 4: experiments that last
# **Question:** next week you will want to compare a new cache with today's. What must you keep
# from today: the bill, the seeds, the scenario, the ledger?
#
# All of it, and the store keeps it: `result.save(name)` writes the run (scenario file, seed,
# summary, ledger, costlab and price versions) into your store, a file in your home or a
# class's PostgreSQL. Here: the shipped 1,000-entry cache and a 100-entry one, on three seeds each.

# %%
import lab.store

store = lab.store.use(store_url)
small_cache = lessons.variant("support-chatbot", {"pipeline[cache].capacity": 100})
seeds = range(seed, seed + 3)
shipped = [lab.simulate(scenario, seed=s, requests=requests).save("lesson-02 cache sizes", tags=["1000 entries"])
           for s in seeds]
small = [lab.simulate(small_cache, seed=s, requests=requests).save("lesson-02 cache sizes", tags=["100 entries"])
         for s in seeds]
lab.store.runs(experiment="lesson-02 cache sizes").tail(6)[["run_id", "seed", "requests", "cost_usd",
                                                            "reduction_pct", "tags", "created_at"]]

# %% [markdown]
# Reopen a run: `lab.store.load` re-runs its stored scenario on its seed and checks the result
# against what was saved, so it renders, plots and reports exactly like the fresh one.

# %%
again = lab.store.load(shipped[0])
plots.cost_over_time(again)

# %% [markdown]
# Compare the two caches: the runs share their seeds, so the comparison is paired seed by seed
# (`costlab runs compare` prints the same from the command line).

# %%
lab.store.compare(small, shipped).table()[["label", "baseline", "candidate", "change_pct", "ci_low", "ci_high"]]

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("02")
ex

# %%
ledger = result.ledger
share = 0.3    # your answer: the share (0..1) of requests answered with no provider call
ex.check(result, share=share)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# ```python
# share = ledger["outcome"].isin(["cache_hit", "deduplicated"]).mean()
# ```
# </details>

# %% [markdown]
# ## What to remember
# - a reduction is paired with its baseline on the same requests
# - report an interval over seeds, not one run's number
# - the ledger answers the follow-up questions: by tenant, by time, by outcome
# - `result.save(...)`, `lab.store.runs()`, `lab.store.load(id)`, `lab.store.compare(a, b)` keep
#   experiments for later (`costlab runs` on the command line)
#
# **Next:** [03 · Response caching: policies, TTLs, stampedes](03_response_caching.ipynb)
