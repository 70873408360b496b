"""Write the lesson notebooks 00-13 from this file: no outputs, stable cell ids, a `parameters` cell each.

    python notebooks/build.py           # (re)write every notebook
    python notebooks/build.py --check   # exit 1 if a committed notebook differs from what this writes

The lessons live here as text so they can be reviewed as a diff, and so every notebook has the
same shape: learning goals, a `parameters` cell (papermill: `requests`, `seed`, ...), then
experiments that each ask a question before running and draw a plot after, a "try it" with a
self-check from `lab.lessons`, and what to remember. The work is done by library code
(`lab.lessons`, `lab.plots`, `lab.analysis`, ...): a cell calls one or two functions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from lab.lessons import LESSONS  # noqa: E402

SETUP = """
%matplotlib inline
import lab
import lab.plots as plots
from lab import lessons
"""


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str, tags=()):
    cell = nbformat.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(extra: str = "", requests: int = 2000) -> object:
    return code(f"""
# Parameters (papermill sets these when it runs the notebook headless; keep the "parameters" tag).
requests = {requests}   # requests per simulation: small, so every cell runs in a second or two
seed = 0          # the same seed gives the same numbers, bit for bit
{extra}""", tags=["parameters"])


def title_of(number: str) -> str:
    return next(t for n, _, t in LESSONS if n == number)


def file_of(number: str) -> str:
    return next(f for n, f, _ in LESSONS if n == number)


def header(number: str, intro: str, goals: list[str]) -> list:
    goal_lines = "\n".join(f"- {g}" for g in goals)
    return [md(f"""
# {number} · {title_of(number)}

{intro.strip()}

**After this lesson you can**
{goal_lines}

*How to use it:* run the cells in order (Shift-Enter). Before each experiment, answer its
question in your head; then run it and compare. Every number comes from a simulation you can
re-run with another `seed`.
""")]


def try_it(number: str, cells: list[str], solution: str) -> list:
    out = [md("""
## Try it
The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.
"""), code(f'ex = lessons.exercise("{number}")\nex')]
    out += [code(c) for c in cells]
    out.append(md(f"""
<details><summary>A solution (open after trying)</summary>

{solution.strip()}
</details>
"""))
    return out


def footer(number: str, learned: list[str]) -> list:
    lines = "\n".join(f"- {item}" for item in learned)
    k = [n for n, _, _ in LESSONS].index(number)
    nxt = (f"**Next:** [{LESSONS[k + 1][0]} · {LESSONS[k + 1][2]}]({LESSONS[k + 1][1]})"
           if k + 1 < len(LESSONS) else "**That was the last lesson.** The challenges in `challenges/` "
           "put it all together (`costlab challenges`).")
    return [md(f"""
## What to remember
{lines}

{nxt}
""")]


# =========================================================================== 00


def nb00() -> list:
    lessons_list = "\n".join(f"| {n} | [{t}]({f}) |" for n, f, t in LESSONS)
    return [
        *header("00", """
costlab is a simulator for the cost of AI APIs. It plays a stream of requests — arrivals,
prompts, token counts — through a pipeline of optimizations (caches, deduplication, batching,
routing, ...) in front of mocked OpenAI, Anthropic and Gemini models, and writes down every
request's tokens, cost, latency and outcome. Every run is compared with its **baseline**: the
very same requests sent straight to the model, priced at list price.
""", ["run a scenario file and read its bill: baseline against optimized cost",
      "say which optimization saved what, and what it did to latency",
      "find your way around a ledger: one row per request"]),
        params(),
        code(SETUP),
        md("""
## The scenario
A scenario is a TOML file: traffic, providers, the optimization pipeline, the SLA. This one is
a support chatbot: customers ask Zipf-popular questions behind a long system prompt. Read the
comments at its top: they tell the story.
"""),
        code('path = lessons.scenario_path("support-chatbot")\nprint(path.read_text())'),
        md("""
## Experiment 1: the bill
**Question:** the pipeline has a response cache, in-flight deduplication and provider prompt
caching. What share of the bill do you expect it to save: 10 %, 30 % or 60 %?
"""),
        code("""
scenario = lab.load_scenario(path)
result = lab.simulate(scenario, seed=seed, requests=requests)
result
"""),
        code("plots.savings_waterfall(result)"),
        md("""
Read it left to right: the bill without optimization, each stage's saving in pipeline order,
and what is left. The baseline saw *the same* requests, so the difference is the pipeline's
doing, not luck of the draw.
"""),
        md("""
## Experiment 2: did it get slower?
**Question:** a cache hit answers in 2 ms instead of seconds. Will the p95 latency (the time
95 % of requests beat) fall a lot, a little, or not at all?
"""),
        code("plots.latency_cdf(result)"),
        md("""
The curve jumps at the left: those are cache hits. But p95 is set by the slowest 5 %, and those
are calls that still went to the model — so p95 moves much less than the median.
"""),
        md("""
## Experiment 3: the ledger
**Question:** every request ends one way: `ok` (a model answered), `cache_hit`,
`deduplicated` (merged into an identical request in flight), `batched`, `rejected` or `error`.
Which do you expect most of here?
"""),
        code("""
ledger = result.ledger
ledger.head()
"""),
        code("""
outcomes = ledger["outcome"].value_counts().to_frame("requests")
lessons.plot_bars(outcomes, "requests", title="How requests ended", fmt="{:,.0f}")
"""),
        *try_it("00", ["""
s = result.summary()          # the numbers behind the table above
cost_per_1k_usd = 0.0         # your answer: what 1,000 requests cost after optimization
top_stage = "dedup"           # your answer: the stage that saved the most
ex.check(result, cost_per_1k_usd=cost_per_1k_usd, top_stage=top_stage)
"""], """
```python
cost_per_1k_usd = 1000 * s["cost_usd"] / s["requests"]
top_stage = max(s["by_stage"], key=lambda k: s["by_stage"][k]["cost_saved_usd"])
```
"""),
        md("""
## Play
A dashboard re-runs a small simulation whenever you move a control (in a live notebook; a
headless run just draws it once). Try a tiny cache, then a short TTL: watch the cost, the
latency curve and your trail of runs.
"""),
        code("""
from lab.widgets import Dashboard

Dashboard("support-chatbot", knobs=["cache capacity", "cache TTL (s)", "traffic rate (req/s)"],
          requests=requests, seed=seed)
"""),
        md(f"""
## The lessons
| # | lesson |
|---|---|
{lessons_list}

Scenario fields and every stage's options: `scenarios/README.md`. The command line does the
same things: `costlab run scenarios/support-chatbot.toml --json out.json`.
"""),
        *footer("00", ["the baseline is the same requests with no pipeline, at list price: a reduction is "
                       "always against it",
                       "`result.summary()` is the bill; `result.ledger` is one row per request",
                       "savings and latency are separate questions: check both, and the SLA"]),
    ]


# =========================================================================== 01


def nb01() -> list:
    return [
        *header("01", """
Providers bill **tokens**: pieces of text, about four characters of English each. Input
(prompt) and output (answer) tokens have different prices; a prompt prefix the provider has
cached is cheaper; work sent to a **batch API** costs half. costlab counts tokens with
`tiktoken` (offline) and takes every price from `genai-prices`.
""", ["count tokens and say why code and other languages cost more per character",
      "read a price sheet: input, cached input, output, batch",
      "price one call on several models by hand and with `lab.lessons.call_cost_usd`"]),
        params(),
        code(SETUP),
        md("""
## Experiment 1: what is a token?
**Question:** the same idea in English, in German, in Chinese, as JSON and as Python. Which
needs the most tokens per character?
"""),
        code("""
