"""scenarios/README.md's field tables say what the code does: every field, and each default.

Each default lives once, on a dataclass (`lab/scenario.py`, each stage's `Config`); the
loader takes what a file leaves out from there. This test reads every `| field | default |
meaning |` table of the README, finds the dataclass its heading names, and checks that the
table lists every field and states each default as the dataclass holds it.

A default cell is a number (thousands separators allowed), `true`/`false`, a TOML value
(`"lru"`, `[0.5, 0.8, 1.0]`, `{ dist = "lognormal", median = 600, sigma = 1 }`, backticks
optional), a bare word for a string, or one of the words in `WORDS`; a parenthesis after it
is commentary. `—` states no default (the field is required, or off when left out).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from lab import scenario as model
from lab.dists import Dist
from lab.stages import STAGES
from lab.stages.base import Options
from lab.stages.router import DEFAULT_WEIGHTS

README = Path(__file__).resolve().parents[1] / "scenarios" / "README.md"
NO_DEFAULT = object()
#: words a default cell may hold instead of a value
WORDS = {"—": NO_DEFAULT, "the file name": NO_DEFAULT, "see below": NO_DEFAULT, "none": None, "unlimited": None,
         "rules' own": None, "all": (), "cheapest": "", "a sinusoid": (), "every request unique": model.Prompts()}
#: fields a table does not list because the README gives them a section of their own, or no one sets them
NOT_IN_A_TABLE = {model.Scenario: {"traffic", "providers", "pipeline", "routes", "sla", "path", "stage_names", "source"}}
#: fields every stage takes: one table of their own ("Options every stage takes"), not repeated per stage
OPTIONS = {f.name for f in dataclasses.fields(Options)}


def _section_class(heading: str):
    """The dataclass a README heading documents, or None for prose sections."""
    stage = re.search(r'`stage = "(\w+)"`', heading)
    if stage:
        return STAGES[stage.group(1)].Config
    for pattern, cls in ((r"Options every stage takes", Options), (r"`sessions = ", model.Sessions),
                         (r"`\[\[routes\]\]`", model.Route), (r"^## Top level", model.Scenario), (r"`\[traffic\]`", model.Traffic),
                         (r"`arrivals = ", model.Arrivals), (r"`prompts = ", model.Prompts),
                         (r"`prefix = ", model.Prefix), (r"`updates = ", model.Updates),
                         (r"`\[\[providers\]\]`", model.Provider), (r"`\[sla\]`", model.Sla)):
        if re.search(pattern, heading):
            return cls
    return None


def default_tables() -> list[tuple[str, type, list[tuple[list[str], str]]]]:
    """(heading, dataclass, [(field names, default cell)]) for every field/default/meaning table."""
    tables, heading, rows, in_table = [], "", None, False
    for line in README.read_text(encoding="utf-8").splitlines() + [""]:
        if line.startswith("#"):
            heading = line
        if re.match(r"^\| field \| default \| meaning \|$", line):
            rows, in_table = [], True
            tables.append((heading, _section_class(heading), rows))
        elif in_table and line.startswith("|"):
            if not line.startswith("|---"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
                rows.append((re.findall(r"`(\w+)`", cells[0]), cells[1]))
        else:
            in_table = False
    return tables


def _split(cell: str) -> list[str]:
    """A default cell cut at ', ' outside brackets, braces and backticks."""
    pieces, depth, ticked, start = [], 0, False, 0
    for k, ch in enumerate(cell):
        ticked ^= ch == "`"
        depth += ch in "[{(" and not ticked
        depth -= ch in "]})" and not ticked
        if cell.startswith(", ", k) and not depth and not ticked:
            pieces.append(cell[start:k])
            start = k + 2
    return [p.strip() for p in pieces + [cell[start:]]]


def parse_default(piece: str):
    piece = re.sub(r"\s*\([^)]*\)$", "", piece).strip()   # "0 (off)": the parenthesis is commentary
    if piece in WORDS:
        return WORDS[piece]
    text = piece.strip("`")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?|-?\d+(\.\d+)?", text):
        return float(text.replace(",", ""))
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text                      # a bare word: a string default such as lru


def _plain(value):
    """Dataclasses, tuples and pairs as TOML would spell them, for comparison."""
    if isinstance(value, Dist):
        return {k: v for k, v in dataclasses.asdict(value).items() if v != getattr(Dist("constant"), k)} | {
            "dist": value.dist}
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _same(stated, default) -> bool:
    if isinstance(stated, dict) and "dist" in stated:
        return Dist(**stated) == default
    if isinstance(stated, dict) and isinstance(default, tuple) and all(len(p) == 2 for p in default):
        return stated == dict(default)              # priorities: { normal = 1.0 }
    return _plain(stated) == _plain(default)


TABLES = default_tables()


def test_the_readme_has_a_default_table_for_every_section_and_every_stage():
    classes = [cls for _, cls, _ in TABLES]
    assert None not in classes, [h for h, cls, _ in TABLES if cls is None]
    for cls in (model.Scenario, model.Traffic, model.Arrivals, model.Prompts, model.Prefix, model.Updates,
                model.Provider, model.Sla, model.Sessions, model.Route, Options, *(m.Config for m in STAGES.values())):
        assert classes.count(cls) == 1, cls


@pytest.mark.parametrize("heading, cls, rows", TABLES, ids=[h.strip("# ") for h, _, _ in TABLES])
def test_each_table_lists_every_field_with_the_dataclass_default(heading, cls, rows):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    listed = [name for names, _ in rows for name in names]
    expected = set(fields) - {"stage"} - NOT_IN_A_TABLE.get(cls, set())
    if cls is not Options and issubclass(cls, Options):
        expected -= OPTIONS
    assert set(listed) == expected and len(listed) == len(set(listed)), (set(listed) ^ expected, heading)
    for names, cell in rows:
        pieces = _split(cell)
        assert len(pieces) in (1, len(names)), (heading, names, cell)
        for name, piece in zip(names, pieces * len(names) if len(pieces) == 1 else pieces):
            stated = parse_default(piece)
            if stated is NO_DEFAULT:
                continue
            default = fields[name].default
            assert default is not dataclasses.MISSING, f"{heading}: {name} has no default, the README says {piece!r}"
            assert _same(stated, default), f"{heading}: {name}: the README says {piece!r}, the code {default!r}"


def test_the_routers_default_weights_are_the_ones_the_readme_lists():
    text = README.read_text(encoding="utf-8")
    for priority, weights in DEFAULT_WEIGHTS.items():
        listed = re.search(rf"{priority}\s+\(([\d.]+), ([\d.]+), ([\d.]+), ([\d.]+)\)", text)
        assert listed and tuple(map(float, listed.groups())) == weights, priority
