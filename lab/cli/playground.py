"""`costlab playground`: the playground dashboard as a web app (Voilà), for people who will not write code.

Voilà runs a notebook and shows only its outputs: here a one-cell notebook that builds
`Dashboard.playground()` (or a dashboard on another scenario), written to a scratch folder for
the life of the server. The server listens on 127.0.0.1 unless `--ip` says otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.errors import CostlabError

APP_NAME = "costlab-playground.ipynb"


def app_notebook(scenario: str | None, knobs: list[str], requests: int) -> dict:
    """The one-cell notebook Voilà serves: a title and the dashboard."""
    if scenario is None:
        call = f"Dashboard.playground(requests={requests})"
    else:
        args = f"{str(scenario)!r}" + (f", knobs={knobs!r}" if knobs else "")
        call = f"Dashboard({args}, requests={requests})"
    source = f"%matplotlib inline\nfrom lab.widgets import Dashboard\n{call}"
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [{"cell_type": "markdown", "id": "title", "metadata": {},
                       "source": "## costlab playground\nMove a control: a small simulation re-runs and the charts redraw."},
                      {"cell_type": "code", "id": "dashboard", "metadata": {}, "execution_count": None,
                       "outputs": [], "source": source}]}


def voila_command(notebook: Path, port: int, ip: str, open_browser: bool) -> list[str]:
    """The Voilà server command for `notebook` (run with this Python, so the kernel sees this costlab)."""
    cmd = [sys.executable, "-m", "voila", str(notebook), f"--port={port}", f"--Voila.ip={ip}",
           "--theme=light", "--show_tracebacks=False"]
    return cmd if open_browser else [*cmd, "--no-browser"]


def _playground(args) -> int:
    try:
        import voila  # noqa: F401  # jupyter: Voilà comes with the `lab` extra
    except ImportError:
        raise CostlabError("`costlab playground` needs Voilà: pip install 'costlab[lab]'") from None
    from lab.widgets import KNOBS, knob_hint  # jupyter: the dashboards import ipywidgets (the `lab` extra)

    if args.requests < 1:
        raise CostlabError(f"--requests: expected a positive whole number, got {args.requests}")
    unknown = [k for k in args.knob if k not in KNOBS]
    if unknown:
        raise CostlabError(f"--knob {unknown[0]!r}: expected one of {', '.join(KNOBS)}{knob_hint(unknown[0])}")
    with tempfile.TemporaryDirectory(prefix="costlab-playground-") as tmp:
        notebook = Path(tmp) / APP_NAME
        notebook.write_text(json.dumps(app_notebook(args.scenario, args.knob, args.requests)), encoding="utf-8")
        print(f"costlab playground on http://{args.ip}:{args.port}/ (Ctrl-C stops it)", flush=True)
        return subprocess.call(voila_command(notebook, args.port, args.ip, args.open), cwd=os.getcwd())


def register(sub) -> None:
    p = sub.add_parser("playground", help="serve the playground dashboard as a web app (Voilà)",
                       description="Serve a costlab dashboard as a web page: sliders and dropdowns that re-run "
                                   "a small simulation, no code. Needs the `lab` extra (Voilà).")
    p.add_argument("scenario", nargs="?", default=None,
                   help="a scenario name or file (default: the built-in playground: cache, budget, cascade)")
    p.add_argument("--knob", action="append", default=[], metavar="LABEL",
                   help="a control to show, as the dashboard labels it (repeat; default: all that apply)")
    p.add_argument("--requests", type=int, default=2000, help="requests per re-run (default 2000)")
    p.add_argument("--port", type=int, default=8866, help="port (default 8866)")
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--open", action="store_true", help="open a browser tab")
    p.set_defaults(func=_playground)
