"""Challenges, grading on hidden seeds, and the leaderboard.

    from lab.grading import load_challenge, grade, Leaderboard
    ch = load_challenge("b1-first-cache")            # challenges/b1-first-cache/challenge.toml
    result = grade("alice.ipynb", ch, "alice", private_dir="/srv/costlab-private")
    Leaderboard("sqlite:////srv/costlab-private/leaderboard.db").view(ch.id)

Pieces: `challenge` (specs), `policy_schema` (what a submission may hand in, checked against the stage
registry), `evaluate` (grader-owned scoring with `lab.simulate`), `sandbox` (running the
notebook isolated), `grader` (the whole path), `store` (the leaderboard), `private` (seeds
and the database outside the learners' tree), `batch` (many submissions in parallel).
"""

from lab.grading.challenge import SCORE_FORMULA, Challenge, ChallengeError, list_challenges, load_challenge
from lab.grading.evaluate import Evaluation, evaluate
from lab.grading.grader import Grader, GradeResult, grade
from lab.grading.policy_schema import Policy, PolicyError, parse_policy
from lab.grading.private import PrivateDir
from lab.grading.sandbox import Limits, isolation_mode
from lab.grading.store import Leaderboard, Submission, SubmissionLimitReached

__all__ = ["SCORE_FORMULA", "Challenge", "ChallengeError", "Evaluation", "GradeResult", "Grader", "Leaderboard",
           "Limits", "Policy", "PolicyError", "PrivateDir", "Submission", "SubmissionLimitReached", "evaluate", "grade",
           "isolation_mode", "list_challenges", "load_challenge", "parse_policy"]
