"""Write every lesson and challenge notebook from its jupytext source: no outputs, content-derived cell ids.

    python notebooks/sync.py           # regenerate notebooks/NN_*.ipynb and challenges/*/template.ipynb
    python notebooks/sync.py --check   # exit 1 when a committed notebook differs from its source

Authors edit the `.py` files, in jupytext's py:percent format (`# %%` starts a code cell,
`# %% [markdown]` a text cell, `# %% tags=["parameters"]` papermill's parameters cell); ruff lints
them and they diff like code. The `.ipynb` files are what learners open and graders run: written
from the sources, without outputs, with one kernelspec, and with each cell's id a hash of its type
and text (a repeated cell gets `-2`, `-3`, ...), so inserting a cell changes no other cell's id.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
METADATA = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"}}


def sources() -> list[Path]:
    """The notebooks' sources: the lessons, then each challenge's template."""
    return sorted(ROOT.glob("notebooks/[0-9][0-9]_*.py")) + sorted(ROOT.glob("challenges/*/template.py"))


def cell_ids(cells) -> list[str]:
    """A short hash of each cell's type and source; the n-th repeat of the same cell gets the suffix `-n`."""
    seen: Counter[str] = Counter()
    ids = []
    for cell in cells:
        digest = hashlib.sha256(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:12]
        seen[digest] += 1
        ids.append(digest if seen[digest] == 1 else f"{digest}-{seen[digest]}")
    return ids


def notebook(source: Path) -> nbformat.NotebookNode:
    """The notebook a py:percent source describes, as it is committed."""
    nb = jupytext.read(source, fmt="py:percent")
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = nbformat.from_dict(METADATA)
    for cell, cell_id in zip(nb.cells, cell_ids(nb.cells)):
        cell.id = cell_id
    nbformat.validate(nb)
    return nb


def render(source: Path) -> str:
    """The committed text of `source`'s notebook."""
    return nbformat.writes(notebook(source)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook on disk differs from its source")
    args = parser.parse_args(argv)
    stale = []
    for source in sources():
        target = source.with_suffix(".ipynb")
        text = render(source)
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(str(target.relative_to(ROOT)))
        elif not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    orphans = [str(p.relative_to(ROOT)) for p in (*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("challenges/*/*.ipynb"))
               if not p.with_suffix(".py").is_file()]
    if orphans:
        print("notebooks without a .py source (write one, or delete the notebook):", ", ".join(sorted(orphans)))
    if stale:
        print("out of date (run python notebooks/sync.py):", ", ".join(stale))
    return 1 if stale or orphans else 0


if __name__ == "__main__":
    sys.exit(main())
