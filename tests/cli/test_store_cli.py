"""`costlab run --save`, `costlab runs [show|compare|export]` and `costlab class progress`.

Expected values come from the same runs made in Python: the exported ledger equals
`lab.simulate(...).ledger`, and the saved costs equal its summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import lab
from lab.cli import main
from lab.grading.store import Leaderboard, Submission
from lab.store import Store

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "support-chatbot.toml"


@pytest.fixture
def store_path(tmp_path, monkeypatch):
    path = tmp_path / "lab.db"
    monkeypatch.setenv("COSTLAB_STORE", str(path))
    monkeypatch.setenv("COSTLAB_OWNER", "ada")
    monkeypatch.setattr(lab.store, "_current", [])
    return path


def test_save_list_show_compare_export(store_path, tmp_path, capsys):
    for seed in (0, 1):
        assert main(["run", str(SCENARIO), "--requests", "400", "--seed", str(seed), "--save", "cache-sizing",
                     "--tag", "lru", "--note", "shipped cache"]) == 0
    assert "saved as run 2 in experiment 'cache-sizing'" in capsys.readouterr().out
    assert main(["runs", "--experiment", "cache-sizing", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    fresh = lab.simulate(lab.load_scenario(SCENARIO), seed=1, requests=400)
    assert [r["run_id"] for r in listed] == [1, 2] and listed[1]["cost_usd"] == fresh.summary()["cost_usd"]
    assert main(["runs"]) == 0
    assert "cache-sizing" in capsys.readouterr().out
    assert main(["runs", "--experiment", "nothing"]) == 0
    assert "no saved runs in experiment 'nothing'" in capsys.readouterr().out
    assert main(["runs", "show", "2"]) == 0
    shown = capsys.readouterr().out
    assert "experiment cache-sizing" in shown and "shipped cache" in shown and "2026-11-01" in shown
    assert main(["runs", "compare", "1", "2"]) == 0
    assert "run 2 vs run 1" in capsys.readouterr().out
    out = tmp_path / "ledger.parquet"
    assert main(["runs", "export", "2", "--ledger", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), fresh.ledger, check_exact=True)
    assert Store(store_path).row(2)["wall_s"] > 0


def test_errors_are_one_line(store_path, capsys):
    assert main(["runs", "show", "7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("costlab: error: store: no run 7") and err.count("\n") == 1
    assert main(["runs", "--store", str(store_path.parent / "missing-dir" / "x.db"), "compare", "a", "b"]) == 2
    assert "no runs in experiment 'a'" in capsys.readouterr().err


def test_class_progress_merges_the_leaderboard_in_the_same_database(store_path, capsys):
    store = Store(store_path)
    store.record_progress("lesson", "00", True, owner="ada")
    store.record_progress("lesson", "00", False, owner="bo")
    store.record_progress("challenge", "b1-first-cache", False, owner="bo")
    board = Leaderboard(store_path)
    board.record(Submission(challenge="b1-first-cache", student="bo", score=61.0, constraints_met=True,
                            passed=True, reason="ok"))
    board.record(Submission(challenge="b1-first-cache", student="cy", score=10.0, constraints_met=True,
                            passed=False, reason="low"))
    assert main(["class", "progress", "--json"]) == 0
    rows = {r["learner"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ada"]["lesson 00"] == "passed" and rows["bo"]["lesson 00"] == "tried"
    assert rows["bo"]["b1-first-cache"] == "passed" and rows["cy"]["b1-first-cache"] == "graded"
    assert main(["class", "progress"]) == 0
    assert "passed: b1-first-cache 1/3, lesson 00 1/3" in capsys.readouterr().out
