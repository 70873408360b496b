"""The grader: run a learner's notebook in a sandbox, then score its policy with grader-owned code.

`grade(...)` does, in order:

1. checks the daily limit (a rejection costs no notebook run);
2. copies the notebook into a fresh scratch folder and runs it with papermill in a sandbox
   (`lab.grading.sandbox`: no network, private folders hidden, read-only filesystem except
   scratch, scrubbed environment, timeout, memory limit), with a kernelspec written for this
   run that starts `sys.executable -m ipykernel_launcher` (the grader's own Python, so the
   kernel always has the grader's costlab);
3. papermill passes `policy_path` (where `lab.policy.submit` must write the policy),
   `challenge_path` and `grading = True`; nothing private;
4. reads only the policy file back (a regular file, no symlinks, size-capped), validates it
   and simulates it on the private seeds and on the public seeds in this process. Numbers
   the notebook printed are never read;
5. records the submission in the leaderboard, writes the executed notebook (with a grade
   cell appended) and the JSON result.

A broken or hostile notebook scores 0 with a reason. Only a failure of grading itself
(a missing private seed file, an unreachable database) raises.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from lab.errors import ConfigError
from lab.files import write_bytes_atomic
from lab.fmt import html_text, plain_text
from lab.grading.challenge import SCORE_FORMULA, Challenge, challenges_root, load_challenge
from lab.grading.evaluate import evaluate
from lab.grading.learners import normalize_learner
from lab.grading.policy_schema import MAX_POLICY_BYTES, PolicyError, no_policy_message, parse_policy_bytes
from lab.grading.private import PrivateDir
from lab.grading.sandbox import Limits, covers, run_isolated
from lab.grading.store import Leaderboard, Submission, SubmissionLimitReached

KERNEL_NAME = "costlab-grader"
MAX_NOTEBOOK_BYTES = 20 * 2**20
PREVIEW_REQUESTS = 2000
MAX_REASON_CHARS = 400      # a reason is one line: learner text in it is escaped and cut to this
KILL_GRACE_S = 20.0          # after the cell timeout, the whole sandbox is killed this much later
#: folders of database servers' unix sockets (a network namespace does not cover them)
SOCKET_DIRS = ("/run/postgresql", "/var/run/postgresql", "/run/mysqld", "/var/run/mysqld")
#: environment variables passed into the sandbox when set (numeric-library safety switches)
PASS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LANG", "LC_ALL", "TZ")


@dataclass
class GradeResult:
    """The grader's verdict; `as_dict()` is the JSON result."""

    status: str                  # "graded" | "rejected"
    challenge: str
    student: str
    score: float
    constraints_met: bool
    passed: bool
    reason: str
    metrics: dict = field(default_factory=dict)
    constraints: dict = field(default_factory=dict)
    badges: list[str] = field(default_factory=list)
    public: dict = field(default_factory=dict)
    pseudonym: str | None = None
    isolation: dict = field(default_factory=dict)
    timing_s: dict = field(default_factory=dict)
    submission_id: str = ""
    notebook_sha256: str = ""
    executed_notebook: str | None = None

    def as_dict(self) -> dict:
        return {"status": self.status, "challenge": self.challenge, "student": self.student,
                "pseudonym": self.pseudonym, "score": self.score, "constraints_met": self.constraints_met,
                "passed": self.passed, "reason": self.reason, "metrics": self.metrics,
                "constraints": self.constraints, "badges": self.badges, "public": self.public,
                "score_formula": SCORE_FORMULA, "isolation": self.isolation, "timing_s": self.timing_s,
                "submission_id": self.submission_id, "notebook_sha256": self.notebook_sha256,
                "executed_notebook": self.executed_notebook}

    def _repr_html_(self) -> str:
        return (f"<b>{html_text(self.challenge)}</b> · {html_text(self.pseudonym or self.student)}: "
                f"score <b>{self.score:.2f}</b> ({html_text(self.status)}) — {html_text(self.reason)}")


# --------------------------------------------------------------------------- helpers


