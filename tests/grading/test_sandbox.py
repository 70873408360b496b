"""The grader end to end: real papermill runs in the sandbox, a good submission and every hostile case.

One module fixture grades alice's good notebook with `costlab grade`, then a folder of hostile
and broken notebooks (student "mallory") plus a spy (student "eve") with `grade-all` in two
parallel processes, against a private folder and SQLite leaderboard in tmp. Each papermill run
takes ~3-6 s here; the infinite loop takes the 15 s timeout. The tests then read the results.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from lab.grading import Leaderboard, Limits, PrivateDir, isolation_mode
from lab.grading.batch import grade_all
from lab.grading.grader import KILL_GRACE_S, Grader

CHALLENGE = "b1-first-cache"
TIMEOUT_S = 15.0
GOOD = '''
import lab.policy
pipeline = [{"stage": "cache", "shared": True}]
print(lab.policy.preview(pipeline, challenge_path, requests=preview_requests, progress=False).score)
lab.policy.submit(pipeline, path=policy_path, challenge=challenge_path)
'''


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('challenge_path = "challenge.toml"\npolicy_path = "policy.json"\n'
                                       'preview_requests = None\ngrading = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c.strip()) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def hostile_cases(private: Path, db_file: Path, port: int, out: Path) -> dict[str, tuple[str, str]]:
    """case -> (notebook code, regex the reason must match)."""
    fake_json = out / "mallory.fake_result.grade.json"
    return {
        "exception": ('raise ValueError("boom")', r"raised ValueError: boom"),
        "sys_exit": ('import sys, json\nsys.exit(3)\njson.dump({"pipeline": []}, open(policy_path, "w"))',
                     r"called sys.exit\(3\)"),
        "infinite_loop": ("while True:\n    pass", rf"ran longer than the {TIMEOUT_S:g} s limit"),
        "memory_bomb": ("hog = bytearray(8 * 2**30)", r"ran out of memory"),     # 8 GiB against a 2 GiB limit
        "no_policy": ('print("all done, score: 100")', r"^no policy"),
        "invalid_policy": ('import json\njson.dump({"pipeline": [{"stage": "cache", "capacity": "big"}]}, '
                           'open(policy_path, "w"))', r"pipeline\[0\].capacity: expected a whole number"),
        "unknown_stage": ('import json\njson.dump({"pipeline": [{"stage": "free_lunch"}]}, open(policy_path, "w"))',
                          r"unknown stage 'free_lunch'"),
        "unknown_model": ('import json\njson.dump({"pipeline": [{"stage": "cache"}], "model": "gpt-9-ultra"}, '
                          'open(policy_path, "w"))', r"unknown model 'gpt-9-ultra'"),
        "network": (f'import socket\nsocket.create_connection(("127.0.0.1", {port}), timeout=3)',
                    r"raised (ConnectionRefusedError|OSError)"),
        "fake_result": (f'''
import json, os
fake = {{"status": "graded", "score": 100.0, "constraints_met": True, "metrics": {{}}, "reason": "trust me"}}
for p in ["result.json", os.path.join(os.path.dirname(policy_path), "result.json"), {str(fake_json)!r}]:
    try:
        json.dump(fake, open(p, "w"))
    except OSError as e:
        print("could not write", p, e)
print("SCORE: 100")''', r"^no policy"),
        "write_db": (f'import sqlite3\ncon = sqlite3.connect({str(db_file)!r})\n'
                     'con.execute("delete from costlab_submissions")\ncon.commit()',
                     r"raised OperationalError: unable to open database file"),
        "symlink_policy": (f'import os\nos.symlink({str(private / "seeds.toml")!r}, policy_path)',
                           r"symlinks are refused"),
        "not_a_notebook": ("", r"not a Jupyter notebook"),
    }


SPY = '''
import json, os, resource
seen = {"env": sorted(os.environ), "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0]}
try:
    seen["private"] = os.listdir(PRIVATE)
except OSError as e:
    seen["private"] = str(e)
try:
    open(os.path.join(PRIVATE, "x"), "w")
    seen["private_writable"] = True
except OSError:
    seen["private_writable"] = False
try:
    seen["others"] = os.listdir(OTHERS)
except OSError as e:
    seen["others"] = str(e)
seen["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
try:
    open(REPO_FILE, "a")
    seen["repo_writable"] = True
except OSError:
    seen["repo_writable"] = False
print("SPY" + json.dumps(seen))
'''


class Listener:
    """A TCP service on the host's loopback: the sandboxed notebook must not reach it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = Path(__file__).resolve().parents[2]
    base = tmp_path_factory.mktemp("class")
    private = base / "private"
    seeds = PrivateDir(private).init([CHALLENGE], seeds_per_challenge=3)[CHALLENGE]
    db_file = private / "leaderboard.db"
    subs, out = base / "submissions", base / "graded"
    listener = Listener()
    limits = dict(timeout_s=TIMEOUT_S, memory_mb=2048)

    # alice, through the command line
    alice_nb = notebook(base / "alice" / "alice.ipynb", GOOD)
    from lab.cli import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["grade", str(alice_nb), "--challenge", CHALLENGE, "--student", "alice", "--private-dir",
                     str(private), "--json", str(base / "alice" / "result.json"), "--timeout-s", str(TIMEOUT_S),
                     "--daily-limit", "0"])
    alice_rows = Leaderboard(db_file).submissions(CHALLENGE).to_dict("records")

    cases = hostile_cases(private, db_file, listener.port, out)
    for name, (code_text, _) in cases.items():
        path = subs / "mallory" / f"{name}.ipynb"
        if name == "not_a_notebook":
            path.write_text("{ this is not json")
        else:
            notebook(path, code_text)
    notebook(subs / "eve" / "spy.ipynb", f"PRIVATE = {str(private)!r}\nREPO_FILE = {str(root / 'README.md')!r}\n"
             f"OTHERS = {str(subs / 'mallory')!r}", SPY, GOOD)
    results = grade_all(subs, CHALLENGE, out=out, workers=2, progress=False, private_dir=private,
                        limits=Limits(**limits), daily_limit=0)
    by_case = {Path(r["submission"]).stem: r for r in results}
    yield {"base": base, "private": private, "seeds": seeds, "db_file": db_file, "out": out, "subs": subs,
           "alice_code": code, "alice_stdout": stdout.getvalue(), "alice_rows": alice_rows, "alice_nb": alice_nb,
           "results": results, "by_case": by_case, "cases": cases, "listener": listener}
    listener.sock.close()


