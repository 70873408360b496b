# %% [markdown]
# # 01 · Tokens and prices
#
# Providers bill **tokens**: pieces of text, about four characters of English each. Input
# (prompt) and output (answer) tokens have different prices; a prompt prefix the provider has
# cached is cheaper; work sent to a **batch API** costs half. costlab counts tokens with
# `tiktoken` (offline) and takes every price from `genai-prices`.
#
# **After this lesson you can**
# - count tokens and say why code and other languages cost more per character
# - read a price sheet: input, cached input, output, batch
# - price one call on several models by hand and with `lab.lessons.call_cost_usd`
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
# ## Experiment 1: what is a token?
# **Question:** the same idea in English, in German, in Chinese, as JSON and as Python. Which
# needs the most tokens per character?

# %%
texts = {
    "English": "Where is my order? I ordered three books last week and nothing has arrived yet.",
    "German": "Wo ist meine Bestellung? Ich habe letzte Woche drei Bücher bestellt und nichts ist angekommen.",
    "Chinese": "我的订单在哪里？我上周订了三本书，到现在还没有收到。",
    "JSON": '{"order_id": 48213, "items": [{"sku": "BK-1", "qty": 3}], "status": "shipped"}',
    "Python": "def order_status(order_id: int) -> str:\n    return db.orders[order_id].status",
}
counts = lessons.token_counts(texts)
counts

# %%
plots.bars(counts, "chars_per_token", title="Characters per token (o200k_base)", fmt="{:.2f}")

# %% [markdown]
# Fewer characters per token means more tokens — and more money — for the same text. Claude's
# and Gemini's tokenizers are not public: costlab estimates them with OpenAI's and says so.

# %%
from lab.tokens import tokenizer_note

print(tokenizer_note("claude-sonnet-4-5"))

# %% [markdown]
# ## Experiment 2: the price sheet
# **Question:** is an output token dearer than an input token? By how much? And what does a
# cached or a batched token cost compared with a normal one?

# %%
sheet = lessons.price_sheet()
sheet

# %%
plots.price_sheet(sheet)

# %% [markdown]
# Output costs 4 to 8 times the input price on every model here; cached input is 10–50 % of input; batch is
# half of both. Prices span two orders of magnitude between the smallest and largest models.

# %% [markdown]
# ## Experiment 3: one support call on each model
# **Question:** a call sends 1,800 input tokens — 1,536 of them a system prompt the provider has
# cached — and gets 200 tokens back. Which model is cheapest, and how much do caching and the
# batch API save on it?

# %%
costs = lessons.call_costs(1800, 200, cached_input_tokens=1536)
costs

# %%
plots.grouped_bars(costs, title="One call: list price, cached prefix, batch API", ylabel="USD per call", log=True)

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("01")
ex

# %%
model = "openai/gpt-4o-mini"   # your answer: provider/model from lessons.LESSON_MODELS
cost_usd = 0.0                 # your answer: what the call costs (USD)
ex.check(model=model, cost_usd=cost_usd)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# Price = 3,000 x input price + 500 x output price, per million tokens. `sheet` has the prices;
# `lessons.call_cost_usd(m, 3000, 500)` for each `m` in `lessons.LESSON_MODELS` confirms it:
# `google/gemini-2.5-flash-lite` at $0.0005.
# </details>

# %% [markdown]
# ## What to remember
# - cost = input tokens x input price + output tokens x output price (+ cached and cache-write tokens at their own prices)
# - output tokens cost several times more than input tokens: long answers are expensive
# - cached input and batch APIs are discounts you can plan for: lessons 05 and 06
#
# **Next:** [02 · Baselines and the ledger](02_baselines_and_the_ledger.ipynb)