def read_untrusted(path: Path, max_bytes: int) -> bytes:
    """Read a file the sandbox may have planted: a regular file, no symlink, no FIFO, size-capped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise PolicyError(f"{path.name}: cannot be read safely ({exc.strerror}; symlinks are refused)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PolicyError(f"{path.name}: not a regular file")
        if info.st_size > max_bytes:
            raise PolicyError(f"{path.name}: {info.st_size:,} bytes, over the {max_bytes:,}-byte limit")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)


def write_kernelspec(jupyter_path: Path) -> None:
    """A kernelspec named KERNEL_NAME that starts this very Python (so the venv's costlab is found)."""
    spec = jupyter_path / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "costlab grader (Python 3)", "language": "python",
        "metadata": {"debugger": False}}))


def _sandbox_env(scratch: Path) -> dict:
    """Nothing inherited: no API keys, no private paths, no database URLs."""
    lab_root = str(Path(__file__).resolve().parents[2])
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scratch / "home"), "TMPDIR": str(scratch / "tmp"),
        "JUPYTER_PATH": str(scratch / "jupyter"), "JUPYTER_DATA_DIR": str(scratch / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"), "JUPYTER_CONFIG_DIR": str(scratch / "jupyter-config"),
        "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": str(scratch / "ipython"), "MPLCONFIGDIR": str(scratch / "mpl"),
        "MPLBACKEND": "Agg", "PYTHONPATH": lab_root, "PYTHONDONTWRITEBYTECODE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1", "COSTLAB_GRADING": "1", "LANG": "C.UTF-8",
    }
    env.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
    for sub in ("home", "tmp", "runtime", "jupyter-config", "ipython", "mpl", "work"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    return env


def _first_error(nb) -> tuple[str, str] | None:
    for cell in getattr(nb, "cells", []):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if out.get("output_type") == "error":
                return str(out.get("ename", "Error")), str(out.get("evalue", ""))
    return None


def _notebook_failure(run, nb, limits: Limits) -> str | None:
    """Why the notebook run failed, in one line, or None if it ran to the end."""
    timeout_s = limits.timeout_s
    if run.timed_out:
        return f"the notebook did not finish within the {timeout_s:g} s limit (killed)"
    if run.returncode == 0:
        return None
    err = _first_error(nb) if nb is not None else None
    log = run.stderr.strip().splitlines()
    if "CellTimeoutError" in run.stderr:
        return f"a cell ran longer than the {timeout_s:g} s limit (stopped)"
    if "DeadKernelError" in run.stderr:
        return "the kernel died (memory limit, os._exit or a crash) before the notebook finished"
    if err:
        ename, evalue = err
        if ename == "CellTimeoutError" or "Cell execution timed out" in evalue:
            return f"a cell ran longer than the {timeout_s:g} s limit (stopped)"
        if ename == "MemoryError":
            return f"the notebook ran out of memory (MemoryError; the limit is {limits.memory_mb:,} MB)"
        if ename == "SystemExit":
            return f"the notebook called sys.exit({evalue})"
        return f"the notebook raised {ename}: {evalue}"[:400]
    tail = " ".join(log[-3:])
    if "DeadKernelError" in tail or "Kernel died" in tail:
        return "the kernel died (memory limit, os._exit or a crash) before the notebook finished"
    if "CellTimeoutError" in tail or "timed out" in tail.lower():
        return f"a cell ran longer than the {timeout_s:g} s limit (stopped)"
    if run.returncode and run.returncode < 0:
        return f"the notebook run was killed by signal {-run.returncode} (memory limit?)"
    return f"papermill failed (exit {run.returncode}): {tail[-300:] or 'no output'}"


def _summary_cell(result: GradeResult):
    import nbformat  # loads jsonschema (seconds): only when a notebook is read or written

    m = result.metrics
    lines = [f"## costlab grader · {result.challenge}",
             f"**score {result.score:.2f}** ({result.status}) — {result.reason}", ""]
    if m:
        lines += [f"- reduction (mean over {m.get('seeds')} private seeds): {m.get('reduction_pct', 0):.2f} %",
                  f"- p95 latency, worst seed: {m.get('p95_ms', 0):,.0f} ms",
                  f"- quality_mean, worst seed: {m.get('quality_min', 0):.4f}",
                  f"- failed share, worst seed: {m.get('error_rate_max', 0):.4f}"]
    if result.badges:
        lines.append(f"- badges: {', '.join(result.badges)}")
    lines.append(f"\n_Scored by the grader's own simulation; numbers printed above were not used. {SCORE_FORMULA}_")
    return nbformat.v4.new_markdown_cell("\n".join(lines), metadata={"tags": ["costlab-grade"]})


# --------------------------------------------------------------------------- grading


class Grader:
    """Grades submissions for one challenge against one private folder and leaderboard."""

    def __init__(self, challenge: Challenge | str, *, private_dir: str | Path | None = None,
                 db: str | Path | Leaderboard | None = None, limits: Limits | None = None,
                 isolation: str = "auto", daily_limit: int | None = None, keep_scratch: bool = False,
                 record: bool = True, hide: tuple = (), clock=None):
        self.challenge = challenge if isinstance(challenge, Challenge) else load_challenge(challenge)
        self.private = PrivateDir.locate(private_dir)
        self.private.ensure_outside(challenges_root().parent, self.challenge.folder)
        self.private_seeds = self.private.seeds(self.challenge.id)
        if isinstance(db, Leaderboard):
            self.store = db
        else:
            self.store = Leaderboard(db or self.private.default_db_url) if record else None
        self.limits = limits or Limits()
        self.isolation = isolation
        self.daily_limit = self.challenge.daily_submissions if daily_limit is None else daily_limit
        self.keep_scratch = keep_scratch
        self.hide = tuple(str(h) for h in hide)      # more folders notebooks must not see (all submissions)
        # when a submission arrives (an aware datetime): its UTC day is the one the daily limit counts
        self.clock = clock or (lambda: datetime.now(UTC))
        self._check_secrets_hideable()

    def secret_folders(self) -> list[str]:
        """What the notebook must never see: the private folder, the SQLite database's folder and
        the folder of any Unix socket the database URL names (`?host=/dir` or `host=/dir` in it)."""
        hide = [str(self.private.path)]
        if self.store is None:
            return hide
        url = sa.engine.make_url(self.store.url)
        if self.store.dialect == "sqlite":
            if url.database and url.database != ":memory:":
                hide.append(str(Path(url.database).resolve().parent))
            return hide
        hosts = [url.host or "", *(v for k, v in url.query.items() if k in ("host", "unix_socket", "hostaddr"))]
        for host in hosts:
            for h in ([host] if isinstance(host, str) else host):
                for part in str(h).split(","):
                    if part.startswith("/"):
                        folder = Path(part)
                        hide.append(str((folder if folder.is_dir() else folder.parent).resolve()))
        return hide

    def needed_paths(self) -> list[str]:
        """What the notebook's run must see: Python, costlab, the challenge and its scenario, temp space."""
        return [sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent),
                str(Path(__file__).resolve().parents[2]), str(self.challenge.folder),
                str(Path(self.challenge.scenario_path).parent)]

    def _check_secrets_hideable(self) -> None:
        for secret in self.secret_folders():
            for needed in self.needed_paths():
                if covers(secret, needed):
                    raise ConfigError(f"{secret} holds private files but also {needed}, which a notebook needs: "
                                      "put the private folder and the database in a folder of their own")

    def grade(self, submission: str | Path, student: str, *, output: str | Path | None = None,
              json_path: str | Path | None = None) -> GradeResult:
        start = time.perf_counter()
        self._submitted_at = self.clock()       # one instant: the day checked is the day recorded
        ch = self.challenge
        student = normalize_learner(student)
        submission = Path(submission)
        base = GradeResult(status="graded", challenge=ch.id, student=student, score=0.0, constraints_met=False,
                           passed=False, reason="")
        if self.store is not None and self.daily_limit:
            used = self.store.submissions_today(ch.id, student, now=self._submitted_at)
            if used >= self.daily_limit:
                base.status = "rejected"
                base.reason = (f"daily limit reached: {used} of {self.daily_limit} submissions for {ch.id} "
                               "today (UTC); not graded, not recorded")
                base.pseudonym = self.store.pseudonym(student)
                return self._finish(base, None, json_path, start)
        data = read_untrusted(submission, MAX_NOTEBOOK_BYTES)
        base.notebook_sha256 = hashlib.sha256(data).hexdigest()
        executed = None
        try:
            import nbformat  # loads jsonschema (seconds): only when a notebook is read or written

            submitted = nbformat.reads(data.decode("utf-8"), as_version=4)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the submission's fault
            base.reason = f"not a Jupyter notebook ({type(exc).__name__}: {str(exc)[:200]})"
            base.isolation = {"mode": "not run", "notes": ["the submission is not a notebook: nothing was executed"]}
        else:
            # other learners' notebooks and results stay out of sight too
            learner_folders = {str(submission.resolve().parent), *self.hide} | {
                str(Path(p).resolve().parent) for p in (output, json_path) if p}
            executed = self._run_and_score(base, data, sorted(learner_folders)) or submitted
        return self._finish(base, executed, json_path, start, output)

    def _run_and_score(self, result: GradeResult, notebook: bytes, learner_folders=()):
        import nbformat  # loads jsonschema (seconds): only when a notebook is read or written

        work = Path(tempfile.mkdtemp(prefix="costlab-grade-"))
        try:
            scratch, logs = work / "scratch", work / "logs"
            scratch.mkdir()
            env = _sandbox_env(scratch)
            write_kernelspec(scratch / "jupyter")
            (scratch / "submission.ipynb").write_bytes(notebook)
            policy_path = scratch / "policy.json"
            params = {"policy_path": str(policy_path), "challenge_path": str(self.challenge.path),
                      "preview_requests": PREVIEW_REQUESTS, "grading": True}
            (scratch / "params.json").write_text(json.dumps(params))
            cell_timeout = max(1, int(self.limits.timeout_s))     # a runaway cell: papermill stops it
            argv = [sys.executable, str(Path(__file__).with_name("_papermill.py")), str(scratch / "submission.ipynb"), str(scratch / "executed.ipynb"),
                    "-k", KERNEL_NAME, "-f", str(scratch / "params.json"), "--cwd", str(scratch / "work"),
                    "--execution-timeout", str(cell_timeout), "--start-timeout", "60", "--no-progress-bar",
                    "--log-level", "WARNING"]
            t0 = time.perf_counter()
            outer = dataclasses.replace(self.limits, timeout_s=self.limits.timeout_s + KILL_GRACE_S)
            hide = [*self.secret_folders(), *(d for d in SOCKET_DIRS if Path(d).is_dir()), *learner_folders]
            run = run_isolated(argv, scratch=scratch, logs=logs, env=env, limits=outer, hide=hide,
                               keep_visible=self.needed_paths(), mode=self.isolation)
            result.timing_s["notebook"] = round(time.perf_counter() - t0, 3)
            result.isolation = {**run.isolation, "timeout_s": self.limits.timeout_s,
                                "memory_mb": self.limits.memory_mb, "notes": run.notes}
            executed = None
            try:
                executed = nbformat.reads(read_untrusted(scratch / "executed.ipynb", MAX_NOTEBOOK_BYTES * 2)
                                          .decode("utf-8"), as_version=4)
            except Exception:  # noqa: BLE001 - missing, planted or unreadable: we fall back to the input
                executed = None
            if run.setup_failed:
                # the grader's failure, not the notebook's: nothing ran, nothing is recorded, no daily slot used
                result.status = "error"
                last = (run.stderr.strip().splitlines() or ["no message"])[-1]
                result.reason = (f"the grading sandbox could not be set up ({last[:300]}); the notebook did not run "
                                 "and nothing was recorded: ask the instructor (`costlab grade --isolation process` "
                                 "grades without namespaces)")
                return executed
            failure = _notebook_failure(run, executed, self.limits)
            if failure:
                result.reason = failure
                return executed
            try:
                policy = read_policy_file_safely(policy_path, self.challenge)
            except PolicyError as exc:
                result.reason = str(exc)
                return executed
            self._score(result, policy)
            return executed
        finally:
            if self.keep_scratch:
                print(f"scratch kept at {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)

    def _score(self, result: GradeResult, policy) -> None:
        t0 = time.perf_counter()
        try:
            private = evaluate(self.challenge, policy, self.private_seeds)
            public = evaluate(self.challenge, policy, self.challenge.public_seeds)
        except PolicyError as exc:
            result.reason = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a stage failing on odd parameters must not crash grading
            result.status = "error"
            result.reason = f"the grader could not simulate this policy ({type(exc).__name__}: {str(exc)[:200]})"
            return
        result.timing_s["evaluation"] = round(time.perf_counter() - t0, 3)
        result.score, result.constraints_met, result.passed = private.score, private.constraints_met, private.passed
        result.metrics, result.constraints, result.badges = private.metrics, private.constraints, private.badges
        result.public = {"score": public.score, "constraints_met": public.constraints_met,
                         "metrics": public.metrics, "seeds": list(self.challenge.public_seeds)}
        result.metrics["stage_names"] = policy.stages
        if private.constraints_met:
            result.reason = (f"constraints met on all {private.metrics['seeds']} private seeds; mean reduction "
                             f"{private.metrics['reduction_pct']:.2f} %" + (" (target reached)" if private.passed
                                                                             else " (below the target)"))
        else:
            failed = [f"{name} {c['value']:.4g} {'>' if c['op'] == '<=' else '<'} {c['limit']:g}"
                      for name, c in private.constraints.items() if not c["met"]]
            result.reason = "a constraint failed on the private seeds (worst seed): " + "; ".join(failed)

    def _finish(self, result: GradeResult, executed, json_path, start, output=None) -> GradeResult:
        result.reason = plain_text(result.reason, MAX_REASON_CHARS)     # learner text: escaped before it is stored
        if result.status == "graded" and self.store is not None:
            sub = Submission(challenge=result.challenge, student=result.student, score=result.score,
                             constraints_met=result.constraints_met, passed=result.passed, reason=result.reason,
                             metrics=result.metrics, badges=result.badges, public_score=result.public.get("score", 0.0),
                             notebook_sha256=result.notebook_sha256, grading_s=time.perf_counter() - start,
                             submitted_at=self._submitted_at)
            try:
                self.store.record(sub, daily_limit=self.daily_limit)
                result.submission_id = sub.submission_id
            except SubmissionLimitReached as exc:
                _withhold(result, f"{exc}; not recorded")
            result.pseudonym = self.store.pseudonym(result.student)
        result.timing_s["total"] = round(time.perf_counter() - start, 3)
        if output is not None and executed is not None:
            import nbformat  # loads jsonschema (seconds): only when a notebook is read or written

            executed.cells.append(_summary_cell(result))
            write_bytes_atomic(Path(output), nbformat.writes(executed).encode("utf-8"))
            result.executed_notebook = str(output)
        if json_path is not None:
            write_bytes_atomic(Path(json_path), (json.dumps(result.as_dict(), indent=2) + "\n").encode("utf-8"))
        return result


def _withhold(result: GradeResult, reason: str) -> None:
    """A submission over the daily limit learns nothing from its run: no private or public numbers."""
    result.status, result.reason = "rejected", reason
    result.score, result.constraints_met, result.passed = 0.0, False, False
    result.metrics, result.constraints, result.badges, result.public = {}, {}, [], {}


def read_policy_file_safely(path: Path, challenge):
    """The policy the notebook wrote, read without following links, then validated."""
    try:
        data = read_untrusted(path, MAX_POLICY_BYTES)
    except FileNotFoundError:
        raise PolicyError(no_policy_message(path.name)) from None
    return parse_policy_bytes(data, challenge)


def grade(submission: str | Path, challenge: Challenge | str, student: str, *, private_dir=None, db=None,
          limits: Limits | None = None, isolation: str = "auto", output=None, json_path=None,
          daily_limit: int | None = None, keep_scratch: bool = False, record: bool = True) -> GradeResult:
    """Grade one notebook (see the module docstring); the `costlab grade` command calls this."""
    grader = Grader(challenge, private_dir=private_dir, db=db, limits=limits, isolation=isolation,
                    daily_limit=daily_limit, keep_scratch=keep_scratch, record=record)
    return grader.grade(submission, student, output=output, json_path=json_path)
