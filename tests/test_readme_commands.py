"""The README's commands work as written: every ```bash block marked `<!-- runnable -->` runs verbatim.

Each marked block runs in bash (`set -euo pipefail`, so any failing line fails it) in a scratch
copy of the repository's tracked files, as a fresh clone would have them, with this Python's
`costlab` first on PATH and this checkout's `lab` importable. Files a command reads
(`examples/grid.toml`, `examples/my-kpis.toml`) must be shipped or made by an earlier command in
the README; nothing is created for the commands here. Blocks that need a network, keys, a
cluster or root paths (`/srv/...`) are not marked. Also checked: the README's test command
prints pytest's summary line (two `-q` hide it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKED = re.compile(r"<!-- runnable[^>]*-->\s*\n```bash\n(.*?)\n```", re.S)
BLOCK_TIMEOUT_S = 900


def runnable_blocks(text: str) -> list[str]:
    """The bodies of the ```bash fences that directly follow a `<!-- runnable -->` comment."""
    return MARKED.findall(text)


def test_the_marker_finds_exactly_the_marked_blocks():
    text = ("<!-- runnable -->\n```bash\necho a\n```\n\n```bash\necho b\n```\n"
            "<!-- runnable: why -->\n```bash\necho c\necho d\n```\n<!-- runnable -->\n```toml\nx = 1\n```\n")
    assert runnable_blocks(text) == ["echo a", "echo c\necho d"]


def test_the_readme_marks_blocks_and_their_files_exist():
    blocks = runnable_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    shipped = [m for b in blocks for m in re.findall(r"examples/[\w.-]+", b)]
    assert shipped and all((ROOT / f).is_file() for f in shipped), shipped


def _tracked_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy its tracked files")
    return _tracked_copy(tmp_path_factory.mktemp("clone"))


@pytest.mark.timeout(BLOCK_TIMEOUT_S + 60)
@pytest.mark.parametrize("k", range(len(runnable_blocks(README.read_text(encoding="utf-8")))))
def test_a_runnable_block_runs_verbatim(clone, k):
    block = runnable_blocks((clone / "README.md").read_text(encoding="utf-8"))[k]
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(clone)
    env["MPLBACKEND"] = "Agg"
    started = time.monotonic()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT_S)
    took = time.monotonic() - started
    assert done.returncode == 0, f"block {k} failed ({took:.0f} s):\n{block}\n--- stderr:\n{done.stderr[-3000:]}"
    print(f"README block {k}: {took:.1f} s")


def test_the_test_command_prints_the_summary_line(tmp_path):
    """`python -m pytest -q` as the README says, on a one-test folder with this pyproject's settings."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_one.py").write_text("def test_one():\n    assert True\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    quick = re.search(r"\.venv/bin/python -m pytest( -q)?\b", README.read_text(encoding="utf-8"))
    assert quick, "the README's quick start names its test command"
    args = [sys.executable, "-m", "pytest", *quick.group(0).split()[3:], "-p", "no:cacheprovider"]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b1 passed\b", done.stdout), done.stdout