texts = {
    "English": "Where is my order? I ordered three books last week and nothing has arrived yet.",
    "German": "Wo ist meine Bestellung? Ich habe letzte Woche drei Bücher bestellt und nichts ist angekommen.",
    "Chinese": "我的订单在哪里？我上周订了三本书，到现在还没有收到。",
    "JSON": '{"order_id": 48213, "items": [{"sku": "BK-1", "qty": 3}], "status": "shipped"}',
    "Python": "def order_status(order_id: int) -> str:\\n    return db.orders[order_id].status",
}
counts = lessons.token_counts(texts)
counts
"""),
        code('lessons.plot_bars(counts, "chars_per_token", title="Characters per token (o200k_base)", fmt="{:.2f}")'),
        md("""
Fewer characters per token means more tokens — and more money — for the same text. Claude's
and Gemini's tokenizers are not public: costlab estimates them with OpenAI's and says so.
"""),
        code('from lab.tokens import tokenizer_note\nprint(tokenizer_note("claude-sonnet-4-5"))'),
        md("""
## Experiment 2: the price sheet
**Question:** is an output token dearer than an input token? By how much? And what does a
cached or a batched token cost compared with a normal one?
"""),
        code("sheet = lessons.price_sheet()\nsheet"),
        code("lessons.plot_price_sheet(sheet)"),
        md("""
Output costs 4 to 8 times the input price on every model here; cached input is 10–50 % of input; batch is
half of both. Prices span two orders of magnitude between the smallest and largest models.
"""),
        md("""
## Experiment 3: one support call on each model
**Question:** a call sends 1,800 input tokens — 1,536 of them a system prompt the provider has
cached — and gets 200 tokens back. Which model is cheapest, and how much do caching and the
batch API save on it?
"""),
        code("costs = lessons.call_costs(1800, 200, cached_input_tokens=1536)\ncosts"),
        code('lessons.plot_grouped(costs, title="One call: list price, cached prefix, batch API", ylabel="USD per call", log=True)'),
        *try_it("01", ["""
model = "openai/gpt-4o-mini"   # your answer: provider/model from lessons.LESSON_MODELS
cost_usd = 0.0                 # your answer: what the call costs (USD)
ex.check(model=model, cost_usd=cost_usd)
"""], """
Price = 3,000 x input price + 500 x output price, per million tokens. `sheet` has the prices;
`lessons.call_cost_usd(m, 3000, 500)` for each `m` in `lessons.LESSON_MODELS` confirms it:
`google/gemini-2.5-flash-lite` at $0.0005.
"""),
        *footer("01", ["cost = input tokens x input price + output tokens x output price (+ cached and "
                       "cache-write tokens at their own prices)",
                       "output tokens cost several times more than input tokens: long answers are expensive",
                       "cached input and batch APIs are discounts you can plan for: lessons 05 and 06"]),
    ]


# =========================================================================== 02


def nb02() -> list:
    return [
        *header("02", """
Every costlab run comes with its **baseline**: the same request stream sent straight to the
first provider, each request billed once at list price. The **ledger** has one row per request
with what it cost, what it would have cost in the baseline, its latency and its outcome. One
simulation is one sample: another seed is other traffic from the same distributions.
""", ["explain exactly what the baseline is and why reductions are measured against it",
      "use several seeds and a confidence interval instead of one number",
      "slice the ledger with pandas: by outcome, tenant, time"]),
        params(),
        code(SETUP),
        code('scenario = lab.load_scenario(lessons.scenario_path("support-chatbot"))\n'
             'result = lab.simulate(scenario, seed=seed, requests=requests)\nresult.summary()["baseline"]'),
        md("""
## Experiment 1: cost over time, with and without
**Question:** the cache starts empty. Will the optimized cost per minute be flat, or will it
fall as the run goes on?
"""),
        code('result.ledger[["request_id", "t_arrival_s", "tenant", "outcome", "cost_usd", "baseline_cost_usd", "latency_ms"]].head(8)'),
        code("plots.cost_over_time(result)"),
        md("""
The baseline's cost per minute only follows traffic. The optimized cost starts close to it and
falls while the cache warms up: a short run *understates* what a cache saves in steady state.
"""),
        md("""
## Experiment 2: one seed is one sample
**Question:** run the same scenario on four seeds. Will the reduction differ by less than one
point, a few points, or more?
"""),
        code("""
from lab.analysis.baselines import run_seeds

runs = run_seeds(scenario, seeds=range(seed, seed + 4), requests=requests, progress=False)
runs.comparison().table()[["label", "baseline", "candidate", "change_pct", "ci_low", "ci_high"]]
"""),
        code("lessons.plot_seed_costs(runs)"),
        md("""
Seeds are paired: each seed's optimized run and its baseline saw the same requests, so the
interval on the *reduction* is much tighter than the spread of the bills themselves.
"""),
        md("""
## Experiment 3: who costs what?
**Question:** the chatbot serves two tenants, retail (3 parts of the traffic) and travel (1
part). Does retail save as much as travel, in percent?
"""),
        code('plots.attribution_bars(result, by="tenant")'),
        *try_it("02", ["""
ledger = result.ledger
share = 0.3    # your answer: the share (0..1) of requests answered with no provider call
ex.check(result, share=share)
"""], """
```python
share = ledger["outcome"].isin(["cache_hit", "deduplicated"]).mean()
```
"""),
        *footer("02", ["a reduction is paired with its baseline on the same requests",
                       "report an interval over seeds, not one run's number",
                       "the ledger answers the follow-up questions: by tenant, by time, by outcome"]),
    ]


# =========================================================================== 03


def nb03() -> list:
    return [
        *header("03", """
A response cache stores answers by prompt and answers repeats without calling the model. How
much it saves depends on how repetitive traffic is (popularity is often Zipf: a few prompts are
asked very often), how much it may hold (**capacity** and **eviction policy**), how long an
answer stays right (**TTL**, invalidation) and what happens when a hot entry expires
(a **stampede**).
""", ["predict a hit rate from capacity with Che's approximation",
      "choose between LRU, LFU and FIFO eviction",
      "trade freshness against cost with TTLs and invalidation",
      "prevent stampedes with request coalescing and early refresh"]),
        params(),
        code(SETUP),
        md("""
## Experiment 1: capacity
**Question:** 10,000 distinct questions with Zipf(0.9) popularity. If 100 cache entries give
some hit rate, do 200 entries give twice as much?
"""),
        code("""
capacities = [25, 50, 100, 200, 400, 800, 1600, 3200]
def with_capacity(c):
    return lessons.variant("support-chatbot", pipeline=[{"stage": "cache", "capacity": c, "shared": True}])

sweep = lessons.sweep_values(with_capacity, capacities, seed, requests, label="capacity (entries)")
theory = [lessons.che_lru_hit_ratio(10_000, 0.9, c) for c in capacities]
sweep[["cache_hit_rate", "reduction_pct"]]
"""),
        code("""
lessons.plot_sweep(sweep, "cache_hit_rate", logx=True, title="Hit rate against capacity",
                   reference={"Che's approximation (steady state)": theory})
"""),
        md("""
Each doubling adds about the same number of points: hits grow with the *logarithm* of capacity
under Zipf popularity. The simulation sits below the theory because the cache starts cold (the
theory is the steady state of an endless run), and it flattens once every question asked so far
fits: a short run cannot fill a big cache.
"""),
        md("""
## Experiment 2: eviction policy
**Question:** at 200 entries, which keeps more hits on Zipf traffic: LRU (evict the least
recently used), LFU (least frequently used) or FIFO (oldest first)?
"""),
        code("""
