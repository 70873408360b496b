# %% [markdown]
# # 06 · Provider prompt caching
#
# Providers cache the **beginning** of prompts they have seen. When the next prompt starts the
# same way (the same system prompt, tool definitions, the conversation so far), those tokens are
# read from cache at a fraction of the input price. The rules differ: OpenAI caches automatically
# from 1,024 tokens with no fee (GPT-5.6 and later charge 1.25x to write); Anthropic needs an
# explicit breakpoint and a minimum length per model (1,024 tokens on Sonnet 4.5, 4,096 on Haiku
# 4.5), charges extra to *write* the cache (1.25x for 5 minutes, 2x for 1 hour) and 0.1x to read
# it; Gemini caches implicitly from 2,048 tokens on 2.5 Flash and Pro (4,096 on 3.x). Every such
# rule, with the page it comes from, is in costlab's rule book: `lab.provider_rules.cache_rules`.
#
# **After this lesson you can**
# - predict what prompt caching saves on each provider
# - spot when caching *costs* money: writes that are never read
# - place a cache breakpoint for a growing agent context
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
# ## Experiment 1: four providers, one system prompt
# **Question:** the support chatbot's 1,500-token system prompt, with each provider's own caching
# rules. Which saves most, and does any save nothing?

# %%
chatbot = lessons.scenario_dict("support-chatbot")
providers = {"openai/gpt-4o-mini": "openai", "anthropic/claude-sonnet-4-5": "anthropic",
             "anthropic/claude-haiku-4-5": "anthropic", "google/gemini-2.5-flash": "gemini"}
by_provider = lessons.compare({
    m: lessons.variant(chatbot, {"providers[0].name": m.split("/")[0], "providers[0].model": m.split("/")[1]},
                       pipeline=[{"stage": "prompt_cache", "rules": rules}])
    for m, rules in providers.items()}, seed, requests)
plots.bars(by_provider, "reduction_pct", title="What prompt caching saves, by provider", fmt="{:.1f} %")

# %% [markdown]
# Claude Haiku 4.5 saves nothing: its minimum cacheable prefix is 4,096 tokens and this prompt has
# 1,500. Gemini 2.5 Flash saves little: its 2,048-token minimum is reached only when a whole
# question is repeated. Elsewhere savings follow each model's cached-input discount (OpenAI 50 %,
# Anthropic 90 %) times the share of input that is the shared prefix.

# %% [markdown]
# ## Experiment 2: can caching make the bill bigger?
# **Question:** on Anthropic a cache write costs 1.25x (or 2x). If requests come rarely, entries
# expire before anyone reads them. Below which request rate does caching lose money?

# %%
import pandas as pd

ex = lessons.exercise("06")
gaps_s = [30, 120, 300, 600, 1800]
by_gap = pd.DataFrame({ttl: [ex.measure(ttl, 1 / g)["reduction_pct"] for g in gaps_s] for ttl in ("5m", "1h")},
                      index=pd.Index(gaps_s, name="seconds between requests"))
plots.sweep(by_gap, ["5m", "1h"], logx=True, hline=0, ylabel="cost reduction (%)",
            title="Anthropic prompt caching: 5-minute against 1-hour writes")

# %% [markdown]
# Once the gap between requests passes the TTL, most writes expire unread: the 5-minute cache's
# saving melts away and turns into a loss at half an hour between requests. 1-hour writes cost
# more each time but survive the gap.

# %% [markdown]
# ## Experiment 3: an agent's growing context
# **Question:** a coding agent re-sends its whole, growing context at every step, so about 90 % of
# its prompt blocks were sent before. The reuse is the same on every provider: does each one save
# the same?

# %%
agent = lessons.scenario_dict("coding-agent-tool-loops")
on = {"anthropic/claude-sonnet-4-5": "anthropic", "openai/gpt-4.1": "openai", "google/gemini-2.5-pro": "gemini"}
agents = lessons.compare({
    m: lessons.variant(agent, {"providers[0].name": m.split("/")[0], "providers[0].model": m.split("/")[1],
                               "pipeline[prompt_cache].rules": rules})
    for m, rules in on.items()}, seed, min(requests, 983))
agents[["baseline_cost_usd", "cost_usd", "reduction_pct"]]

# %%
plots.grouped_bars(agents, ["baseline_cost_usd", "cost_usd"], title="Coding agent: bill without and with prompt caching", ylabel="USD")

# %% [markdown]
# Same reuse, different discounts: cached input is 10 % of input on Claude and Gemini, 25 % on
# GPT-4.1, and Anthropic adds the write premium. The breakpoint sits at the end of each prompt
# (`breakpoint = "end"`), so each step's whole context is cached for the next.

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("06")
ex

# %%
slow, fast = "5m", "5m"      # your answers: "5m" or "1h" for each workload
ex.check(slow=slow, fast=fast)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# `slow="1h"` (a 10-minute gap outlives a 5-minute entry) and `fast="5m"` (an entry read every
# second never expires, and its writes are cheaper).
# </details>

# %% [markdown]
# ## What to remember
# - prompt caching rewards a stable prefix: put what never changes first
# - minimum lengths and write premiums decide whether it pays; rare traffic can lose money
# - for agents, cache the whole growing context (breakpoint at the end)
#
# **Next:** [07 · Routing and cascades: the cost-quality frontier](07_routing_and_cascades.ipynb)
