"""A sandbox the grader cannot set up (exit 97, fail closed) is the grader's failure, not the learner's:
the result says so with status "error", nothing is recorded and the day's submission slot stays free."""

from __future__ import annotations

import nbformat
import pytest

import lab.grading.grader as grader_module
from lab.grading.grader import Grader
from lab.grading.private import PrivateDir
from lab.grading.sandbox import SETUP_FAILED, SandboxRun
from lab.grading.store import Leaderboard

CHALLENGE = "b1-first-cache"


@pytest.fixture
def setup(tmp_path, monkeypatch):
    private = tmp_path / "private"
    PrivateDir(private).init([CHALLENGE], seeds_per_challenge=1)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('hello')")]
    path = tmp_path / "alice.ipynb"
    nbformat.write(nb, path)
    return private, path


def _run_returning(code: int, mode: str):
    def fake_run(argv, **kwargs):
        return SandboxRun(returncode=code, timed_out=False, seconds=0.01, mode=mode, isolation={"mode": mode},
                          stderr="costlab sandbox: 'mount --rbind /x /y' failed: permission denied; not running "
                                 "the notebook\n")
    return fake_run


def test_a_sandbox_that_cannot_be_set_up_is_not_a_graded_zero(setup, monkeypatch):
    private, path = setup
    monkeypatch.setattr(grader_module, "run_isolated", _run_returning(SETUP_FAILED, "namespaces"))
    grader = Grader(CHALLENGE, private_dir=private, daily_limit=1)
    for _ in range(3):                 # more than the daily limit: none of them used the slot
        r = grader.grade(path, "alice")
        assert r.status == "error" and not r.submission_id
        assert "sandbox could not be set up" in r.reason and "permission denied" in r.reason
    assert Leaderboard(private / "leaderboard.db").submissions(CHALLENGE).empty


def test_exit_97_of_an_unisolated_run_is_the_notebooks_own(setup, monkeypatch):
    """With `--isolation process` no setup step runs, so an exit status of 97 came from the run itself."""
    private, path = setup
    monkeypatch.setattr(grader_module, "run_isolated", _run_returning(SETUP_FAILED, "process"))
    r = Grader(CHALLENGE, private_dir=private, daily_limit=1).grade(path, "alice")
    assert r.status == "graded" and r.score == 0.0 and "papermill failed (exit 97)" in r.reason
    assert len(Leaderboard(private / "leaderboard.db").submissions(CHALLENGE, "alice")) == 1
