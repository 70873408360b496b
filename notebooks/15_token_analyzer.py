# %% [markdown]
# # 15 · Where a bill's tokens go: the token analyzer
#
# A bill is tokens times prices, but not every token is the one you think about. Each turn of a
# chat resends the system prompt, the tool definitions and the whole history before the user's
# new question, and the answer comes back at output prices. The **token analyzer** counts a
# call's tokens by part — system, history, user, tools, framing (the chat format's overhead),
# output — prices each with genai-prices, and ranks what to change first by estimated saving.
#
# **After this lesson you can**
# - say which part of your calls' tokens costs the most, and why it is not always the output
# - read the analyzer's ranked suggestions and what each assumes
# - apply a suggestion and measure its saving rather than trust the estimate
#
# *How to use it:* run the cells in order (Shift-Enter). Before each experiment, answer its
# question in your head; then run it and compare. The calls are built from deterministic texts,
# so every count is reproducible.

# %% tags=["parameters"]
# Parameters (papermill sets these when it runs the notebook headless; keep the "parameters" tag).
requests = 2000   # not used here: the calls below are a fixed sample (kept for the test harness)
seed = 0          # which sample of conversations

# %%
# %matplotlib inline
import pandas as pd

import lab.plots as plots
from lab import lessons
from lab.analysis.token_analyzer import analyze_calls
from lab.lessons import bills

# %% [markdown]
# ## The calls
# A support assistant: a dozen conversations of two to eight turns, a 1,500-token system prompt,
# two tool definitions, a few questions that many customers ask word for word. One call per turn.

# %%
calls = bills.support_calls(seed=seed)
first = calls[0]
len(calls), first["name"], len(first["messages"]), first["output"][:80]

# %% [markdown]
# ## Experiment 1: where the tokens go
# **Question:** output tokens cost four times input tokens on gpt-4o. Which part of these calls
# costs the most: the answers, the history, or the system prompt?

# %%
report = analyze_calls(calls, model="gpt-4o", calls_per_month=100_000)
report.by_part().round(2)

# %%
plots.tokens_by_part(report)

# %% [markdown]
# The system prompt is sent on every turn: its tokens add up faster than anything the user types,
# and history grows with every turn. Output is dear per token but short. Tokens and dollars
# rank the parts differently, which is why the chart shows both.

# %% [markdown]
# ## Experiment 2: what to change first
# **Question:** the analyzer ranks its suggestions by estimated saving. Which do you expect on top:
# caching, trimming history, capping answers or a cheaper model?

# %%
suggestions = report.suggestions_table()
suggestions[["action", "saving_pct", "calls_affected", "assumption"]].round(1)

# %%
plots.bars(suggestions.set_index("action"), "saving_pct", title="The analyzer's suggestions: estimated saving (%)",
           ylabel="saving (%)", fmt="{:.1f}")

# %%
report

# %% [markdown]
# Each suggestion says what it assumes: a cheaper model assumes its quality is good enough (run
# your own evals), the prompt cache assumes calls arrive within the cache's lifetime.

# %% [markdown]
# ## Experiment 3: apply them, and measure
# **Question:** an estimate is not a measurement. If you apply each change to the calls and count
# again, do the savings hold?

# %%
before = float(report.calls["cost_usd"].sum())
changes = {
    "cache repeated responses": bills.apply(calls, "cache repeated responses"),
    "trim history": bills.apply(calls, "trim history", history_tokens=1000),
    "cap max_tokens": bills.apply(calls, "cap max_tokens"),
    "route to gpt-4o-mini": bills.apply(calls, "route to a cheaper model", model="gpt-4o-mini"),
}
estimated = {s.action: s.saving_pct for s in report.suggestions}
rows = {}
for name, changed in changes.items():
    after = float(analyze_calls(changed, model="gpt-4o").calls["cost_usd"].sum())
    key = "route to a cheaper model" if name.startswith("route") else name
    rows[name] = {"estimated_saving_pct": estimated.get(key, 0.0), "measured_saving_pct": 100 * (1 - after / before)}
measured = pd.DataFrame(rows).T.round(1)
measured

# %%
plots.grouped_bars(measured, title="Each suggestion applied: estimated against measured saving (%)",
                   ylabel="saving (%)")

# %% [markdown]
# The counts agree where the change is mechanical (a model's price, a cap on answers). Trimming
# history saves a little more than estimated here because whole messages go, with their framing.
# The system-prompt cache is priced by the analyzer itself (cached reads at the provider's
# cached-input price, one write per prefix): measure it on real traffic with lesson 06's pipeline.

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Read the answer off Experiment 1's table and check it.

# %%
ex = lessons.exercise("15")
ex

# %%
part = "output"          # your answer: the part that costs the most
cost_share_pct = 30.5    # its share of the cost, in percent
ex.check(part=part, cost_share_pct=cost_share_pct)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# `report.by_part().sort_values("cost_usd")`: the system prompt, sent with every turn, takes
# about 44 % of the cost; output, dear per token, about 30 %.
# </details>

# %% [markdown]
# ## What to remember
# - a call's tokens are mostly what it resends: system prompt, tools, history
# - rank changes by saving, and read what each one assumes
# - apply a change and count again: a measurement, not an estimate
#
# **That was the last lesson.** The challenges in `challenges/` put it all together (`costlab challenges`).