policies = {p: lessons.variant("support-chatbot", pipeline=[{"stage": "cache", "capacity": 200, "policy": p, "shared": True}])
            for p in ("lru", "lfu", "fifo")}
by_policy = lessons.compare(policies, seed, requests)
lessons.plot_bars(by_policy, "cache_hit_rate", title="Hit rate by eviction policy (200 entries)", fmt="{:.3f}")
"""),
        md("""
With stable popularity LFU keeps the truly popular prompts; LRU is close and adapts when
popularity shifts; FIFO ignores use altogether.
"""),
        md("""
## Experiment 3: freshness
**Question:** in the product catalog, prices change three times a second and a cached answer
about a changed product is wrong. What does a long TTL buy, what does a short one cost, and
what does invalidating on update change?
"""),
        code("""
catalog = lessons.scenario_dict("catalog-price-updates")
fresh = {
    "TTL 900 s, no invalidation": lessons.variant(catalog, {"pipeline[cache].invalidate_on_update": False}),
    "TTL 30 s, no invalidation": lessons.variant(catalog, {"pipeline[cache].invalidate_on_update": False,
                                                          "pipeline[cache].ttl_s": 30}),
    "TTL 900 s + invalidation": lessons.variant(catalog),
}
by_freshness = lessons.compare(fresh, seed, requests)
by_freshness[["cost_usd", "cache_hit_rate", "quality_mean"]]
"""),
        code('lessons.plot_scatter(by_freshness, "cost_usd", "quality_mean", title="Cost against correctness")'),
        md("""
Without invalidation a TTL is a dial between cost and wrong answers: a shorter TTL is dearer
and still serves stale answers. Invalidation (a change event removes the entry) keeps quality at
1.0 and costs less than the short TTL, because it refetches only what actually changed: when you
can get change events, use them.
"""),
        md("""
## Experiment 4: the stampede
**Question:** one hot prompt, 100 requests a second, cached for 5 s, and a fetch takes about
5 s. When the entry expires, how many requests call the model before the new answer is stored?
(This experiment plays `3 x requests` requests, so several expiries fit in.)
"""),
        code("""
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
"""),
        code('lessons.plot_calls_over_time(stampede_runs, bucket_s=1.0, title="Provider calls: each spike is an expiry")'),
        md("""
A plain cache sends every request that arrives during the refill to the model: the spikes.
Coalescing makes them wait for the one fetch in flight — almost no calls, but they still wait;
early refresh (XFetch) refetches a hot entry shortly *before* it expires, so almost nobody waits
after the cold start (it pays for a few extra refreshes).
"""),
        *try_it("03", ["""
print(ex.measure(capacity=300))     # explore: hit rate at 300 entries
capacity = 300                      # your answer
ex.check(capacity=capacity)
"""], """
Hit rate grows with capacity, so search: measure 300, 600, 1000 ... then narrow down. About
680-700 entries reach 40 % on that run; 700 passes.
"""),
        md("""
## Play
Capacity, TTL and policy on the support chatbot. Which knob moves cost most per step?
"""),
        code("""
from lab.widgets import Dashboard

Dashboard("support-chatbot", knobs=["cache capacity", "cache TTL (s)", "cache policy"], requests=requests, seed=seed)
"""),
        *footer("03", ["under Zipf popularity hit rate grows with the log of capacity: the first hundreds of "
                       "entries matter most",
                       "a TTL trades freshness for cost; invalidation on change gets both",
                       "hot keys need stampede protection: coalesce misses, refresh early"]),
    ]


# =========================================================================== 04


def nb04() -> list:
    return [
        *header("04", """
A cache only helps once an answer is stored. But when a burst of identical requests arrives
*while the first answer is still being generated*, a cache misses them all. **In-flight
deduplication** (single-flight) lets the first request lead and makes the identical ones wait
for its answer: they pay nothing and get it the moment it arrives.
""", ["explain when identical requests overlap in flight: bursts and slow answers",
      "measure what dedup saves, and what a short reuse window adds",
      "decide whether tenants may share answers"]),
        params(requests=10000),
        code(SETUP),
        md("""
## Experiment 1: a burst
**Question:** a social feed gets bursts of 60 requests a second for a few hundred trending
posts. With no cache at all, what share of requests could simply wait for an identical one
already in flight?
"""),
        code("""
feed = lessons.scenario_dict("bursty-social-feed")
burst = {
    "no optimization": lessons.variant(feed, pipeline=[]),
    "dedup": lessons.variant(feed, pipeline=[{"stage": "dedup", "shared": True}]),
    "dedup + 30 s cache": lessons.variant(feed),
}
burst_runs = lessons.run_variants(burst, seed, requests)
lessons.table(burst_runs)[["provider_calls", "reduction_pct", "p95_ms"]]
"""),
        code("""
optimized = {k: r for k, r in burst_runs.items() if k != "no optimization"}
lessons.plot_calls_over_time(optimized, bucket_s=10.0, title="Provider calls during bursts")
"""),
        md("""
Without dedup every burst hits the model at full rate and the 64 slots queue up (look at the
p95 without optimization). Dedup alone removes a large part of the calls; a short cache catches the
repeats that come after the answer.
"""),
        md("""
## Experiment 2: slow answers overlap more
**Question:** if the model generated tokens faster, would dedup merge more requests or fewer?
"""),
        code("""
def with_speed(tokens_per_s):
    return lessons.variant(feed, {"providers[0].ttft_ms": {"dist": "constant", "value": 400},
                                  "providers[0].tokens_per_s": tokens_per_s},
                           pipeline=[{"stage": "dedup", "shared": True}])

speed = lessons.sweep_values(with_speed, [20, 50, 100, 300, 1000], seed, requests, label="output tokens per second")
lessons.plot_sweep(speed, "reduction_pct", logx=True, title="Dedup saving against generation speed")
"""),
        md("""
The longer an answer takes, the more identical requests arrive during it: dedup pays most on
slow models, long answers and bursty traffic.
"""),
        md("""
## Experiment 3: may tenants share?
**Question:** web and mobile users ask about the same posts. Merging across tenants saves
more; what does it risk?
"""),
        code("""
sharing = {
    "per tenant": lessons.variant(feed, pipeline=[{"stage": "dedup", "shared": False}]),
    "shared": lessons.variant(feed, pipeline=[{"stage": "dedup", "shared": True}]),
}
lessons.plot_bars(lessons.compare(sharing, seed, requests), "reduction_pct", title="Dedup saving", fmt="{:.1f} %")
"""),
        md("""
Sharing is only safe when an answer contains nothing tenant-specific. Keys include the tenant by
default, so one customer's answer never reaches another; turning it off is a product decision.
"""),
        *try_it("04", ["""
print(ex.measure(window_s=2))     # explore
window_s = 2                      # your answer, in seconds
ex.check(window_s=window_s)
"""], """
Measure a few windows (2, 5, 10, 20 s) and narrow down: about 7-8 s reaches 70 %; 8 passes.
"""),
        *footer("04", ["dedup catches what a cache cannot: identical requests while the first is in flight",
                       "it pays most in bursts and on slow answers",
                       "merging across tenants is a privacy decision, not just a cost one"]),
    ]


# =========================================================================== 05


def nb05() -> list:
    return [
        *header("05", """
Two different ideas share the name. **Request batching** sends several requests that share a
system prompt as one call: the prompt is paid once per batch, but the answers are generated one
after another, so everyone waits longer. **Batch APIs** (OpenAI Batch, Anthropic Message
Batches, Gemini Batch Mode) take work that can wait hours and bill it at half price.
""", ["size a request batch against an SLA",
      "decide which work can go to a batch API and what it costs in latency",
      "tell the two apart: one shares tokens, the other gets a discount"]),
        params(),
        code(SETUP),
        md("""
