"""The lesson notebooks: committed without outputs, in step with notebooks/build.py, and every one
runs top to bottom headless (papermill, small parameters) with no error.

The notebooks run two at a time in subprocesses (`python lab/grading/_papermill.py`, papermill's
command line without its slow optional import), each with a kernelspec written into a temporary
JUPYTER_PATH that starts this very Python, so the kernel imports the costlab under test. A cell
that runs longer than CELL_TIMEOUT_S fails the run; the run time of every notebook is printed
(`pytest -s`) and written to the test's temporary folder as `notebook_times.json`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from lab.lessons import LESSONS

ROOT = Path(__file__).resolve().parents[1]
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
        f"{filename}: commit notebooks without outputs (python notebooks/build.py)"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{filename}: expected one cell tagged 'parameters'"
    assert "requests =" in tagged[0].source and "seed =" in tagged[0].source
    first = nb.cells[0].source
    assert first.startswith(f"# {number} · {title}") and "After this lesson you can" in first
    text = "\n".join(c.source for c in nb.cells)
    # a lesson teaches: questions before experiments, and a self-check
    assert text.count("**Question:**") >= 2, f"{filename}: each experiment starts with a question"
    assert f'lessons.exercise("{number}")' in text and ".check(" in text


def test_notebooks_are_what_build_py_writes():
    done = subprocess.run([sys.executable, str(NOTEBOOKS / "build.py"), "--check"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run every lesson with papermill (two at a time); number -> (returncode, seconds, output path, log)."""
    from lab.grading.grader import KERNEL_NAME, write_kernelspec

    work = tmp_path_factory.mktemp("notebooks")
    write_kernelspec(work / "jupyter")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "JUPYTER_PATH")}
    env.update(JUPYTER_PATH=str(work / "jupyter"), JUPYTER_PLATFORM_DIRS="1", PYDEVD_DISABLE_FILE_VALIDATION="1",
               PYTHONPATH=str(ROOT))
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
