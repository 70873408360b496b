"""The `costlab` command: one module per command group, listed here in the order `--help` shows them.

Every command calls the same public functions a notebook does. Errors a user can fix
(a bad scenario field, an unknown model, a corrupt trace row) print one line and exit 2.

- `run`: run, demo, models, tokens (scenarios, bills, prices, token counts)
- `live`: call, fake-server (one real spend-capped call; local fakes of the three APIs)
- `twin`: twin, project (a digital twin from a trace; cost ahead)
- `report`: report (HTML, charts and JSON for a scenario or a ledger)
- `sweep`: sweep (a grid of parameter values and seeds)
- `grade`: grade, grade-all, leaderboard, challenges, class-init (running a class)
- `store`: runs [show|compare|export], class progress (the experiment store)
- `gateway`: gateway serve, learner add|list|revoke, usage (the class gateway)
- `playground`: playground (a dashboard as a web app, with Voilà)
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lab.errors import CostlabError

EXIT_USAGE = 2

#: each command group (a module of lab.cli with `register(subparsers)`) and the commands it adds, in
#: `--help` order. A command imports only its own group, so `costlab run` never loads what `costlab
#: report` needs (SciPy, Jinja2) or the store's SQLAlchemy; tests/cli check this table against the parsers.
COMMANDS = {
    "run": ("run", "demo", "models", "tokens"),
    "live": ("call", "fake-server"),
    "twin": ("twin", "project"),
    "report": ("report",),
    "sweep": ("sweep",),
    "grade": ("grade", "grade-all", "leaderboard", "challenges", "class-init"),
    "store": ("runs", "class"),
    "gateway": ("gateway",),
    "playground": ("playground",),
}


def command_groups(argv=()) -> list:
    """The group modules a command line needs: the one naming its command, or all (help, a typo)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    names = [g for g, commands in COMMANDS.items() if first in commands] or list(COMMANDS)
    return [importlib.import_module(f"lab.cli.{name}") for name in names]


def build_parser(argv=()) -> argparse.ArgumentParser:
    """The `costlab` parser: every group's commands, or only the group `argv`'s command belongs to."""
    p = argparse.ArgumentParser(
        prog="costlab",
        description="costlab: simulate what caching, deduplication, prompt caching and other "
                    "optimizations save on AI API traffic, against the providers' real prices.",
        epilog="Start with `costlab demo`, then `costlab run scenarios/support-chatbot.toml --json out.json`.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for group in command_groups(argv):
        group.register(sub)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # a usage error (argparse printed it) or --help: returned like every other outcome
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except CostlabError as exc:
        print(f"costlab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("costlab: interrupted", file=sys.stderr)
        return 130