## Experiment 1: batch size
**Question:** a dashboard page fires 20 questions at once behind a 1,200-token instruction
prompt. Batches of 1, 2, 5, 10, 20: how much cheaper, and how much slower?
"""),
        code("""
dashboard = lessons.scenario_dict("analytics-dashboard-batching")
def with_size(n):
    return lessons.variant(dashboard, pipeline=[{"stage": "batch", "max_batch_size": n, "window_ms": 150}])

sizes = lessons.sweep_values(with_size, [1, 2, 5, 10, 20], seed, requests, label="max batch size")
sizes[["reduction_pct", "p95_ms"]]
"""),
        code("""
lessons.plot_sweep(sizes, "reduction_pct", y2="p95_ms", title="Batching: saving and p95 latency",
                   y2_hline=8000, y2_hline_label="SLA 8 s")
"""),
        md("""
The saving flattens (the shared prompt is already split 5 or 10 ways) while p95 latency has
tripled: past some size you pay latency for almost nothing. (Beyond 10 little changes: few pages
gather more questions within the 150 ms window.) An SLA-aware batch flushes early when waiting
would break the SLA.
"""),
        md("""
## Experiment 2: the batch API
**Question:** a nightly job enriches product records; nobody waits for a single answer. Send a
growing share to the batch API: how do cost and the median latency move?
"""),
        code("""
nightly = lessons.scenario_dict("nightly-enrichment-batch-api")
def with_share(share):
    return lessons.variant(nightly, {"providers[0].rate_limits": "none"},
                           pipeline=[{"stage": "batch_api", "share": share}])

shares = lessons.sweep_values(with_share, [0.0, 0.25, 0.5, 0.75, 1.0], seed, requests, label="share sent to the batch API")
shares["p50_min"] = shares["p50_ms"] / 60_000
shares[["reduction_pct", "p50_min"]]
"""),
        code('lessons.plot_sweep(shares, "reduction_pct", y2="p50_min", title="Batch API: half price, minutes instead of seconds")'),
        md("""
Half price for everything that goes, minutes to hours of waiting for it. Good for nightly jobs,
evaluations and embeddings backfills; never for a user waiting at a screen.
"""),
        *try_it("05", ["""
print(ex.measure(max_batch_size=2, window_ms=150))    # explore
max_batch_size, window_ms = 2, 150                    # your answer
ex.check(max_batch_size=max_batch_size, window_ms=window_ms)
"""], """
From experiment 1: 2 saves too little, 10 is too slow. `max_batch_size=5, window_ms=150` saves
about 42 % at p95 about 4 s.
"""),
        md("## Play\nBatch window and size on the dashboard scenario."),
        code("""
from lab.widgets import Dashboard

Dashboard("analytics-dashboard-batching", knobs=["batch window (ms)", "batch size"], requests=requests, seed=seed)
"""),
        *footer("05", ["request batching shares a prompt's tokens and costs latency: size it against the SLA",
                       "batch APIs halve the price of work that can wait hours",
                       "check which one you are talking about"]),
    ]


# =========================================================================== 06


def nb06() -> list:
    return [
        *header("06", """
Providers cache the **beginning** of prompts they have seen. When the next prompt starts the
same way (the same system prompt, tool definitions, the conversation so far), those tokens are
read from cache at a fraction of the input price. The rules differ: OpenAI caches automatically
from 1,024 tokens with no fee; Anthropic needs an explicit breakpoint and charges extra to
*write* the cache (1.25x for 5 minutes, 2x for 1 hour) and 0.1x to read it; Gemini caches
implicitly from 1,024 tokens on Flash (4,096 on Pro).
""", ["predict what prompt caching saves on each provider",
      "spot when caching *costs* money: writes that are never read",
      "place a cache breakpoint for a growing agent context"]),
        params(),
        code(SETUP),
        md("""
## Experiment 1: four providers, one system prompt
**Question:** the support chatbot's 1,500-token system prompt, with each provider's own caching
rules. Which saves most, and does any save nothing?
"""),
        code("""
chatbot = lessons.scenario_dict("support-chatbot")
providers = {"openai/gpt-4o-mini": "openai", "anthropic/claude-sonnet-4-5": "anthropic",
             "anthropic/claude-haiku-4-5": "anthropic", "google/gemini-2.5-flash": "gemini"}
by_provider = lessons.compare({
    m: lessons.variant(chatbot, {"providers[0].name": m.split("/")[0], "providers[0].model": m.split("/")[1]},
                       pipeline=[{"stage": "prompt_cache", "rules": rules}])
    for m, rules in providers.items()}, seed, requests)
lessons.plot_bars(by_provider, "reduction_pct", title="What prompt caching saves, by provider", fmt="{:.1f} %")
"""),
        md("""
Claude Haiku saves nothing: its minimum cacheable prefix is 2,048 tokens and this prompt has
1,500. Savings follow each model's cached-input discount (OpenAI 50 %, Anthropic and Gemini
90 %) times the share of input that is the shared prefix.
"""),
        md("""
## Experiment 2: can caching make the bill bigger?
**Question:** on Anthropic a cache write costs 1.25x (or 2x). If requests come rarely, entries
expire before anyone reads them. Below which request rate does caching lose money?
"""),
        code("""
import pandas as pd

ex = lessons.exercise("06")
gaps_s = [30, 120, 300, 600, 1800]
by_gap = pd.DataFrame({ttl: [ex.measure(ttl, 1 / g)["reduction_pct"] for g in gaps_s] for ttl in ("5m", "1h")},
                      index=pd.Index(gaps_s, name="seconds between requests"))
lessons.plot_sweep(by_gap, ["5m", "1h"], logx=True, hline=0, ylabel="cost reduction (%)",
                   title="Anthropic prompt caching: 5-minute against 1-hour writes")
"""),
        md("""
Once the gap between requests passes the TTL, most writes expire unread: the 5-minute cache's
saving melts away and turns into a loss at half an hour between requests. 1-hour writes cost
more each time but survive the gap.
"""),
        md("""
## Experiment 3: an agent's growing context
**Question:** a coding agent re-sends its whole, growing context at every step, so about 90 % of
its prompt blocks were sent before. The reuse is the same on every provider: does each one save
the same?
"""),
        code("""
agent = lessons.scenario_dict("coding-agent-tool-loops")
on = {"anthropic/claude-sonnet-4-5": "anthropic", "openai/gpt-4.1": "openai", "google/gemini-2.5-pro": "gemini"}
agents = lessons.compare({
    m: lessons.variant(agent, {"providers[0].name": m.split("/")[0], "providers[0].model": m.split("/")[1],
                               "pipeline[prompt_cache].rules": rules})
    for m, rules in on.items()}, seed, min(requests, 983))
agents[["baseline_cost_usd", "cost_usd", "reduction_pct"]]
"""),
        code('lessons.plot_grouped(agents, ["baseline_cost_usd", "cost_usd"], title="Coding agent: bill without and with prompt caching", ylabel="USD")'),
        md("""
Same reuse, different discounts: cached input is 10 % of input on Claude and Gemini, 25 % on
GPT-4.1, and Anthropic adds the write premium. The breakpoint sits at the end of each prompt
(`breakpoint = "end"`), so each step's whole context is cached for the next.
"""),
        *try_it("06", ["""
