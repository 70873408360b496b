"""The house's shape: no import cycles, a light `import lab`, one provider interface, the layers contract.

The cycle check reads every `import` statement of every module under lab/, inside functions
too (a function-level import hides a cycle; it does not remove it), the way
/work/shared/tools/import_graph.py does. The one shape it accepts is a subpackage that imports
its own modules (a registry such as `lab.stages`), never a cycle through the root `lab`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import scenario

import lab.cli
from lab.providers.base import Provider
from lab.providers.mock import MockProvider
from lab.providers.sdk import LiveProvider
from lab.sim import Simulation
from lab.traffic import make_requests

ROOT = Path(__file__).resolve().parents[1]
#: what `import lab` must not load: tiktoken (until a text is counted) and everything an extra installs
NOT_LOADED_BY_IMPORT_LAB = ("tiktoken", "openai", "anthropic", "google.genai", "papermill", "nbformat",
                            "sqlalchemy", "psycopg", "dask", "distributed", "ipywidgets", "ipykernel",
                            "jupyterlab", "jupytext")


def lab_modules() -> dict[str, Path]:
    """Every module of the lab package by dotted name (a package by its own name)."""
    out = {}
    for path in sorted((ROOT / "lab").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def import_edges(modules: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported) for every import of a lab module, wherever the statement stands."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = set()
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                imported = resolve(target) if target.split(".")[0] == "lab" else None
                if imported and imported != module:
                    edges.add((module, imported))
    return edges


def strongly_connected(nodes, edges) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    adjacent = {n: sorted(b for a, b in edges if a == n) for n in nodes}
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in adjacent[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for n in nodes:
        if n not in index:
            visit(n)
    return found


def _is_a_registry(group: list[str]) -> bool:
    """A subpackage (not the root `lab`) and its own modules only: the package imports what it lists."""
    return any(head != "lab" and all(m == head or m.startswith(head + ".") for m in group) for head in group)


def test_no_import_cycle_among_lab_modules_counting_imports_inside_functions():
    modules = lab_modules()
    edges = import_edges(modules)
    assert ("lab.sim", "lab.stages") in edges and ("lab.cli.grade", "lab.grading.grader") in edges  # sees both kinds
    cycles = [g for g in strongly_connected(modules, edges) if not _is_a_registry(g)]
    assert cycles == []


def test_import_lab_loads_neither_tiktoken_nor_any_extra():
    code = ("import json, sys; import lab; "
            f"print(json.dumps([m for m in {list(NOT_LOADED_BY_IMPORT_LAB)!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


#: what neither `import lab` nor the `costlab` command loads before a command needs it (issue 16's memory
#: bar: `costlab run` of 1M requests within 300 MB resident; pandas alone is ~75 MB, SciPy ~40 MB)
NOT_LOADED_BY_THE_COMMAND = ("pandas", "scipy", "matplotlib", "jinja2", "sqlalchemy")


def test_the_costlab_command_loads_no_heavy_library_until_a_command_needs_it():
    code = ("import json, sys; import lab.cli; lab.cli.build_parser(['run', 'x.toml']); "
            f"print(json.dumps([m for m in {list(NOT_LOADED_BY_THE_COMMAND)!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_command_table_names_every_command_each_group_registers():
    for group in lab.cli.command_groups():
        sub = argparse.ArgumentParser().add_subparsers()
        group.register(sub)
        assert tuple(sub.choices) == lab.cli.COMMANDS[group.__name__.rpartition(".")[2]], group.__name__


def test_mock_and_live_providers_satisfy_the_provider_protocol():
    sc = scenario(requests=5)
    sim = Simulation(sc, make_requests(sc, np.random.default_rng(0), None), 0, optimized=False, progress=False)
    mock = sim.providers[0]
    live_entry = dataclasses.replace(sc.providers[0], kind="live", budget_usd=0.01, base_url="http://127.0.0.1:9")
    live = LiveProvider(sim, live_entry, 0)          # builds its session; sends nothing
    assert isinstance(mock, MockProvider)
    for provider in (mock, live):
        assert isinstance(provider, Provider), type(provider).__name__


def test_the_layers_contract_holds():
    """What `.ci/run` runs as `lint-imports`: the contracts in pyproject.toml."""
    cli = pytest.importorskip("importlinter.cli")
    assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0
