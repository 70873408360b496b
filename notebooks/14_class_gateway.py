# %% [markdown]
# # 14 · The class gateway: real SDKs, one key, a cap per learner
#
# Lesson 12 needed your own keys. In a class, the instructor runs **costlab's gateway** instead:
# it holds the class's OpenAI, Anthropic and Gemini keys, gives each learner a token and a daily
# cap, and puts a costlab pipeline (a response cache, dedup, budgets...) in front of the real
# APIs. Your code stays the official SDK's code: only `base_url` and the key change. This lesson
# starts a gateway in front of costlab's fake providers (no keys, no network, no money).
#
# **After this lesson you can**
# - call through the class gateway with each official SDK and read its cost headers
# - see your cache hits and what is left of your budget
# - compare a twin's predicted saving with the saving the gateway really measured
#
# *How to use it:* run the cells in order (Shift-Enter). Before each experiment, answer its
# question in your head; then run it and compare.

# %% tags=["parameters"]
# Parameters (papermill sets these when it runs the notebook headless; keep the "parameters" tag).
requests = 2000   # the twin experiment below sends max(200, requests // 10) calls per run
seed = 0          # the workload's questions are drawn with this seed
daily_usd = 0.002 # your cap in this lesson's gateway

# %%
# %matplotlib inline
import os
import tempfile
from pathlib import Path

import anthropic
import httpx
import numpy as np
import openai
import pandas as pd
from google import genai
from google.genai import types

import lab.plots as plots
from lab import lessons
from lab.gateway import BackgroundGateway, config_from_dict
from lab.providers.fake_server import FakeProviderServer
from lab.twin import calibrate, recommend, what_if

# %%
upstream = FakeProviderServer(port=0).start()        # stands in for the real APIs, on 127.0.0.1
os.environ["CLASS_KEY"] = "sk-the-instructors-key"   # the gateway reads the class key from a variable
folder = Path(tempfile.mkdtemp(prefix="costlab-gateway-"))


def start_gateway(pipeline, name):
    """A gateway on 127.0.0.1 in front of the fake providers, with its own ledger file."""
    config = config_from_dict({
        "gateway": {"store": str(folder / f"{name}.db")},
        "upstreams": [{"provider": p, "base_url": upstream.base_url(p), "key_env": "CLASS_KEY"}
                      for p in ("openai", "anthropic", "google")],
        "pipeline": pipeline})
    background = BackgroundGateway(config).start()
    return background.url, background.gateway


url, gateway = start_gateway([{"stage": "cache", "ttl_s": 600}], "class")
token = gateway.store.add_learner("you", daily_usd=daily_usd)   # what `costlab gateway learner add you` prints
print("gateway at", url, "| your token:", token[:9] + "…")

# %% [markdown]
# ## Experiment 1: your SDK code, unchanged
# **Question:** the same question through OpenAI's, Anthropic's and Google's SDKs. Which answer
# costs most — and where do you read the cost, if the SDK has no field for it?

# %%
question = lessons.LIVE_PROMPT
oa = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1")
an = anthropic.Anthropic(api_key=token, base_url=f"{url}/anthropic")
gg = genai.Client(api_key=token, http_options=types.HttpOptions(base_url=f"{url}/google"))


def ask_all(q):
    rows = []
    r = oa.chat.completions.with_raw_response.create(model="gpt-4o-mini", max_tokens=150,
                                                     messages=[{"role": "user", "content": q}])
    rows.append(("gpt-4o-mini", r.headers))
    r = an.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=150,
                                             messages=[{"role": "user", "content": q}])
    rows.append(("claude-haiku-4-5", r.headers))
    gg.models.generate_content(model="gemini-2.5-flash", contents=q,
                               config=types.GenerateContentConfig(max_output_tokens=150))
    last = gateway.store.ledger("you").iloc[-1]      # google-genai hides headers: read your ledger row
    rows.append(("gemini-2.5-flash", {"x-costlab-cost-usd": last.cost_usd, "x-costlab-cache":
                                      "hit" if last.outcome == "cache_hit" else "miss"}))
    return pd.DataFrame({"cost_usd": [float(h["x-costlab-cost-usd"]) for _, h in rows],
                         "cache": [h["x-costlab-cache"] for _, h in rows]}, index=[m for m, _ in rows])


first = ask_all(question)
first

# %%
plots.bars(first, "cost_usd", title="One call each, through the gateway", fmt="${:.6f}")

# %% [markdown]
# Every answer carries `x-costlab-cost-usd` (genai-prices on the provider's own usage block),
# `x-costlab-cache` and `x-costlab-overhead-ms` (the time the gateway added).
#
# ## Experiment 2: ask again
# **Question:** the gateway's pipeline has a response cache (`stage = "cache"`, 10 minutes). What
# does the same question cost the second time, and does it reach the provider?

# %%
calls_before = upstream.calls_total()
second = ask_all(question)
print("provider calls for the second round:", upstream.calls_total() - calls_before)
pd.concat({"first": first.cost_usd, "second": second.cost_usd}, axis=1)