slow, fast = "5m", "5m"      # your answers: "5m" or "1h" for each workload
ex.check(slow=slow, fast=fast)
"""], """
`slow="1h"` (a 10-minute gap outlives a 5-minute entry) and `fast="5m"` (an entry read every
second never expires, and its writes are cheaper).
"""),
        *footer("06", ["prompt caching rewards a stable prefix: put what never changes first",
                       "minimum lengths and write premiums decide whether it pays; rare traffic can lose money",
                       "for agents, cache the whole growing context (breakpoint at the end)"]),
    ]


# =========================================================================== 07


def nb07() -> list:
    return [
        *header("07", """
Cheap models answer easy requests as well as dear ones, and hard requests worse. A **router**
picks a model per request (cheapest, fastest, best, or a weighted balance, among models expected
to meet a quality need); a **cascade** tries the cheap model first and escalates when a judge
scores the answer below a threshold — paying for the discarded answer. In costlab, each request
has a *difficulty* and each model a *skill*; quality = 1 / (1 + exp(12 (difficulty - skill))).
""", ["route requests by strategy and a quality need",
      "trace a cascade's cost-quality curve by its threshold",
      "pick a point on the Pareto frontier under a quality floor"]),
        params(),
        code(SETUP),
        code("""
routing = lessons.ROUTING_SCENARIO      # Sonnet first (the baseline); Haiku and Flash-Lite available
routing["providers"]
"""),
        md("""
## Experiment 1: routers
**Question:** route everything to the cheapest model. What happens to mean quality? And if the
router may only pick models expected to reach quality 0.8 on each request?
"""),
        code("""
routers = lessons.compare({
    "all Sonnet": lessons.variant(routing),
    "cheapest": lessons.variant(routing, pipeline=[{"stage": "router", "strategy": "cheapest"}]),
    "cheapest, need 0.8": lessons.variant(routing, {"traffic.min_quality": 0.8},
                                          pipeline=[{"stage": "router", "strategy": "cheapest"}]),
}, seed, requests)
routers[["cost_usd", "quality_mean", "p95_ms"]]
"""),
        code("""
points = [{"label": k, "cost_usd": row.cost_usd, "quality": row.quality_mean} for k, row in routers.iterrows()]
plots.cost_quality_frontier(points, title="Routers: cost against quality")
"""),
        md("""
Blind cheapest routing saves almost everything and loses a lot of quality; a quality need
routes only the requests a cheap model can handle.
"""),
        md("""
## Experiment 2: a cascade's threshold
**Question:** Flash-Lite, then Haiku, then Sonnet; escalate when the judged quality is below
the threshold. Raising the threshold from 0.3 to 0.95: does quality rise steadily? And cost?
"""),
        code("""
cascade = {"stage": "cascade", "models": lessons.CASCADE_MODELS}
thresholds = [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
by_threshold = lessons.sweep_values(lambda t: lessons.variant(routing, pipeline=[{**cascade, "threshold": t}]),
                                    thresholds, seed, requests, label="threshold")
curve = [{"label": f"t={t:g}", "cost_usd": row.cost_usd, "quality": row.quality_mean} for t, row in by_threshold.iterrows()]
plots.cost_quality_frontier(curve + points, title="Cascade thresholds and routers")
"""),
        md("""
**Question:** every escalation is another full model call. What does that do to latency?
"""),
        code('lessons.plot_sweep(by_threshold, "p95_ms", title="Cascade: p95 latency against threshold")'),
        *try_it("07", ["""
print(ex.measure(threshold=0.5))   # explore
threshold = 0.5                    # your answer
ex.check(threshold=threshold)
"""], """
Quality rises with the threshold; the cheapest threshold that reaches 0.85 is 0.7 (0.75 also
passes, within 10 % of its cost).
"""),
        md("## Play\nThe cascade threshold, live (quality floor 0.85 drawn)."),
        code("""
from lab.widgets import Dashboard

Dashboard({**routing, "pipeline": [{**cascade, "threshold": 0.8}]}, knobs=["cascade threshold"],
          requests=requests, seed=seed, quality_floor=0.85)
"""),
        *footer("07", ["routing needs a quality signal: without one, cheapest means worst",
                       "a cascade's threshold walks along a cost-quality curve; every escalation costs money "
                       "and latency",
                       "choose on the Pareto frontier, under your quality floor"]),
    ]


# =========================================================================== 08


def nb08() -> list:
    return [
        *header("08", """
Providers limit requests per minute (RPM) and tokens per minute (TPM); over the limit they
answer **429** with a Retry-After. OpenAI counts `max_tokens` against TPM *before* generating,
used or not. A client-side **token bucket** keeps you under the limit by queueing; a **budget**
caps spend per tenant by reserving each request's worst case before sending it, and then warns,
queues, downgrades or rejects.
""", ["say what a limiter can and cannot do when traffic exceeds the limit",
      "size max_tokens against a TPM limit",
      "choose a budget action per product need"]),
        params(),
        code(SETUP),
        md("""
## Experiment 1: over the limit
**Question:** the provider allows 400 requests a minute; traffic brings 600. What happens with
no protection, with retries, and with a client-side bucket at 380 RPM?
"""),
        code("""
over = {"name": "over-the-limit", "duration_s": 600,
        "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 10.0},
                    "input_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.5},
                    "output_tokens": {"dist": "lognormal", "median": 200, "sigma": 0.5},
                    "max_tokens": 1000, "priorities": {"high": 0.2, "normal": 0.5, "low": 0.3}},
        "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 64, "rpm": 400}],
        "sla": {"p95_ms": 20000}}
limits = lessons.run_variants({
    "no protection": lessons.variant(over),
    "retries": lessons.variant(over, pipeline=[{"stage": "retry"}]),
    "client bucket 380 RPM": lessons.variant(over, pipeline=[{"stage": "rate_limit", "rpm": 380, "high_priority": "queue"}]),
}, seed, requests)
lessons.table(limits)[["error_rate", "p50_ms", "p95_ms"]]
"""),
        code("lessons.plot_latency_cdfs(limits, sla_ms=20000, title=\"Over the limit: errors or waiting\")"),
        md("""
Retries cannot create capacity: they only spread the 429s out. A bucket turns errors into a
queue that grows as long as demand exceeds the limit. The real fixes are more capacity (a higher
tier, a second model or provider) or less demand (caching, batch APIs).
"""),
        md("""
## Experiment 2: max_tokens against TPM
**Question:** answers average about 200 tokens but requests ask for `max_tokens = 4096`, under a
200,000 TPM limit that counts input + max_tokens. Does the unused allowance matter?
"""),
        code("""
import pandas as pd

ex = lessons.exercise("08")
cap_table = pd.DataFrame({n: ex.measure(n) for n in [256, 1024, 4096]}).T
cap_table.index.name = "max_tokens"
lessons.plot_sweep(cap_table, ["error_rate", "cut_share"], logx=True, ylabel="share of requests",
                   title="max_tokens: refused (429) against cut off")
"""),
        md("""
A large cap reserves TPM nobody uses, and the provider refuses requests it could have served; a
small one cuts long answers off. The right cap sits just above your long answers.
"""),
        md("""
## Experiment 3: when a tenant's budget runs out
**Question:** three tenants, $2 a day each. Which action keeps every tenant within budget *and*
still answers people: warn, queue, downgrade to Haiku, or reject?
"""),
        code("""
tenants = lessons.scenario_dict("multi-tenant-budgets")
actions = lessons.run_variants({
    a: lessons.variant(tenants, pipeline=[{"stage": "budget", "daily_usd": 2.0, "per": "tenant", "action": a,
                                           "downgrade_to": "claude-haiku-4-5"}])
    for a in ("warn", "queue", "downgrade", "reject")}, seed, requests)
