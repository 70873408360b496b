"""The sandbox's view when what a run needs lies inside a hidden folder: a checkout and its venv under /tmp.

Reviewers clone the repository into `mktemp -d`, so the checkout, the .venv inside it and the
scratch folder all lie under /tmp, which the sandbox hides. These tests build that layout under
pytest's tmp folder (itself under /tmp) and call the sandbox directly, so they check it from
any checkout. The expectations are the sandbox's own claims (lab/grading/sandbox.py and
_sandbox_setup.py docstrings): what the run needs is reachable, every mount is read-only except
the scratch folder and the private /tmp, and a mount that cannot be made so stops the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.grading import Limits, isolation_mode
from lab.grading.sandbox import run_isolated

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="sandbox tests need root and unshare")
#: Python itself, wherever this interpreter lives (as Grader.needed_paths passes them)
PYTHON = [sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent)]
#: for each name -> file: its text (or "missing") and what appending to it gave ("written" or the errno's name)
PROBE = r'''
import errno, json, sys
seen = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as e:
        text = errno.errorcode[e.errno]
    try:
        with open(path, "a") as fh:
            fh.write("x")
        wrote = "written"
    except OSError as e:
        wrote = errno.errorcode[e.errno]
    seen[name] = [text, wrote]
print("SEEN" + json.dumps(seen))
'''
#: run in its own mount namespace: a tmpfs inside the checkout, then the sandbox (argv: checkout, scratch, probe)
SUBMOUNT = r'''
import json, subprocess, sys
from pathlib import Path
from lab.grading import Limits
from lab.grading.sandbox import run_isolated
checkout, scratch, probe = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
data = checkout / "data"
data.mkdir()
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "costlab-test-data", str(data)], check=True)
(data / "table.csv").write_text("mounted")
targets = {"submount": str(data / "table.csv"), "scratch": str(scratch / "out.txt")}
r = run_isolated([sys.executable, "-I", "-S", "-c", probe, json.dumps(targets)], scratch=scratch,
                 logs=scratch.parent / "logs", env={"PATH": "/usr/bin:/bin"}, limits=Limits(timeout_s=60),
                 keep_visible=[sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent),
                               str(checkout)])
print(json.dumps({"returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr[-2000:],
                  "left": (data / "table.csv").read_text()}))
'''


@pytest.fixture
def checkout(tmp_path):
    """A checkout with a notebook and a venv inside it, and a scratch folder beside it, all under /tmp."""
    if isolation_mode() != "namespaces":
        pytest.skip("this machine gives no namespaces mode")
    repo = tmp_path / "checkout"
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "tool").write_text("venv")
    (repo / "notebooks").mkdir()
    (repo / "notebooks" / "lesson.ipynb").write_text("notebook")
    (tmp_path / "work" / "scratch").mkdir(parents=True)
    return repo


def seen(stdout: str) -> dict:
    return json.loads(stdout.split("SEEN", 1)[1].splitlines()[0])


def test_a_needed_path_inside_another_under_a_hidden_folder_is_reachable_and_read_only(checkout):
    # main's code bound the venv back, then the checkout over it: remounting the venv read-only failed (exit 97)
    scratch = checkout.parent / "work" / "scratch"
    venv = checkout / ".venv"
    targets = {"venv": str(venv / "bin" / "tool"), "notebook": str(checkout / "notebooks" / "lesson.ipynb"),
               "scratch": str(scratch / "out.txt")}
    r = run_isolated([sys.executable, "-I", "-S", "-c", PROBE, json.dumps(targets)], scratch=scratch,
                     logs=checkout.parent / "logs", env={"PATH": "/usr/bin:/bin"}, limits=Limits(timeout_s=60),
                     keep_visible=[*PYTHON, str(venv), str(venv / "bin"), str(checkout)])
    assert r.returncode == 0, r.stderr
    assert seen(r.stdout) == {"venv": ["venv", "EROFS"], "notebook": ["notebook", "EROFS"],
                              "scratch": ["ENOENT", "written"]}
    assert (scratch / "out.txt").read_text() == "x"


def test_a_mount_inside_a_needed_path_under_a_hidden_folder_comes_along_read_only(checkout):
    # main's code bound the checkout back without the mounts under it: the tmpfs's file was not there
    scratch = checkout.parent / "work" / "scratch"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SUBMOUNT,
                           str(checkout), str(scratch), PROBE], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["returncode"] == 0, result["stderr"]
    assert seen(result["stdout"]) == {"submount": ["mounted", "EROFS"], "scratch": ["ENOENT", "written"]}
    assert result["left"] == "mounted"
