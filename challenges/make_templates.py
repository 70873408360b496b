"""Write each challenge's `template.ipynb` from its `challenge.toml` (no outputs; a `parameters` cell).

    python challenges/make_templates.py          # rewrite every template
    python challenges/make_templates.py --check  # exit 1 if a template is out of date (CI)

Templates are generated so that every challenge's notebook has the same shape and the
papermill parameters the grader sets (`challenge_path`, `policy_path`, `preview_requests`,
`grading`) can never drift from `lab.grading.grader`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from lab.grading import SCORE_FORMULA, list_challenges  # noqa: E402


def _md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip())


def _code(text: str, tags=()):
    cell = nbformat.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _pipeline_literal(pipeline) -> str:
    if not pipeline:
        return "pipeline = []"
    items = ",\n".join(f"    {json.dumps(stage)}" for stage in pipeline)
    return f"pipeline = [\n{items},\n]".replace("true", "True").replace("false", "False")


def template(ch) -> nbformat.NotebookNode:
    g = ch.goal
    stages = ", ".join(f"`{s}`" for s in ch.allowed_stages) or "any registered stage (`lab.stages.stage_names()`)"
    hints = "\n".join(f"{k}. {h}" for k, h in enumerate(ch.hints, 1))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        _md(f"""
# {ch.title}
*{ch.level} challenge `{ch.id}`*

{ch.summary}

| goal | on every private seed |
|---|---|
| target | cut cost by at least **{g.target_reduction_pct:g} %** |
| SLA | p95 latency ≤ **{g.sla_p95_ms:,.0f} ms** |
| quality floor | quality_mean ≥ **{g.quality_floor:g}** |
| error budget | at most **{100 * g.error_budget:g} %** of requests failed |

**How you are graded.** You hand in a *policy*: the pipeline of stages and their parameters,
written by `lab.policy.submit`. The grader re-runs this notebook, reads only that policy and
simulates it itself on **private seeds** (different traffic from the public seeds below). Numbers
printed here are for you; they are not used. {SCORE_FORMULA}

Stages allowed here: {stages}. Their fields are documented in `scenarios/README.md`.
"""),
        _code("""
# Parameters (papermill): the grader replaces these values. Keep this cell tagged "parameters".
challenge_path = "challenge.toml"   # this challenge's spec
policy_path = "policy.json"         # where lab.policy.submit writes your policy
preview_requests = None             # None: the challenge's own size; the grader uses a small number
grading = False                     # True while the grader runs this notebook
""", tags=["parameters"]),
        _code("""
import matplotlib.pyplot as plt
import pandas as pd

import lab.policy
from lab.grading import load_challenge

challenge = load_challenge(challenge_path)
challenge
"""),
        _md("""
## 1. The baseline
*Question:* with no optimization at all, which constraint fails, and by how much? Guess before you run.
"""),
        _code("""
baseline = lab.policy.preview([], challenge, requests=preview_requests, progress=False)
baseline
"""),
        _md("""
## 2. Your policy
Edit the pipeline: stages act in the order listed. `preview` scores it on the public seeds
exactly as the grader will on the private ones.
"""),
        _code(_pipeline_literal(ch.starter_pipeline)),
        _code("""
result = lab.policy.preview(pipeline, challenge, requests=preview_requests, progress=False)
result
"""),
        _md("""
## 3. Explore
*Try it:* add candidates below and compare them. Which one is closest to the target while keeping
a margin on every constraint? (Skipped while grading, to keep the grader fast.)
"""),
        _code("""
candidates = {"mine": pipeline, "none": []}
# candidates["bigger"] = [{"stage": "cache", "capacity": 5000}]

if not grading:
    rows = {name: lab.policy.preview(p, challenge, requests=preview_requests, progress=False).metrics
            for name, p in candidates.items()}
    table = pd.DataFrame(rows).T[["score", "reduction_pct", "p95_ms", "quality_min", "error_rate_max"]]
    ax = table["reduction_pct"].plot.barh(title="cost reduction on the public seeds (%)")
    ax.axvline(challenge.goal.target_reduction_pct, color="k", linestyle="--", label="target")
    ax.legend()
    plt.show()
    display(table)
"""),
        _md(f"""
<details><summary><b>Hints</b> (open when stuck)</summary>

{hints}
</details>
"""),
        _md("""
## 4. Submit
*Self-check:* the policy is validated against this challenge's rules before it is written; a typo
fails here, not at grading time. Hand in this notebook (the grader writes to `policy_path`).
"""),
        _code("""
policy = lab.policy.submit(pipeline, path=policy_path, challenge=challenge)
if not result.constraints_met:
    print("warning: this policy breaks a constraint on the public seeds; it would probably score 0")
policy
"""),
    ]
    for k, cell in enumerate(nb.cells):       # stable ids, so regenerating changes nothing
        cell.id = f"{ch.id[:50]}-{k:02d}"
    return nb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if a template differs from what would be written")
    args = p.parse_args(argv)
    stale = []
    for ch in list_challenges(HERE):
        text = nbformat.writes(template(ch)) + "\n"
        path = ch.notebook_path
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python challenges/make_templates.py):\n  " + "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
