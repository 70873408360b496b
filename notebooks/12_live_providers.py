# %% [markdown]
# # 12 · Live providers: replay by default, live with keys and a budget
#
# Everything so far was simulated. The same requests can go to the real OpenAI, Anthropic and
# Gemini APIs through their official SDKs — inside a `lab.live.Session`: a **hard spend cap**
# (a call is refused unless its worst case fits), polite retries, and a **cassette** that records
# every call so it can be replayed offline. This notebook runs against costlab's local fake
# providers by default (no keys, no network); set `live = True` to spend real money.
#
# **After this lesson you can**
# - make calls through a spend-capped session and read their usage and cost
# - see provider prompt caching in real usage blocks
# - record a cassette and replay it with no network
#
# *How to use it:* run the cells in order (Shift-Enter). Before each experiment, answer its
# question in your head; then run it and compare. Every number comes from a simulation you can
# re-run with another `seed`.

# %% tags=["parameters"]
# Parameters (papermill sets these when it runs the notebook headless; keep the "parameters" tag).
requests = 2000   # requests per simulation: small, so every cell runs in a second or two
seed = 0          # the same seed gives the same numbers, bit for bit
live = False      # True: the real APIs, with keys from OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY
budget_usd = 0.05 # the hard cap for this whole notebook when live

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

import lab.plots as plots
from lab import lessons
from lab.live import BudgetExceeded, Session
from lab.providers.fake_server import FakeProviderServer

# %%
if live:
    missing = [v for v in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY") if not os.environ.get(v)]
    if missing or not (os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")):
        raise RuntimeError("live = True needs OPENAI_API_KEY, ANTHROPIC_API_KEY and GEMINI_API_KEY set")
    server, base_urls = None, None
else:
    server = FakeProviderServer(port=0).start()      # 127.0.0.1 only; answers like the real APIs
    base_urls = server.base_urls()
cassette = Path(tempfile.mkdtemp(prefix="costlab-cassette-")) / "calls.jsonl"
session = Session(budget_usd=budget_usd, cassette=cassette, base_url=base_urls)
print("live" if live else f"fake providers at {server.url}", "| cassette:", cassette)

# %% [markdown]
# ## Experiment 1: one question, three providers
# **Question:** the same short question to gpt-4o-mini, claude-haiku-4-5 and gemini-2.5-flash.
# Which costs most? (Lesson 01's price sheet has the answer.)

# %%
question = "In two sentences: what is a token, for a language model?"
targets = [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"), ("google", "gemini-2.5-flash")]
first = [session.call(p, m, prompt=question, max_tokens=150) for p, m in targets]
calls = lessons.calls_table(first)
calls

# %%
plots.bars(calls.set_index("model"), "cost_usd", title="One call each", fmt="${:.6f}")

# %% [markdown]
# ## Experiment 2: a long prompt, twice
# **Question:** a 2,000-token system prompt sent twice in a row. How many input tokens come from
# cache the second time on OpenAI (automatic)? On Anthropic with a 5-minute breakpoint — and what
# does the *first* call cost there?

# %%
system = lessons.long_system_prompt(2000)
twice = []
for provider, model, cache in [("openai", "gpt-4o-mini", None), ("anthropic", "claude-sonnet-4-5", "5m")]:
    for _ in range(2):
        twice.append(session.call(provider, model, prompt="Can I return a damaged book?", system=system,
                                  max_tokens=100, cache=cache))
cached = lessons.calls_table(twice)
cached[["model", "input_tokens", "cached_input_tokens", "cache_write_tokens", "cost_usd"]]

# %%
cached.index = [f"{m} #{k % 2 + 1}" for k, m in enumerate(cached["model"])]
plots.grouped_bars(cached, ["input_tokens", "cached_input_tokens", "cache_write_tokens"],
                   title="Usage of the same prompt, first and second call", ylabel="tokens")

# %% [markdown]
# OpenAI caches on its own and bills no write. Anthropic bills the first call's prefix as a
# *write* (1.25x), then reads it at 0.1x: the second call is far cheaper than the first.

# %% [markdown]
# ## Experiment 3: the spend cap
# **Question:** a session has $0.01 left. A call to Sonnet with a short prompt may produce up to
# `max_tokens` tokens. Up to which `max_tokens` is it sent, and from which is it refused before
# anything is spent?

# %%
import pandas as pd

caps = [100, 250, 500, 1000, 2000, 4000]
worst = pd.DataFrame({"worst_case_usd": [lessons.worst_case_usd("anthropic/claude-sonnet-4-5", question, n) for n in caps]},
                     index=pd.Index(caps, name="max_tokens"))
plots.sweep(worst, "worst_case_usd", hline=0.01, hline_label="$0.01 left", title="What the session reserves per call")

# %%
small = Session(budget_usd=0.01, base_url=base_urls)
try:
    small.call("anthropic", "claude-sonnet-4-5", prompt=question, max_tokens=4000)
except BudgetExceeded as exc:
    print("refused:", exc)
print("spent:", small.spent_usd)

# %% [markdown]
# ## Experiment 4: replay
# **Question:** can we get the same answers, tokens and costs with no network and no key?

# %%
replay = Session(budget_usd=budget_usd, cassette=cassette, mode="replay")
again = [replay.call(p, m, prompt=question, max_tokens=150) for p, m in targets]
side_by_side = calls.set_index("model")[["cost_usd"]].rename(columns={"cost_usd": "recorded"})
side_by_side["replayed"] = [r.cost_usd for r in again]
side_by_side

# %%
plots.grouped_bars(side_by_side, title="Recorded and replayed cost per call", ylabel="USD")

# %% [markdown]
# A cassette is a JSONL file: request, response, usage, cost, latency (never a key). Commit one
# with a lesson or a test and it runs anywhere. A scenario provider with `kind = "replay"` plays a
# whole simulation from one (see the README, "Going live").

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("12")
ex

# %%
print(ex.measure(max_tokens=1000))   # explore: the worst case of one call
max_tokens = 1000                     # your answer
ex.check(max_tokens=max_tokens)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# The worst case is the counted prompt (x 1.3 for Claude's estimated tokenizer) at $3/M plus
# `max_tokens` at $15/M; solve for $0.01: about 650 tokens (`ex.largest`); 590 passes.
# </details>

# %%
if server is not None:
    server.stop()
print(f"this notebook spent ${session.spent_usd:.6f} of ${budget_usd}" + ("" if live else " (fake providers: no real money)"))

# %% [markdown]
# ## What to remember
# - a spend cap must hold before a call is sent: reserve the worst case
# - usage blocks differ by provider; genai-prices maps them to one bill
# - record once, replay forever: cassettes make live lessons reproducible
#
# **Next:** [13 · Scale: parameter sweeps](13_scale_sweeps.ipynb)