def test_good_submission_scores_and_ranks(graded):
    alice = json.loads((graded["base"] / "alice" / "result.json").read_text())
    assert graded["alice_code"] == 0
    assert alice["status"] == "graded" and alice["constraints_met"] and alice["passed"]
    assert alice["score"] > 55 and alice["score"] == pytest.approx(alice["metrics"]["reduction_pct"], abs=0.01)
    assert set(alice) >= {"score", "constraints_met", "metrics", "reason"}
    assert alice["metrics"]["seeds"] == 3 and alice["public"]["score"] > 55
    executed = nbformat.read(graded["base"] / "alice" / "alice.graded.ipynb", as_version=4)
    assert "costlab-grade" in executed.cells[-1].metadata.get("tags", [])
    standings = Leaderboard(graded["db_file"]).standings(CHALLENGE, "private")
    assert standings.iloc[0]["student"] == "alice" and standings.iloc[0]["score"] == alice["score"]


def test_every_hostile_case_scores_zero_with_its_reason_within_the_timeout(graded):
    mode = isolation_mode()
    for name, (_, pattern) in graded["cases"].items():
        r = graded["by_case"][name]
        if name in ("network", "write_db") and mode == "process":
            continue                      # no namespaces on this machine: the result says isolation "process"
        assert r["status"] == "graded", (name, r["reason"])
        assert r["score"] == 0.0 and not r["constraints_met"], name
        assert __import__("re").search(pattern, r["reason"]), (name, r["reason"])
        assert r["timing_s"]["total"] < TIMEOUT_S + KILL_GRACE_S + 15, (name, r["timing_s"])