budgets = lessons.budget_table(actions)
budgets
"""),
        code('lessons.plot_bars(budgets, "max_tenant_spend_usd", hline=2.0, hline_label="budget $2/day", title="Largest tenant spend by action", fmt="${:.2f}")'),
        md("""
*warn* overspends; *queue* keeps each day within budget by making people wait until the next day
(look at p95: days); *reject* and *downgrade* keep it too — downgrade answers a few more
requests, on the cheaper model, before the day's budget is gone. The reservation (input +
max_tokens at the dearest model) is what keeps concurrent requests from overshooting.
"""),
        *try_it("08", ["""
print(ex.measure(max_tokens=512))   # explore
max_tokens = 4096                   # your answer
ex.check(max_tokens=max_tokens)
"""], """
Between the cut-off and the 429s: answers over about 500 tokens are rare (p99), and at 2.5
requests a second the TPM allows input + max_tokens up to about 1,300 per request. 700 passes.
"""),
        md("## Play\nBudgets on the multi-tenant scenario."),
        code("""
from lab.widgets import Dashboard

Dashboard("multi-tenant-budgets", knobs=["daily budget (USD)", "budget action", "traffic rate (req/s)"],
          requests=requests, seed=seed)
"""),
        *footer("08", ["limits are capacity: a limiter or retries cannot serve more than the limit",
                       "max_tokens is reserved against TPM: cap it just above real answers",
                       "budgets need reservations for concurrency, and an action that fits the product"]),
    ]


# =========================================================================== 09


def nb09() -> list:
    return [
        *header("09", """
Providers fail: 429s, 500s, overloads (Anthropic 529), and whole outages. **Retries** with
exponential backoff and jitter recover transient errors; a **circuit breaker** stops calling a
provider that keeps failing and probes it now and then; **fallback** sends traffic to another
provider while the breaker is open. Each has a price: latency, duplicated load, a dearer model.
""", ["tell transient errors from outages by how requests end over time",
      "combine retries, a breaker and fallback",
      "put a price on resilience"]),
        params(),
        code(SETUP),
        md("""
The outage-day scenario: gpt-4o with 8 % server errors and a 20-minute outage (from minute 30
to 50), Claude Sonnet available as a fallback. This lesson keeps the full 90 minutes and thins
the traffic to `requests` requests, so the outage is always in the run.
"""),
        code("""
outage = lessons.scenario_dict("provider-outage-day")
outage["traffic"]["arrivals"]["rate_per_s"] = requests / outage["duration_s"]
variants = {
    "no protection": lessons.variant(outage, pipeline=[]),
    "retries": lessons.variant(outage, pipeline=[{"stage": "retry", "max_attempts": 4}]),
    "retries + breaker + fallback": lessons.variant(outage),
}
"""),
        md("""
## Experiment 1: how requests end
**Question:** with no protection, which share fails: about 8 %, about 30 %, or more? With
retries? With fallback?
"""),
        code("""
outage_runs = lessons.run_variants(variants, seed)
outage_table = lessons.table(outage_runs)
outage_table[["error_rate", "p95_ms", "cost_usd", "baseline_cost_usd"]]
"""),
        code('lessons.plot_outcomes_over_time(outage_runs["no protection"], bucket_s=300, title="No protection")'),
        code('lessons.plot_outcomes_over_time(outage_runs["retries + breaker + fallback"], bucket_s=300, title="Retries, breaker and fallback")'),
        md("""
Retries fix the scattered 8 % (a second attempt usually works) but not the outage: every attempt
during it fails too. Only fallback turns the outage into answers.
"""),
        md("""
## Experiment 2: the price
**Question:** the baseline's bill counts every request at gpt-4o's list price. Will the
resilient run cost less than that, the same, or more?
"""),
        code('lessons.plot_bars(outage_table, "cost_usd", hline=float(outage_table["baseline_cost_usd"].iloc[0]), hline_label="every request at list price", title="What resilience costs", fmt="${:.3f}")'),
        md("""
The unprotected run looks cheap because failed calls are not billed: it "saved" money by not
answering. Fallback serves those requests on a dearer model. Compare costs only between runs
that answer the same requests.
"""),
        *try_it("09", ["""
print(ex.measure(max_attempts=4, fallback=False))   # explore
max_attempts, fallback = 4, False                    # your answer
ex.check(max_attempts=max_attempts, fallback=fallback)
"""], """
Fallback is required (an outage outlasts any backoff); with it, 3 attempts bring failures under
0.1 %: `max_attempts=3, fallback=True`.
"""),
        *footer("09", ["retries handle transient errors; outages need a breaker and a fallback",
                       "retry only what can succeed (429, 5xx), never a 400, and never sooner than Retry-After",
                       "resilience costs money: compare bills only for the same answered work"]),
    ]


# =========================================================================== 10


def nb10() -> list:
    return [
        *header("10", """
A **digital twin** is a scenario calibrated from your own traffic — a trace or a ledger — that
behaves like it: the same arrival rate and burstiness, the same token lengths, the same repeats.
Once it reproduces the source, you can ask it what-ifs you cannot try in production.
""", ["calibrate a twin from the Azure LLM inference trace and read why it chose what it did",
      "check a twin against its source before trusting it",
      "ask what-ifs and size capacity with it"]),
        params(),
        code(SETUP + "import lab.twin as twin\nfrom lab.traces import read_trace, shipped_trace_path"),
        code("""
trace_path = shipped_trace_path("azure_conv")     # one hour of Azure's conversation service (CC-BY 4.0)
trace = read_trace(trace_path, format="azure")
len(trace), float(trace.t_arrival_s[-1])
"""),
        md("""
## Experiment 1: calibrate
**Question:** is this traffic Poisson (requests independent, a constant rate)? What in the
trace would tell you?
"""),
        code("""
fit = twin.fit(trace_path, format="azure", sla_p95_ms=8000)
print(fit.story())
"""),
        code("""
twin_run = lessons.run(fit.scenario, seed)
lessons.plot_arrival_rates({"Azure trace": trace.t_arrival_s, "twin": twin_run.requests.t_arrival_s},
                           bucket_s=60, title="Requests per second, trace and twin")
"""),
        md("""
The index of dispersion (variance / mean of counts per window) is 1 for Poisson and grows with
the window when the rate drifts: the calibration tried Poisson, then rate profiles, and says
which matched.
"""),
        md("""
## Experiment 2: validate
**Question:** which of these would you trust least in a twin: the rate, token percentiles,
burstiness at 1 s, or the hourly cost?
"""),
        code("""
check = twin.validate(fit.scenario, trace_path, format="azure", seeds=2)
check
"""),
        code("lessons.plot_validation(check)"),
        md("""
## Experiment 3: what if?
**Question:** this trace has no prompt identities, so caches have nothing to reuse. What could
still save money: capping answers at 400 tokens, or sending 30 % to the batch API? Which keeps
the 8 s SLA?
"""),
        code("""
runs = twin.what_if(fit.scenario, {
    "cap answers at 400": [{"stage": "compress", "max_output_tokens": 400}],
    "batch API for 30 %": [{"stage": "batch_api", "share": 0.3}],
}, seeds=2, requests=requests)
twin.recommend(runs, sla_p95_ms=8000, quality_floor=0.9)
"""),
        code('lessons.plot_bars(runs.table.set_index("policy"), "cost_usd_per_day", title="Cost per day by policy", fmt="${:,.2f}")'),
        *try_it("10", ["""
