# %% [markdown]
# # 03 · Response caching: policies, TTLs, stampedes
#
# A response cache stores answers by prompt and answers repeats without calling the model. How
# much it saves depends on how repetitive traffic is (popularity is often Zipf: a few prompts are
# asked very often), how much it may hold (**capacity** and **eviction policy**), how long an
# answer stays right (**TTL**, invalidation) and what happens when a hot entry expires
# (a **stampede**).
#
# **After this lesson you can**
# - predict a hit rate from capacity with Che's approximation
# - choose between LRU, LFU and FIFO eviction
# - trade freshness against cost with TTLs and invalidation
# - prevent stampedes with request coalescing and early refresh
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
# ## Experiment 1: capacity
# **Question:** 10,000 distinct questions with Zipf(0.9) popularity. If 100 cache entries give
# some hit rate, do 200 entries give twice as much?

# %%
capacities = [25, 50, 100, 200, 400, 800, 1600, 3200]
def with_capacity(c):
    return lessons.variant("support-chatbot", pipeline=[{"stage": "cache", "capacity": c, "shared": True}])

sweep = lessons.sweep_values(with_capacity, capacities, seed, requests, label="capacity (entries)")
theory = [lessons.che_lru_hit_ratio(10_000, 0.9, c) for c in capacities]
sweep[["cache_hit_rate", "reduction_pct"]]

# %%
plots.sweep(sweep, "cache_hit_rate", logx=True, title="Hit rate against capacity",
            reference={"Che's approximation (steady state)": theory})

# %% [markdown]
# Each doubling adds about the same number of points: hits grow with the *logarithm* of capacity
# under Zipf popularity. The simulation sits below the theory because the cache starts cold (the
# theory is the steady state of an endless run), and it flattens once every question asked so far
# fits: a short run cannot fill a big cache.

# %% [markdown]
# ## Experiment 2: eviction policy
# **Question:** at 200 entries, which keeps more hits on Zipf traffic: LRU (evict the least
# recently used), LFU (least frequently used) or FIFO (oldest first)?

# %%
policies = {p: lessons.variant("support-chatbot", pipeline=[{"stage": "cache", "capacity": 200, "policy": p, "shared": True}])
            for p in ("lru", "lfu", "fifo")}
by_policy = lessons.compare(policies, seed, requests)
plots.bars(by_policy, "cache_hit_rate", title="Hit rate by eviction policy (200 entries)", fmt="{:.3f}")

# %% [markdown]
# With stable popularity LFU keeps the truly popular prompts; LRU is close and adapts when
# popularity shifts; FIFO ignores use altogether.

# %% [markdown]
# ## Experiment 3: freshness
# **Question:** in the product catalog, prices change three times a second and a cached answer
# about a changed product is wrong. What does a long TTL buy, what does a short one cost, and
# what does invalidating on update change?

# %%
catalog = lessons.scenario_dict("catalog-price-updates")
fresh = {
    "TTL 900 s, no invalidation": lessons.variant(catalog, {"pipeline[cache].invalidate_on_update": False}),
    "TTL 30 s, no invalidation": lessons.variant(catalog, {"pipeline[cache].invalidate_on_update": False,
                                                          "pipeline[cache].ttl_s": 30}),
    "TTL 900 s + invalidation": lessons.variant(catalog),
}
by_freshness = lessons.compare(fresh, seed, requests)
by_freshness[["cost_usd", "cache_hit_rate", "quality_mean"]]

# %%
plots.scatter(by_freshness, "cost_usd", "quality_mean", title="Cost against correctness")

# %% [markdown]
# Without invalidation a TTL is a dial between cost and wrong answers: a shorter TTL is dearer
# and still serves stale answers. Invalidation (a change event removes the entry) keeps quality at
# 1.0 and costs less than the short TTL, because it refetches only what actually changed: when you
# can get change events, use them.

# %% [markdown]
# ## Experiment 4: the stampede
# **Question:** one hot prompt, 100 requests a second, cached for 5 s, and a fetch takes about
# 5 s. When the entry expires, how many requests call the model before the new answer is stored?
# (This experiment plays `3 x requests` requests, so several expiries fit in.)

# %%
hot = lessons.scenario_dict("hot-key-stampede")
stampede = {
    "plain cache": lessons.variant(hot, {"pipeline[cache].ttl_s": 5, "pipeline[cache].coalesce": False,
                                         "pipeline[cache].xfetch_beta": 0.0}),
    "coalesce misses": lessons.variant(hot, {"pipeline[cache].ttl_s": 5, "pipeline[cache].xfetch_beta": 0.0}),
    "coalesce + early refresh": lessons.variant(hot, {"pipeline[cache].ttl_s": 5}),
}
stampede_runs = lessons.run_variants(stampede, seed, 3 * requests)
stampede_table = lessons.table(stampede_runs)[["provider_calls", "cost_usd"]]
stampede_table["waited_share"] = [float((r.latency_ms() > 100).mean()) for r in stampede_runs.values()]
stampede_table     # waited_share: requests that waited for the model (slower than 100 ms)

# %%
plots.calls_over_time(stampede_runs, bucket_s=1.0, title="Provider calls: each spike is an expiry")

# %% [markdown]
# A plain cache sends every request that arrives during the refill to the model: the spikes.
# Coalescing makes them wait for the one fetch in flight — almost no calls, but they still wait;
# early refresh (XFetch) refetches a hot entry shortly *before* it expires, so almost nobody waits
# after the cold start (it pays for a few extra refreshes).

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("03")
ex

# %%
print(ex.measure(capacity=300))     # explore: hit rate at 300 entries
capacity = 300                      # your answer
ex.check(capacity=capacity)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# Hit rate grows with capacity, so search: measure 300, 600, 1000 ... then narrow down. About
# 680-700 entries reach 40 % on that run; 700 passes.
# </details>

# %% [markdown]
# ## Play
# Capacity, TTL and policy on the support chatbot. Which knob moves cost most per step?

# %%
from lab.widgets import Dashboard

Dashboard("support-chatbot", knobs=["cache capacity", "cache TTL (s)", "cache policy"], requests=requests, seed=seed)

# %% [markdown]
# ## What to remember
# - under Zipf popularity hit rate grows with the log of capacity: the first hundreds of entries matter most
# - a TTL trades freshness for cost; invalidation on change gets both
# - hot keys need stampede protection: coalesce misses, refresh early
#
# **Next:** [04 · In-flight deduplication](04_deduplication.ipynb)
