"""Result tables that render in a terminal and in a notebook: a DataFrame plus a title and notes.

`validate`, `what_if`, `recommend`, projections and scale analysis all answer with a
`ResultTable`: `.table` is a plain `pandas.DataFrame` for further work, `str(result)` is an
aligned text table for the CLI, and `_repr_html_` renders it (with its notes) in Jupyter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from lab import fmt


@dataclass
class ResultTable:
    """A titled table with notes; `formats` maps a column to a function that renders its cells
    (`lab.fmt.number` for the columns it does not name)."""

    title: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    formats: dict = field(default_factory=dict)

    def cells(self) -> list[list[str]]:
        rows = []
        for _, row in self.table.iterrows():
            rows.append([self.formats.get(c, fmt.number)(row[c]) for c in self.table.columns])
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
        text = fmt.html_text
        head = "".join(f"<th>{text(c)}</th>" for c in self.table.columns)
        body = "".join("<tr>" + "".join(f"<td>{text(c)}</td>" for c in r) + "</tr>" for r in self.cells())
        notes = "".join(f"<li>{text(n)}</li>" for n in self.notes)
        notes_html = f"<ul>{notes}</ul>" if notes else ""
        return f"<div><h4>{text(self.title)}</h4><table><tr>{head}</tr>{body}</table>{notes_html}</div>"
