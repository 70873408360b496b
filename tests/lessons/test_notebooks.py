"""The lesson notebooks: committed without outputs, in step with their jupytext sources (notebooks/NN_*.py,
challenges/*/template.py, written out by notebooks/sync.py), and every lesson runs top to bottom headless
(papermill, small parameters) with no error.

The notebooks run two at a time in subprocesses (`python lab/grading/_papermill.py`, papermill's
command line without its slow optional import), each with a kernelspec written into a temporary
JUPYTER_PATH that starts this very Python, so the kernel imports the costlab under test. A cell
that runs longer than CELL_TIMEOUT_S fails the run; the run time of every notebook is printed
(`pytest -s`) and written to the test's temporary folder as `notebook_times.json`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from lab.grading import SCORE_FORMULA, list_challenges
from lab.lessons import LESSONS

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT_S = 120
#: papermill parameters for CI: small runs (every notebook also runs with its own defaults)
CI_PARAMETERS = {"requests": 600, "seed": 0}
EXTRA_PARAMETERS = {"13": {"seeds": 2, "workers": 2}}
#: lessons that end with a dashboard (a widget output in the executed notebook)
WITH_DASHBOARD = {"00", "03", "05", "07", "08"}


def _notebook(path: Path):
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("number,filename,title", LESSONS)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell(number, filename, title):
    nb = _notebook(NOTEBOOKS / filename)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        f"{filename}: commit notebooks without outputs (python notebooks/sync.py)"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{filename}: expected one cell tagged 'parameters'"
    assert "requests =" in tagged[0].source and "seed =" in tagged[0].source
    first = nb.cells[0].source
    assert first.startswith(f"# {number} · {title}") and "After this lesson you can" in first
    text = "\n".join(c.source for c in nb.cells)
    # a lesson teaches: questions before experiments, and a self-check
    assert text.count("**Question:**") >= 2, f"{filename}: each experiment starts with a question"
    assert f'lessons.exercise("{number}")' in text and ".check(" in text


def test_notebooks_are_what_their_sources_generate():
    """Every lesson and challenge template has a py:percent source, and its committed .ipynb is what that writes."""
    missing = [f for _, f, _ in LESSONS if not (NOTEBOOKS / f).with_suffix(".py").is_file()]
    assert not missing, f"lessons without a .py source: {missing}"
    done = subprocess.run([sys.executable, str(NOTEBOOKS / "sync.py"), "--check"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cell_ids_come_from_the_cells_not_their_positions():
    """Inserting a cell changes no other cell's id; identical cells are told apart by a suffix."""
    spec = importlib.util.spec_from_file_location("notebook_sync", NOTEBOOKS / "sync.py")
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    cell_ids = sync.cell_ids
    cells = [nbformat.v4.new_markdown_cell("# a"), nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x")]
    before = cell_ids(cells)
    after = cell_ids([cells[0], nbformat.v4.new_code_cell("y = 2"), *cells[1:]])
    assert after[:1] + after[2:] == before and len(set(after)) == 4
    twice = cell_ids([cells[2], cells[2]])
    assert twice[1] == f"{twice[0]}-2"


def test_lessons_link_to_each_other_as_listed():
    """Lesson 00's table and every lesson's "Next:" link name the lessons as `lab.lessons.LESSONS` does."""
    first = "\n".join(c.source for c in _notebook(NOTEBOOKS / LESSONS[0][1]).cells)
    for number, filename, title in LESSONS:
        assert f"| {number} | [{title}]({filename}) |" in first, number
    for (number, filename, _), (next_number, next_file, next_title) in zip(LESSONS, LESSONS[1:]):
        last = _notebook(NOTEBOOKS / filename).cells[-1].source
        assert f"**Next:** [{next_number} · {next_title}]({next_file})" in last, number


def test_challenge_templates_state_their_challenge():
    """A template's goals, rules, hints and starter pipeline are those of its challenge.toml."""
    for ch in list_challenges(ROOT / "challenges"):
        nb = _notebook(ch.notebook_path)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        g = ch.goal
        stages = ", ".join(f"`{s}`" for s in ch.allowed_stages) or "any registered stage"
        facts = [f"# {ch.title}\n*{ch.level} challenge `{ch.id}`*", ch.summary, SCORE_FORMULA,
                 f"cut cost by at least **{g.target_reduction_pct:g} %**", f"p95 latency ≤ **{g.sla_p95_ms:,.0f} ms**",
                 f"quality_mean ≥ **{g.quality_floor:g}**", f"at most **{100 * g.error_budget:g} %**",
                 f"Stages allowed here: {stages}", *(f"{k}. {h}" for k, h in enumerate(ch.hints, 1))]
        assert not [f for f in facts if f not in text], (ch.id, [f for f in facts if f not in text])
        starter = next(c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("pipeline = "))
        scope: dict = {}
        exec(starter, scope)
        assert scope["pipeline"] == list(ch.starter_pipeline), ch.id


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run every lesson with papermill (two at a time); number -> (returncode, seconds, output path, log)."""
    from lab.grading.grader import KERNEL_NAME, write_kernelspec

    work = tmp_path_factory.mktemp("notebooks")
    write_kernelspec(work / "jupyter")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "JUPYTER_PATH")}
    env.update(JUPYTER_PATH=str(work / "jupyter"), JUPYTER_PLATFORM_DIRS="1", PYDEVD_DISABLE_FILE_VALIDATION="1",
               PYTHONPATH=str(ROOT), COSTLAB_STORE=str(work / "lab.db"))   # lesson 02 saves runs
    papermill = ROOT / "lab" / "grading" / "_papermill.py"

    def run(lesson):
        number, filename, _ = lesson
        out = work / filename
        params = {**CI_PARAMETERS, **EXTRA_PARAMETERS.get(number, {})}
        argv = [sys.executable, str(papermill), str(NOTEBOOKS / filename), str(out), "-k", KERNEL_NAME,
                "--cwd", str(NOTEBOOKS), "--execution-timeout", str(CELL_TIMEOUT_S), "--start-timeout", "60",
                "--no-progress-bar"]
        for key, value in params.items():
            argv += ["-p", key, str(value)]
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        return number, (done.returncode, time.perf_counter() - started, out, done.stderr[-3000:])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(run, LESSONS))
    total = time.perf_counter() - started
    times = {n: round(r[1], 1) for n, r in results.items()}
    (work / "notebook_times.json").write_text(json.dumps({"seconds": times, "total_wall_s": round(total, 1)}, indent=1))
    print("\nnotebook run times (s):", times, f"total wall {total:.1f} s (2 at a time)")
    return results


@pytest.mark.parametrize("number,filename,title", LESSONS)
def test_notebook_runs_headless(executed, number, filename, title):
    returncode, seconds, out, log = executed[number]
    assert returncode == 0, f"{filename} failed after {seconds:.1f} s:\n{log}"
    nb = _notebook(out)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{filename}: {errors[0].ename}: {errors[0].evalue}"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    questions = sum(c.source.count("**Question:**") for c in nb.cells if c.cell_type == "markdown")
    assert images >= questions, f"{filename}: {images} plots for {questions} questions (a plot after each experiment)"
    shown = " ".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert f"lesson {number} self-check" in shown, f"{filename}: the self-check's verdict is not shown"
    has_widget = any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert has_widget == (number in WITH_DASHBOARD)