print(ex.measure(concurrency=16))   # explore
concurrency = 16                     # your answer: provider slots
ex.check(concurrency=concurrency)
"""], """
Queues explode below about 28 slots and vanish above: 32 passes (`ex.smallest` is the exact answer).
"""),
        *footer("10", ["a twin is only as good as its validation: compare it with the source first",
                       "burstiness (dispersion), not just the mean rate, decides queueing",
                       "what-ifs on a twin are cheap; rank them under your SLA and quality floor"]),
    ]


# =========================================================================== 11


def nb11() -> list:
    return [
        *header("11", """
Once traffic is flowing, the questions change: is the cache still hitting? Did last night's
deploy make calls dearer? What will next month cost? costlab's analytics work on any ledger —
simulated, replayed or recorded live: **KPIs** as safe formulas, **alerts**, **anomaly
detection**, **forecasts**, and a self-contained **report**.
""", ["define KPIs as formulas and watch them over time against thresholds",
      "detect a cost anomaly and forecast the next day",
      "produce the report a cost review starts from"]),
        params(),
        code(SETUP + "from lab.analysis import KPI, kpi_table, standard_kpis, detect_cost_anomalies, forecast_cost"),
        md("""
Three days of the support chatbot with a day-night rhythm (about `4 x requests` requests in all).
"""),
        code("""
days = 3
history = lessons.variant("support-chatbot", {"duration_s": days * 86400,
                                              "traffic.arrivals": {"process": "diurnal", "rate_per_s": 4 * requests / (days * 86400)}})
result = lessons.run(history, seed)
ledger = result.ledger
len(ledger)
"""),
        md("""
## Experiment 1: KPIs
**Question:** which of these would you alert on, and at what level: cost per 1,000 requests,
cache hit rate, p95 latency, error rate?
"""),
        code("kpi_table(standard_kpis(sla_ms=8000), ledger)[[\"value\", \"unit\", \"status\", \"warning\", \"critical\", \"formula\"]]"),
        code("""
hit_rate = KPI("cache hit rate", 'share(outcome == "cache_hit")', "share", warning=0.15, critical=0.1)
plots.kpi_over_time(hit_rate, ledger, bucket_s=3600)
"""),
        md("""
The hit rate dips at night: fewer requests, so fewer repeats inside the TTL. A threshold that
ignores the daily cycle alerts every night.
"""),
        md("""
## Experiment 2: an incident
**Question:** a deploy on day 2 tripled prompt sizes for two hours. Would you see it in the
daily total? Would a detector on hourly cost see it?
"""),
        code("""
incident = lessons.with_incident(ledger, 36 * 3600, 38 * 3600, factor=3.0)
anomalies = detect_cost_anomalies(incident, bucket_s=3600)
anomalies[anomalies["anomaly"]]
"""),
        code('plots.cost_over_time(incident, bucket_s=3600, anomalies=anomalies, title="Hourly cost, with the incident")'),
        md("""
## Experiment 3: tomorrow
**Question:** with a daily cycle in the history, will a forecast be a flat line or a wave? How
wide should its interval be?
"""),
        code("""
forecast = forecast_cost(ledger, bucket_s=3600, horizon=24, period_s=86400)
mean_usd, low_usd, high_usd = forecast.total()
print(f"next 24 h: ${mean_usd:.4f} (95 % interval ${low_usd:.4f} to ${high_usd:.4f}), {forecast.method}")
"""),
        code('plots.cost_over_time(ledger, bucket_s=3600, forecast=forecast, title="Hourly cost and the next day")'),
        md("""
## Experiment 4: the report
**Question:** what would you put on the first page for a manager?
"""),
        code("""
import tempfile
from lab.analysis import build_report

from pathlib import Path

teams = {"retail": "commerce", "travel": "leisure"}
report = build_report(result, frontier=False, teams=teams)
out_dir = report.write(Path(tempfile.mkdtemp(prefix="costlab-")) / "report")
print("open", out_dir / "report.html", "in a browser; the numbers are in report.json")
report
"""),
        code('plots.attribution_bars(result, by="team", teams=teams)'),
        *try_it("11", ["""
formula = "mean(cost_usd)"      # your answer: a KPI formula
ex.check(formula=formula)
"""], """
```python
formula = 'mean(cost_usd where outcome == "ok")'
```
"""),
        *footer("11", ["KPIs are formulas over the ledger; thresholds must respect daily cycles",
                       "anomaly detectors look at buckets a daily total hides",
                       "forecasts need a season in the history, and come with an interval"]),
    ]


# =========================================================================== 12


def nb12() -> list:
    return [
        *header("12", """
Everything so far was simulated. The same requests can go to the real OpenAI, Anthropic and
Gemini APIs through their official SDKs — inside a `lab.live.Session`: a **hard spend cap**
(a call is refused unless its worst case fits), polite retries, and a **cassette** that records
every call so it can be replayed offline. This notebook runs against costlab's local fake
providers by default (no keys, no network); set `live = True` to spend real money.
""", ["make calls through a spend-capped session and read their usage and cost",
      "see provider prompt caching in real usage blocks",
      "record a cassette and replay it with no network"]),
        params(extra="""live = False      # True: the real APIs, with keys from OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY
budget_usd = 0.05 # the hard cap for this whole notebook when live"""),
        code(SETUP + """import os
import tempfile
from pathlib import Path

from lab.live import BudgetExceeded, Session
from lab.providers.fake_server import FakeProviderServer
"""),
        code("""
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
"""),
        md("""
## Experiment 1: one question, three providers
**Question:** the same short question to gpt-4o-mini, claude-haiku-4-5 and gemini-2.5-flash.
Which costs most? (Lesson 01's price sheet has the answer.)
"""),
        code("""
question = "In two sentences: what is a token, for a language model?"
targets = [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"), ("google", "gemini-2.5-flash")]
first = [session.call(p, m, prompt=question, max_tokens=150) for p, m in targets]
calls = lessons.calls_table(first)
calls
"""),
        code('lessons.plot_bars(calls.set_index("model"), "cost_usd", title="One call each", fmt="${:.6f}")'),
        md("""
## Experiment 2: a long prompt, twice
**Question:** a 2,000-token system prompt sent twice in a row. How many input tokens come from
cache the second time on OpenAI (automatic)? On Anthropic with a 5-minute breakpoint — and what
does the *first* call cost there?
"""),
        code("""
system = lessons.long_system_prompt(2000)
twice = []
for provider, model, cache in [("openai", "gpt-4o-mini", None), ("anthropic", "claude-sonnet-4-5", "5m")]:
    for _ in range(2):
        twice.append(session.call(provider, model, prompt="Can I return a damaged book?", system=system,
                                  max_tokens=100, cache=cache))
cached = lessons.calls_table(twice)
cached[["model", "input_tokens", "cached_input_tokens", "cache_write_tokens", "cost_usd"]]
"""),
        code("""
cached.index = [f"{m} #{k % 2 + 1}" for k, m in enumerate(cached["model"])]
lessons.plot_grouped(cached, ["input_tokens", "cached_input_tokens", "cache_write_tokens"],
                     title="Usage of the same prompt, first and second call", ylabel="tokens")
"""),
        md("""
OpenAI caches on its own and bills no write. Anthropic bills the first call's prefix as a
*write* (1.25x), then reads it at 0.1x: the second call is far cheaper than the first.
"""),
        md("""
## Experiment 3: the spend cap
**Question:** a session has $0.01 left. A call to Sonnet with a short prompt may produce up to
`max_tokens` tokens. Up to which `max_tokens` is it sent, and from which is it refused before
anything is spent?
"""),
        code("""
import pandas as pd

caps = [100, 250, 500, 1000, 2000, 4000]
worst = pd.DataFrame({"worst_case_usd": [lessons.worst_case_usd("anthropic/claude-sonnet-4-5", question, n) for n in caps]},
                     index=pd.Index(caps, name="max_tokens"))
lessons.plot_sweep(worst, "worst_case_usd", hline=0.01, hline_label="$0.01 left", title="What the session reserves per call")
"""),
        code("""
small = Session(budget_usd=0.01, base_url=base_urls)
try:
    small.call("anthropic", "claude-sonnet-4-5", prompt=question, max_tokens=4000)
except BudgetExceeded as exc:
    print("refused:", exc)
print("spent:", small.spent_usd)
"""),
        md("""
## Experiment 4: replay
**Question:** can we get the same answers, tokens and costs with no network and no key?
"""),
        code("""
replay = Session(budget_usd=budget_usd, cassette=cassette, mode="replay")
again = [replay.call(p, m, prompt=question, max_tokens=150) for p, m in targets]
side_by_side = calls.set_index("model")[["cost_usd"]].rename(columns={"cost_usd": "recorded"})
side_by_side["replayed"] = [r.cost_usd for r in again]
side_by_side
"""),
        code('lessons.plot_grouped(side_by_side, title="Recorded and replayed cost per call", ylabel="USD")'),
        md("""
A cassette is a JSONL file: request, response, usage, cost, latency (never a key). Commit one
with a lesson or a test and it runs anywhere. A scenario provider with `kind = "replay"` plays a
whole simulation from one (see the README, "Going live").
"""),
        *try_it("12", ["""
print(ex.measure(max_tokens=1000))   # explore: the worst case of one call
max_tokens = 1000                     # your answer
ex.check(max_tokens=max_tokens)
"""], """
The worst case is the counted prompt (x 1.3 for Claude's estimated tokenizer) at $3/M plus
`max_tokens` at $15/M; solve for $0.01: about 650 tokens (`ex.largest`); 590 passes.
"""),
        code("""
if server is not None:
    server.stop()
print(f"this notebook spent ${session.spent_usd:.6f} of ${budget_usd}" + ("" if live else " (fake providers: no real money)"))
"""),
        *footer("12", ["a spend cap must hold before a call is sent: reserve the worst case",
                       "usage blocks differ by provider; genai-prices maps them to one bill",
                       "record once, replay forever: cassettes make live lessons reproducible"]),
    ]


