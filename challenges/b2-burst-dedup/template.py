# %% [markdown]
# # Trending now: merge identical requests while they are in flight
# *beginner challenge `b2-burst-dedup`*
#
# A social feed summarises trending posts. When something trends, thousands of users ask for the same summary within seconds, the 64-slot deployment queues, and p95 latency explodes to minutes. You may only use in-flight deduplication (no cache): merge identical requests while the first is being answered. Cut the bill by 48 % and bring p95 under 5 s.
#
# | goal | on every private seed |
# |---|---|
# | target | cut cost by at least **48 %** |
# | SLA | p95 latency ≤ **5,000 ms** |
# | quality floor | quality_mean ≥ **0.99** |
# | error budget | at most **1 %** of requests failed |
#
# **How you are graded.** You hand in a *policy*: the pipeline of stages and their parameters,
# written by `lab.policy.submit`. The grader re-runs this notebook, reads only that policy and
# simulates it itself on **private seeds** (different traffic from the public seeds below). Numbers
# printed here are for you; they are not used. score = mean over the seeds of reduction_pct (percent of the no-optimization baseline's cost saved, on the same requests), rounded to 2 decimals and floored at 0; score = 0 when any constraint fails on any seed: p95 latency > sla_p95_ms, quality_mean < quality_floor, or failed share (errors + rejections) > error_budget. passed = constraints met and score >= target_reduction_pct. Ties rank by the earlier submission.
#
# Stages allowed here: `dedup`. Their fields are documented in `scenarios/README.md`.

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
    {"stage": "dedup"},
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
# 1. Preview the empty pipeline: the baseline's p95 is far above the SLA. Where does the time go: service or queueing?
# 2. A dedup follower pays nothing and waits only for its leader's remaining time.
# 3. Two tenants (web, mobile) ask for the same summaries. Should a web request wait for a mobile leader? Look at dedup's `shared` field.
# 4. window_s (reusing a finished answer) is a cache in disguise: it is locked in this challenge.
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
