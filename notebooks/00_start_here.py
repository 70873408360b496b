# %% [markdown]
# # 00 · Start here: run a scenario, read the bill
#
# costlab is a simulator for the cost of AI APIs. It plays a stream of requests — arrivals,
# prompts, token counts — through a pipeline of optimizations (caches, deduplication, batching,
# routing, ...) in front of mocked OpenAI, Anthropic and Gemini models, and writes down every
# request's tokens, cost, latency and outcome. Every run is compared with its **baseline**: the
# very same requests sent straight to the model, priced at list price.
#
# **After this lesson you can**
# - run a scenario file and read its bill: baseline against optimized cost
# - say which optimization saved what, and what it did to latency
# - find your way around a ledger: one row per request
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
import lab
import lab.plots as plots
from lab import lessons

# %% [markdown]
# ## The scenario
# A scenario is a TOML file: traffic, providers, the optimization pipeline, the SLA. This one is
# a support chatbot: customers ask Zipf-popular questions behind a long system prompt. Read the
# comments at its top: they tell the story.

# %%
path = lessons.scenario_path("support-chatbot")
print(path.read_text())

# %% [markdown]
# ## Experiment 1: the bill
# **Question:** the pipeline has a response cache, in-flight deduplication and provider prompt
# caching. What share of the bill do you expect it to save: 10 %, 30 % or 60 %?

# %%
scenario = lab.load_scenario(path)
result = lab.simulate(scenario, seed=seed, requests=requests)
result

# %%
plots.savings_waterfall(result)

# %% [markdown]
# Read it left to right: the bill without optimization, each stage's saving in pipeline order,
# and what is left. The baseline saw *the same* requests, so the difference is the pipeline's
# doing, not luck of the draw.

# %% [markdown]
# ## Experiment 2: did it get slower?
# **Question:** a cache hit answers in 2 ms instead of seconds. Will the p95 latency (the time
# 95 % of requests beat) fall a lot, a little, or not at all?

# %%
plots.latency_cdf(result)

# %% [markdown]
# The curve jumps at the left: those are cache hits. But p95 is set by the slowest 5 %, and those
# are calls that still went to the model — so p95 moves much less than the median.

# %% [markdown]
# ## Experiment 3: the ledger
# **Question:** every request ends one way: `ok` (a model answered), `cache_hit`,
# `deduplicated` (merged into an identical request in flight), `batched`, `rejected` or `error`.
# Which do you expect most of here?

# %%
ledger = result.ledger
ledger.head()

# %%
outcomes = ledger["outcome"].value_counts().to_frame("requests")
plots.bars(outcomes, "requests", title="How requests ended", fmt="{:,.0f}")

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("00")
ex

# %%
s = result.summary()          # the numbers behind the table above
cost_per_1k_usd = 0.0         # your answer: what 1,000 requests cost after optimization
top_stage = "dedup"           # your answer: the stage that saved the most
ex.check(result, cost_per_1k_usd=cost_per_1k_usd, top_stage=top_stage)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# ```python
# cost_per_1k_usd = 1000 * s["cost_usd"] / s["requests"]
# top_stage = max(s["by_stage"], key=lambda k: s["by_stage"][k]["cost_saved_usd"])
# ```
# </details>

# %% [markdown]
# ## Play
# A dashboard re-runs a small simulation whenever you move a control (in a live notebook; a
# headless run just draws it once). Try a tiny cache, then a short TTL: watch the cost, the
# latency curve and your trail of runs.

# %%
from lab.widgets import Dashboard

Dashboard("support-chatbot", knobs=["cache capacity", "cache TTL (s)", "traffic rate (req/s)"],
          requests=requests, seed=seed)

# %% [markdown]
# ## The lessons
# | # | lesson |
# |---|---|
# | 00 | [Start here: run a scenario, read the bill](00_start_here.ipynb) |
# | 01 | [Tokens and prices](01_tokens_and_prices.ipynb) |
# | 02 | [Baselines and the ledger](02_baselines_and_the_ledger.ipynb) |
# | 03 | [Response caching: policies, TTLs, stampedes](03_response_caching.ipynb) |
# | 04 | [In-flight deduplication](04_deduplication.ipynb) |
# | 05 | [Batching and batch APIs](05_batching.ipynb) |
# | 06 | [Provider prompt caching](06_prompt_caching.ipynb) |
# | 07 | [Routing and cascades: the cost-quality frontier](07_routing_and_cascades.ipynb) |
# | 08 | [Rate limits and budgets](08_rate_limits_and_budgets.ipynb) |
# | 09 | [Resilience and outages](09_resilience.ipynb) |
# | 10 | [A digital twin from a real trace](10_digital_twin.ipynb) |
# | 11 | [Analytics: KPIs, anomalies, forecasts and a report](11_analytics.ipynb) |
# | 12 | [Live providers: replay by default, live with keys and a budget](12_live_providers.ipynb) |
# | 13 | [Scale: parameter sweeps](13_scale_sweeps.ipynb) |
# | 14 | [The class gateway: real SDKs, one key, a cap per learner](14_class_gateway.ipynb) |
# | 15 | [Where a bill's tokens go: the token analyzer](15_token_analyzer.ipynb) |
#
# Scenario fields and every stage's options: `scenarios/README.md`. The command line does the
# same things: `costlab run scenarios/support-chatbot.toml --json out.json`.

# %% [markdown]
# ## What to remember
# - the baseline is the same requests with no pipeline, at list price: a reduction is always against it
# - `result.summary()` is the bill; `result.ledger` is one row per request
# - savings and latency are separate questions: check both, and the SLA
#
# **Next:** [01 · Tokens and prices](01_tokens_and_prices.ipynb)
