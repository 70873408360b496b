# %% [markdown]
# # Long prompts, rare visitors: make Anthropic's prompt cache pay
# *intermediate challenge `i2-prompt-prefix`*
#
# An assistant serves 40 customers, each with its own 6,000-token system prompt, on claude-sonnet-4-5. Every question is new (nothing to cache as a response), but the system prompts repeat. Requests for one customer come minutes apart. Use provider prompt caching under Anthropic's real rules (writes cost more, reads 0.1x) to save 55 %.
#
# | goal | on every private seed |
# |---|---|
# | target | cut cost by at least **55 %** |
# | SLA | p95 latency ≤ **13,000 ms** |
# | quality floor | quality_mean ≥ **0.99** |
# | error budget | at most **1 %** of requests failed |
#
# **How you are graded.** You hand in a *policy*: the pipeline of stages and their parameters,
# written by `lab.policy.submit`. The grader re-runs this notebook, reads only that policy and
# simulates it itself on **private seeds** (different traffic from the public seeds below). Numbers
# printed here are for you; they are not used. score = mean over the seeds of reduction_pct (percent of the no-optimization baseline's cost saved, on the same requests), rounded to 2 decimals and floored at 0; score = 0 when any constraint fails on any seed: p95 latency > sla_p95_ms, quality_mean < quality_floor, or failed share (errors + rejections) > error_budget. passed = constraints met and score >= target_reduction_pct. Ties rank by the earlier submission.
#
# Stages allowed here: any registered stage (`lab.stages.stage_names()`). Their fields are documented in `scenarios/README.md`.

# %% tags=["parameters"]
# Parameters (papermill): the grader replaces these values. Keep this cell tagged "parameters".
challenge_path = "challenge.toml"   # this challenge's spec
policy_path = "policy.json"         # where lab.policy.submit writes your policy
preview_requests = None             # None: the challenge's own size; the grader uses a small number
grading = False                     # True while the grader runs this notebook

# %%
from IPython.display import display

import lab.policy
from lab.grading import load_challenge

challenge = load_challenge(challenge_path)
challenge

# %% [markdown]
# ## 1. The baseline
# *Question:* with no optimization at all, which constraint fails, and by how much? Guess before you run.

# %%
baseline = lab.policy.preview([], challenge, requests=preview_requests, progress=False)
baseline

# %% [markdown]
# ## 2. Your policy
# Edit the pipeline: stages act in the order listed. `preview` scores it on the public seeds
# exactly as the grader will on the private ones.

# %%
pipeline = [
    {"stage": "prompt_cache"},
]

# %%
result = lab.policy.preview(pipeline, challenge, requests=preview_requests, progress=False)
result

# %% [markdown]
# ## 3. Explore
# *Try it:* add candidates below and compare them. Which one is closest to the target while keeping
# a margin on every constraint? (Skipped while grading, to keep the grader fast.)

# %%
candidates = {"mine": pipeline, "none": []}
# candidates["bigger"] = [{"stage": "cache", "capacity": 5000}]

if not grading:   # each candidate previewed on the public seeds: a chart against the target, then the table
    display(lab.policy.compare(candidates, challenge, requests=preview_requests))

# %% [markdown]
# <details><summary><b>Hints</b> (open when stuck)</summary>
#
# 1. How often does one customer's system prompt come back? Compare that gap with the default cache lifetime (5 minutes).
# 2. Anthropic charges 1.25x for a 5-minute write and 2x for a 1-hour write: when is the 2x write the cheaper choice?
# 3. Where should the cache breakpoint sit when the question after the system prompt is never repeated?
# 4. Batch APIs halve the price but answer in minutes: what does that do to p95?
# </details>

# %% [markdown]
# ## 4. Submit
# *Self-check:* the policy is validated against this challenge's rules before it is written; a typo
# fails here, not at grading time. Hand in this notebook (the grader writes to `policy_path`).

# %%
policy = lab.policy.submit(pipeline, path=policy_path, challenge=challenge)
if not result.constraints_met:
    print("warning: this policy breaks a constraint on the public seeds; it would probably score 0")
policy
