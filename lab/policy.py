"""The learner's side of a challenge: try a policy on the public seeds, then submit it.

In a challenge notebook (its `parameters` cell defines `challenge_path` and `policy_path`;
the grader replaces both):

    import lab.policy
    pipeline = [{"stage": "cache", "capacity": 5000}]
    lab.policy.preview(pipeline, challenge_path)          # score on the public seeds, shown inline
    lab.policy.submit(pipeline, path=policy_path)         # writes the policy the grader will score

The grader never trusts what the notebook prints: it re-scores the submitted policy on
private seeds with its own simulation.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from lab.files import write_json_atomic
from lab.fmt import html_text
from lab.grading.challenge import Challenge, load_challenge
from lab.grading.evaluate import evaluate
from lab.grading.policy_schema import POLICY_VERSION, Policy, parse_policy
from lab.store import record_progress


def _challenge(challenge):
    return challenge if isinstance(challenge, Challenge) else load_challenge(challenge)


def check(pipeline, challenge, model: str | None = None) -> Policy:
    """Validate a pipeline against a challenge's rules and the stage registry (raises PolicyError)."""
    ch = _challenge(challenge)
    data = {"pipeline": list(pipeline)} if not isinstance(pipeline, dict) else dict(pipeline)
    if model:
        data["model"] = model
    return parse_policy(data, ch)


def preview(pipeline, challenge="challenge.toml", *, seeds=None, requests: int | None = None,
            model: str | None = None, progress: bool = True):
    """Score a pipeline on the challenge's public seeds (or `seeds`), as the grader will on private ones.

    With an experiment store configured the attempt is recorded (as tried: only grading passes).
    """
    ch = _challenge(challenge)
    policy = check(pipeline, ch, model)
    scored = evaluate(ch, policy, seeds if seeds is not None else ch.public_seeds, requests=requests,
                      progress=progress)
    record_progress("challenge", ch.id, passed=False)
    return scored


def submit(pipeline, path: str | os.PathLike = "policy.json", *, challenge=None, model: str | None = None) -> dict:
    """Write the policy file the grader reads (`path` = the `policy_path` parameter).

    With `challenge`, the pipeline is validated first, so a typo fails here rather than at
    grading time. The file is written atomically; the policy dict is returned.
    """
    if challenge is not None:
        policy = check(pipeline, challenge, model)
        data = policy.as_dict(_challenge(challenge).id)
    else:
        stages = list(pipeline["pipeline"] if isinstance(pipeline, dict) else pipeline)
        data = {"costlab_policy": POLICY_VERSION, "pipeline": [dict(s) for s in stages]}
        if model:
            data["model"] = model
    target = Path(path)
    write_json_atomic(target, data)
    print(f"policy with {len(data['pipeline'])} stage(s) written to {target}")
    return data


#: the columns a comparison shows, with the digits that read
COMPARE_COLUMNS = {"score": 2, "reduction_pct": 1, "p95_ms": 0, "quality_min": 3, "error_rate_max": 4}


@dataclass
class Comparison:
    """Candidate policies side by side on a challenge's public seeds: a table, and a chart against the target."""

    table: object              # pandas DataFrame, one row per candidate
    target_pct: float
    challenge: str

    def plot(self):
        from lab import plots  # reason: matplotlib, only when the chart is drawn

        return plots.candidate_reductions(self.table, self.target_pct, title=f"{self.challenge}: candidates")

    def _repr_html_(self) -> str:
        buf = io.StringIO()
        self.plot().savefig(buf, format="svg")
        shown = self.table.round(COMPARE_COLUMNS)
        return (f"<div>{buf.getvalue()[buf.getvalue().index('<svg'):]}</div>"
                f"<p>{html_text(f'target: {self.target_pct:g} % cost reduction; worst seed shown for p95, quality and errors')}"
                f"</p>{shown.to_html()}")


def compare(candidates: dict, challenge="challenge.toml", *, requests: int | None = None,
            progress: bool = False) -> Comparison:
    """Preview each named pipeline on the public seeds (as `preview` does) and put them side by side."""
    import pandas as pd  # ~75 MB resident: loaded when a comparison is made, not by `import lab.policy`

    ch = _challenge(challenge)
    rows = {}
    for name, pipeline in candidates.items():
        scored = preview(pipeline, ch, requests=requests, progress=progress)
        rows[name] = {**{k: scored.metrics[k] for k in COMPARE_COLUMNS}, "constraints_met": scored.constraints_met}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[*COMPARE_COLUMNS, "constraints_met"])
    return Comparison(table=table, target_pct=ch.goal.target_reduction_pct, challenge=ch.id)