# =========================================================================== 13


def nb13() -> list:
    return [
        *header("13", """
One run answers one question. Choosing a configuration means many runs: a **grid** of settings,
each on several **seeds**, summarised with confidence intervals. `lab.sweep` runs every
combination in parallel — on local processes, or on a Dask cluster with the same code — and
returns one row per grid point with the mean and 95 % interval of every metric.
""", ["sweep a two-knob grid over seeds and read it as heatmaps",
      "use intervals to tell real differences from seed noise",
      "choose a configuration under a constraint, and scale the search out"]),
        params(extra="""seeds = 3         # seeds per grid point
workers = 2       # local processes (lab.sweep also takes a dask.distributed Client)""", requests=3000),
        code(SETUP),
        md("""
The catalog assistant *without* invalidation: a cached answer about a product that changed is
wrong until its TTL expires. Short TTLs are fresh and dear; long ones cheap and stale.
"""),
        code("""
catalog = lessons.stale_catalog_dict()
grid = {"pipeline[cache].ttl_s": list(lessons.SWEEP_TTLS), "pipeline[cache].capacity": list(lessons.SWEEP_CAPACITIES)}
grid
"""),
        md("""
## Experiment 1: the grid
**Question:** which knob moves cost more, TTL or capacity? Which one moves quality?
"""),
        code("""
table = lab.sweep(catalog, grid, seeds=seeds, requests=requests, workers=workers, progress=False,
                  metrics=["cost_usd", "quality_mean", "latency_ms.p95"])
table[["pipeline[cache].ttl_s", "pipeline[cache].capacity", "seeds", "cost_usd.mean", "quality_mean.mean"]]
"""),
        code('lessons.plot_heatmap(table, "pipeline[cache].ttl_s", "pipeline[cache].capacity", "cost_usd.mean", title="Mean cost (USD)", fmt="{:.3f}")'),
        code('lessons.plot_heatmap(table, "pipeline[cache].ttl_s", "pipeline[cache].capacity", "quality_mean.mean", title="Mean quality", fmt="{:.3f}", cmap="RdYlGn")'),
        md("""
## Experiment 2: is a difference real?
**Question:** two neighbouring grid points differ by a little in cost. With this many seeds,
can you tell them apart?
"""),
        code("""
lessons.plot_sweep_ci(table, "pipeline[cache].ttl_s", "quality_mean", group="pipeline[cache].capacity",
                      hline=0.95, hline_label="quality floor 0.95", title="Quality against TTL (95 % intervals)")
"""),
        md("""
Overlapping bands mean "not separated yet": more seeds shrink them (by about the square root
of the number of seeds). Decide on points whose interval clears your floor, not on means alone.
"""),
        md("""
## Experiment 3: traffic x capacity
**Question:** at 1x, 3x and 10x today's traffic, how many provider slots keep p95 under the SLA?
"""),
        code("""
capacity = lab.sweep(lessons.scenario_path("support-chatbot"),
                     {"traffic.arrivals.rate_per_s": [20, 60, 200], "providers[0].concurrency": [16, 64, 256]},
                     seeds=1, requests=requests, workers=workers, progress=False, metrics=["latency_ms.p95"])
lessons.plot_heatmap(capacity, "traffic.arrivals.rate_per_s", "providers[0].concurrency", "latency_ms.p95.mean",
                     title="p95 latency (ms, log colour scale); SLA 8,000 ms", fmt="{:,.0f}", cmap="RdYlGn_r", log=True)
"""),
        md("""
### Scaling out
The same call runs on a cluster: start a Dask scheduler and workers, then

```python
from distributed import Client
table = lab.sweep(catalog, grid, seeds=20, client=Client("tcp://scheduler:8786"))
```

or from a shell: `costlab sweep scenarios/support-chatbot.toml --grid grid.toml --seeds 20`.
Each run is independent and seeded, so the numbers do not depend on where they ran.
"""),
        *try_it("13", ["""
ttl_s, capacity = 60, 2000     # your answer: a grid point
ex.check(ttl_s=ttl_s, capacity=capacity)
"""], """
Read the table: keep rows with `quality_mean.mean >= 0.95`, then take the cheapest (the check
uses 3,000 requests on seeds 0, 1 and 2, like the default sweep). `ex.reference` holds it.
"""),
        *footer("13", ["a decision is a grid times seeds, summarised with intervals",
                       "heatmaps show which knob matters; intervals show which differences are real",
                       "the same sweep scales from a laptop's cores to a cluster"]),
    ]


NOTEBOOKS = {"00": nb00, "01": nb01, "02": nb02, "03": nb03, "04": nb04, "05": nb05, "06": nb06, "07": nb07,
             "08": nb08, "09": nb09, "10": nb10, "11": nb11, "12": nb12, "13": nb13}


def notebook(number: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = NOTEBOOKS[number]()
    for k, cell in enumerate(nb.cells):            # stable ids: regenerating changes nothing
        cell.id = f"lesson-{number}-{k:02d}"
    nbformat.validate(nb)
    return nb


def render(number: str) -> str:
    return nbformat.writes(notebook(number)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook on disk differs from this file")
    args = parser.parse_args(argv)
    stale = []
    for number, filename, _ in LESSONS:
        path = HERE / filename
        text = render(number)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(filename)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python notebooks/build.py):", ", ".join(stale))
        return 1
    if not args.check:
        print(f"wrote {len(LESSONS)} notebooks to {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
