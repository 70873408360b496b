"""Argument types shared by the commands: checked when the command line is read, before anything runs.

argparse turns a `ValueError`/`ArgumentTypeError` from a type into one usage line and exit 2,
so `--requests 0` or `--scale 0,-1` is refused at once rather than after a simulation.
"""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """A whole number >= 1 (`--requests`, `--seeds`)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {n}")
    return n


def factors(text: str) -> list[float]:
    """Comma-separated positive, finite factors: 1,10,100."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected factors like 1,10,100, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive factors like 1,10,100, got {text!r}")
    return values
