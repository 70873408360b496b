"""Grading a folder of submissions in parallel processes, with a progress bar.

Layouts understood (first match wins for each notebook):

    DIR/alice.ipynb                      -> student "alice"
    DIR/alice/anything.ipynb             -> student "alice" (e.g. an nbgrader or LMS export)

Each worker process builds its own `Grader` (its own database connection) and runs one
sandboxed notebook at a time; the leaderboard takes concurrent writers.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from lab.fmt import plain_text
from lab.grading._papermill import skip_iri_format_check
from lab.grading.challenge import Challenge, load_challenge
from lab.grading.grader import Grader
from lab.grading.store import Leaderboard

SKIP_SUFFIXES = (".graded.ipynb",)


@dataclass(frozen=True)
class Job:
    submission: str
    student: str
    output: str
    json_path: str


def find_submissions(folder: str | Path) -> list[tuple[Path, str]]:
    """(notebook, student) pairs under a folder, skipping graded copies and checkpoints."""
    base = Path(folder)
    found = []
    for path in sorted(base.rglob("*.ipynb")):
        rel = path.relative_to(base)
        if any(part.startswith(".") for part in rel.parts) or path.name.endswith(SKIP_SUFFIXES):
            continue
        student = rel.parts[0] if len(rel.parts) > 1 else path.stem
        found.append((path, student))
    return found


_GRADER = None


def _init(grader_kwargs: dict) -> None:
    global _GRADER
    skip_iri_format_check()
    _GRADER = Grader(**grader_kwargs)


def _grade(job: Job) -> dict:
    try:
        result = _GRADER.grade(job.submission, job.student, output=job.output, json_path=job.json_path)
        return {"submission": job.submission, **result.as_dict()}
    except Exception as exc:  # noqa: BLE001 - one broken job must not stop the batch
        return {"submission": job.submission, "status": "error", "student": plain_text(job.student), "score": 0.0,
                "reason": plain_text(f"{type(exc).__name__}: {exc}", 400),
                "challenge": _GRADER.challenge.id if _GRADER else "", "timing_s": {}}


def grade_all(folder: str | Path, challenge, *, out: str | Path | None = None, workers: int | None = None,
              progress: bool = True, **grader_kwargs) -> list[dict]:
    """Grade every notebook in `folder`; results (JSON dicts) in input order, plus out/summary.csv."""
    ch = challenge if isinstance(challenge, Challenge) else load_challenge(challenge)
    subs = find_submissions(folder)
    out_dir = Path(out) if out else Path(folder) / "graded"
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [Job(str(p), student, str(out_dir / f"{student}.{p.stem}.graded.ipynb"),
                str(out_dir / f"{student}.{p.stem}.grade.json")) for p, student in subs]
    if isinstance(grader_kwargs.get("db"), Leaderboard):   # workers open their own connections
        grader_kwargs["db"] = grader_kwargs["db"].url
    hide = (*grader_kwargs.pop("hide", ()), str(Path(folder).resolve()), str(out_dir.resolve()))
    kwargs = {"challenge": ch, "hide": hide, **grader_kwargs}
    Grader(**{**kwargs, "record": False})      # fail fast (seeds, private folder) before starting workers
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    results: list[dict | None] = [None] * len(jobs)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # tqdm.auto probes for Jupyter widgets (ipywidgets) at import

        bar = tqdm(total=len(jobs), desc=f"grading {ch.id}", unit="notebook")
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init,
                             initargs=(kwargs,)) as pool:
        futures = {pool.submit(_grade, job): k for k, job in enumerate(jobs)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    _write_summary(out_dir / "summary.csv", jobs, results)
    return results


def _write_summary(path: Path, jobs: list[Job], results: list[dict]) -> None:
    fields = ["student", "submission", "status", "score", "passed", "reason", "grading_s"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for job, r in zip(jobs, results):
            w.writerow({"student": plain_text(r.get("student") or job.student),
                        "submission": plain_text(asdict(job)["submission"]), "status": plain_text(r.get("status")),
                        "score": r.get("score"), "passed": r.get("passed"), "reason": plain_text(r.get("reason")),
                        "grading_s": (r.get("timing_s") or {}).get("total")})
