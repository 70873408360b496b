"""Plain aligned text tables, the one output format every `costlab` command prints."""

from __future__ import annotations

import sys


def print_table(rows, headers, out=None) -> None:
    """A plain aligned text table: the first column left-aligned, the others right-aligned."""
    out = sys.stdout if out is None else out     # the stdout of the moment (a test may redirect it)
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(str(h)), *(len(r[k]) for r in rows)) if rows else len(str(h)) for k, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) if k == 0 else str(h).rjust(w) for k, (h, w) in enumerate(zip(headers, widths)))
    print(line, file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print("  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))), file=out)