# %%
plots.grouped_bars(pd.concat({"first": first.cost_usd, "second": second.cost_usd}, axis=1),
                   title="The same question twice", ylabel="USD")

# %% [markdown]
# ## Experiment 3: your budget
# **Question:** your cap is `daily_usd`. Each new call holds its *worst case* (prompt + max_tokens)
# until the bill comes back. How many different questions with `max_tokens=500` get through
# before the gateway refuses — and what does the refusal look like to the SDK?

# %%
spent, refusal = [], None
for k in range(40):
    try:
        oa.chat.completions.create(model="gpt-4o-mini", max_tokens=500,
                                   messages=[{"role": "user", "content": f"Question {k}: {question}"}])
    except openai.RateLimitError as exc:
        refusal = exc
        break
    spent.append(httpx.get(f"{url}/costlab/usage", headers={"authorization": f"Bearer {token}"}).json()
                 ["spent_today_usd"])
print(f"{len(spent)} calls, then: {refusal}")

# %%
plots.sweep(pd.DataFrame({"spent_usd": spent}, index=pd.Index(range(1, len(spent) + 1), name="call")),
            "spent_usd", hline=daily_usd, hline_label="your daily cap", title="Your spend today")

# %% [markdown]
# The refusal is OpenAI's own 429 error shape, so the SDK raises `RateLimitError`; it names the
# limit and when it resets, and tells the SDK not to retry.
#
# ## Experiment 4: did the twin predict the saving?
# **Question:** record a workload (repeated questions, a shared system prompt) with no pipeline,
# build a twin from the gateway's ledger, let `recommend` pick a pipeline, then serve that
# pipeline. Is the realized saving close to the predicted one?

# %%
rng = np.random.default_rng(seed)
n = max(200, requests // 10)
system = lessons.long_system_prompt(1200)
weights = 1.0 / np.arange(1, 41)
picks = rng.choice(40, size=n, p=weights / weights.sum())


def replay(url_, token_):
    client = openai.OpenAI(api_key=token_, base_url=f"{url_}/openai/v1")
    for q in picks:
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=80, messages=[
            {"role": "system", "content": system}, {"role": "user", "content": f"Question {q} about my order"}])


plain_url, plain = start_gateway([], "recorded")
replay(plain_url, plain.store.add_learner("class"))
recorded = plain.store.ledger()
twin = calibrate(recorded, sla_p95_ms=5000)
policies = {"cache": [{"stage": "cache", "ttl_s": 3600}],
            "cache + dedup": [{"stage": "cache", "ttl_s": 3600}, {"stage": "dedup"}]}
ranked = recommend(what_if(twin, policies, seeds=3, requests=n)).table
ranked[["rank", "policy", "reduction_pct", "feasible"]]

# %%
best = ranked.iloc[0].policy
upstream.reset()                                  # the provider's prompt cache starts cold again
served_url, served_gw = start_gateway(policies[best], "served")
replay(served_url, served_gw.store.add_learner("class"))
realized_pct = 100 * (1 - served_gw.store.ledger().cost_usd.sum() / recorded.cost_usd.sum())
compare = pd.DataFrame({"saving_pct": [float(ranked.iloc[0].reduction_pct), realized_pct]},
                       index=["twin's prediction", "realized"])
compare

# %%
plots.bars(compare, "saving_pct", title=f"Saving of '{best}': predicted vs realized", fmt="{:.1f} %")

# %% [markdown]
# A twin is only as good as what it models. Its provider answers in about as long as
# `lab/data/models.toml` says a real one does, while the fake provider here answers in a
# millisecond, so the twin expects identical requests to overlap in flight and merge (its `dedup`
# share), which on this fast upstream they never do: in the gateway's ledger every saving is a
# cache hit. Compare the twin's `cache` row with the realized saving too, not only the winner's.
#
# ## Try it
# The task is shown by the next cell. Change the value below, run the check, repeat until it passes.

# %%
ex = lessons.exercise("14")
ex

# %%
print(ex.measure(max_tokens=500, calls=2))   # explore: what two simultaneous calls hold
calls = 2                                     # your answer
ex.check(calls=calls)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# One call holds the prompt's tokens at $0.15/M plus 500 output tokens at $0.60/M, about $0.00031;
# $0.001 / $0.00031 = 3.2, so 3 calls are admitted at once and the fourth is refused.
# </details>

# %%
upstream.stop()

# %% [markdown]
# ## What to remember
# - one gateway, one key per provider: learners get tokens and caps, never the keys
# - a cap holds because each call reserves its worst case first and settles on the bill
# - the gateway's ledger has the simulator's columns: twin it, pick a pipeline, serve it, measure
#
# In a real class: `costlab gateway serve --config gateway.toml` (README, "The class gateway").
#
# **Next:** [15 · Where a bill's tokens go: the token analyzer](15_token_analyzer.ipynb)
