"""Result tables that render in a terminal and in a notebook: a DataFrame plus a title and notes.

`validate`, `what_if`, `recommend`, projections and scale analysis all answer with a
`ResultTable`: `.table` is a plain `pandas.DataFrame` for further work, `str(result)` is an
aligned text table for the CLI, and `_repr_html_` renders it (with its notes) in Jupyter.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import pandas as pd


def fmt_number(value, digits: int = 4) -> str:
    """A number for people: thousands separators, `digits` significant digits, '-' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    v = float(value)
    if v == 0:
        return "0"
    if float(v).is_integer() and abs(v) >= 1000:
        return f"{v:,.0f}"
    magnitude = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{v:,.{decimals}f}"


@dataclass
class ResultTable:
    """A titled table with notes; `formats` maps a column to a function that renders its cells."""

    title: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    formats: dict = field(default_factory=dict)

    def cells(self) -> list[list[str]]:
        rows = []
        for _, row in self.table.iterrows():
            rows.append([self.formats.get(c, fmt_number)(row[c]) for c in self.table.columns])
        return rows

    def to_text(self) -> str:
        headers = [str(c) for c in self.table.columns]
        rows = self.cells()
        widths = [max([len(h)] + [len(r[k]) for r in rows]) for k, h in enumerate(headers)]

        def line(cells):
            return "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths)))

        out = [self.title, "", line(headers), "  ".join("-" * w for w in widths)]
        out.extend(line(r) for r in rows)
        if self.notes:
            out.append("")
            out.extend(f"- {n}" for n in self.notes)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.table.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.cells())
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        notes_html = f"<ul>{notes}</ul>" if notes else ""
        return (f"<div><h4>{html.escape(self.title)}</h4><table><tr>{head}</tr>{body}</table>"
                f"{notes_html}</div>")
