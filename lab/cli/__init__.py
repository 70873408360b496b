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
import sys

from lab.cli import gateway, grade, live, playground, report, run, store, sweep, twin
from lab.errors import CostlabError

EXIT_USAGE = 2

#: the command groups; each adds its subcommands with `register(subparsers)`
COMMAND_GROUPS = (run, live, twin, report, sweep, grade, store, gateway, playground)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="costlab",
        description="costlab: simulate what caching, deduplication, prompt caching and other "
                    "optimizations save on AI API traffic, against the providers' real prices.",
        epilog="Start with `costlab demo`, then `costlab run scenarios/support-chatbot.toml --json out.json`.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
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