def test_hostile_cases_leave_the_leaderboard_correct(graded):
    if isolation_mode() == "process":
        pytest.skip("without namespaces a notebook can reach the database file (documented in the README)")
    store = Leaderboard(graded["db_file"])
    subs = store.submissions(CHALLENGE)
    mallory = subs[subs.student == "mallory"]
    assert len(mallory) == len(graded["cases"]) and (mallory.score == 0).all()
    alice_now = subs[subs.student == "alice"].to_dict("records")
    assert alice_now == graded["alice_rows"]                     # untouched, although write_db tried
    standings = store.standings(CHALLENGE, "private").set_index("student")
    assert standings.loc["alice", "rank"] == 1 and standings.loc["mallory", "score"] == 0.0
    assert standings.loc["eve", "score"] > 55                    # the spy submitted a real policy
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_fake_result_file_is_overwritten_by_the_grader(graded):
    fake = json.loads((graded["out"] / "mallory.fake_result.grade.json").read_text())
    assert fake["score"] == 0.0 and fake["reason"].startswith("no policy")


def test_network_is_unreachable(graded):
    if isolation_mode() == "process":
        pytest.skip("no network namespace on this machine (the grade result says isolation: process)")
    assert graded["listener"].accepted == 0
    assert graded["by_case"]["network"]["isolation"]["mode"] in ("namespaces", "user-namespaces")


def test_the_sandbox_hides_private_files_and_scrubs_the_environment(graded):
    executed = nbformat.read(graded["out"] / "eve.spy.graded.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    seen = json.loads(text.split("SPY", 1)[1].splitlines()[0])
    assert not any(k.startswith(("COSTLAB_PRIVATE", "COSTLAB_TEST", "OPENAI", "ANTHROPIC", "GEMINI"))
                   for k in seen["env"])
    assert seen["rlimit_as"] == 2048 * 2**20                     # the kernel inherited the memory limit
    if isolation_mode() != "process":
        # the private folder is under /tmp here, which the sandbox replaces by its own: not even its name is left
        assert (seen["private"] == [] or "No such file" in seen["private"]) and seen["private_writable"] is False
        assert seen["others"] == [] or "No such file" in seen["others"]   # other learners' notebooks: hidden
        assert seen["repo_writable"] is False
        assert max(seen["pids"]) < 100                          # its own PID namespace


def test_private_seeds_never_reach_learner_visible_files_or_output(graded):
    seeds = [str(s) for s in graded["seeds"]]
    visible = [graded["alice_stdout"], json.dumps(graded["results"])]
    for folder in (graded["out"], graded["base"] / "alice", graded["subs"]):
        visible += [p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()]
    assert len(visible) > 20
    for seed in seeds:
        assert all(seed not in text for text in visible), seed


def test_daily_limit_rejects_without_running(graded):
    # the clock stands at alice's first submission, so the check cannot cross a UTC midnight (CI once did)
    first = datetime.fromisoformat(graded["alice_rows"][0]["submitted_at"])
    grader = Grader(CHALLENGE, private_dir=graded["private"], daily_limit=1, clock=lambda: first)
    r = grader.grade(graded["alice_nb"], "alice")
    assert r.status == "rejected" and "daily limit" in r.reason and "notebook" not in r.timing_s
    assert len(Leaderboard(graded["db_file"]).submissions(CHALLENGE, "alice")) == 1
    # the count is per UTC day: the next day starts from zero
    board = Leaderboard(graded["db_file"])
    assert board.submissions_today(CHALLENGE, "alice", now=first) == 1
    assert board.submissions_today(CHALLENGE, "alice", now=first + timedelta(days=1)) == 0
