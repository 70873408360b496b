"""`costlab gateway`: serve the class gateway, manage its learners, read its spend and ledger.

`serve` runs in the foreground; `learner add|list|revoke` and `usage` work on the store
the config names (`--config gateway.toml`, or `--store PATH|postgresql://...`), so an
instructor can add a learner while the gateway runs.

`lab.gateway` needs the `gateway` extra (Starlette, uvicorn, httpx, prometheus-client), so each
command imports it when it runs: `costlab --help` and the other commands work without it.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from typing import TYPE_CHECKING

from lab.cli.table import print_table
from lab.errors import ConfigError
from lab.fmt import usd
from lab.ledger import write_ledger

if TYPE_CHECKING:
    from lab.gateway import GatewayStore

GATEWAY_EXTRA = ("starlette", "uvicorn", "httpx", "httptools", "prometheus_client")


def _gateway():
    """`lab.gateway`, or one line saying which extra to install (instead of a traceback)."""
    missing = [m for m in GATEWAY_EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"the gateway commands need the gateway extra (pip install 'costlab[gateway]'); "
                          f"missing: {', '.join(missing)}")
    import lab.gateway  # the gateway extra (see the module docstring)

    return lab.gateway

DEFAULT_CONFIG = "gateway.toml"


def _store(args) -> GatewayStore:
    if getattr(args, "store", None):
        return _gateway().GatewayStore(args.store)
    return _gateway().GatewayStore(_gateway().load_config(args.config).store)


def _defaults(args):
    """The [learners] defaults of the config, if there is one to read."""
    if getattr(args, "store", None):
        return None
    return _gateway().load_config(args.config).learner_defaults


def _cap(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else usd(x)


def cmd_serve(args) -> int:
    config = _gateway().load_config(args.config)
    if args.port is not None:
        config = type(config)(**{**config.__dict__, "port": args.port})
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError(f"--workers: expected 1 or more processes, got {args.workers}")
        config = type(config)(**{**config.__dict__, "workers": args.workers})
    _gateway().serve(config)
    return 0


def cmd_learner_add(args) -> int:
    d = _defaults(args)
    pick = lambda given, default: given if given is not None else (getattr(d, default) if d else None)  # noqa: E731
    store = _store(args)
    token = store.add_learner(args.name, pick(args.daily_usd, "daily_usd"), pick(args.total_usd, "total_usd"),
                              pick(args.rpm, "rpm"))
    print(f"learner {args.name} added. Their token (shown once; only its hash is kept):")
    print(token)
    return 0


def cmd_learner_list(args) -> int:
    rows = [(x.name, "revoked" if x.revoked else "active", x.source, _cap(x.daily_usd), _cap(x.total_usd),
             "-" if x.rpm is None else f"{x.rpm:g}") for x in _store(args).learners()]
    print_table(rows, ["learner", "status", "source", "daily cap", "total cap", "rpm"], out=sys.stdout)
    return 0


def cmd_learner_revoke(args) -> int:
    _store(args).revoke(args.name)
    print(f"learner {args.name} revoked: their token is refused from now on")
    return 0


def cmd_usage(args) -> int:
    store = _store(args)
    table = store.usage(args.learner)
    if args.learner and table.empty:
        raise ConfigError(f"no learner {args.learner!r}")
    rows = [(r.learner, r.status, f"{r.calls:,}", f"{r.cache_hits:,}", usd(r.spent_today_usd), _cap(r.daily_usd),
             usd(r.spent_total_usd), _cap(r.total_usd), usd(r.saved_usd)) for r in table.itertuples()]
    print_table(rows, ["learner", "status", "calls", "cache hits", "today", "daily cap", "total", "total cap",
                       "saved"], out=sys.stdout)
    if args.ledger:
        ledger = store.ledger(args.learner)
        write_ledger(ledger, args.ledger)
        print(f"ledger: {len(ledger):,} rows -> {args.ledger} (`costlab twin {args.ledger}` reads it)")
    return 0


def register(subparsers) -> None:
    """Add `gateway` (serve, learner add|list|revoke, usage) to the `costlab` command."""
    g = subparsers.add_parser(
        "gateway", help="the class gateway: real provider calls through costlab's pipeline, a cap per learner",
        description="An HTTP gateway speaking the OpenAI, Anthropic and Gemini APIs (streaming included): "
                    "learners use their official SDK with its base URL pointed at the gateway and their "
                    "gateway token as the key; the class's keys stay in the gateway.")
    sub = g.add_subparsers(dest="gateway_command", metavar="COMMAND", required=True)

    def common(p, serve_only=False):
        p.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                       help=f"the gateway's TOML file (default {DEFAULT_CONFIG})")
        if not serve_only:
            p.add_argument("--store", metavar="URL", help="the store directly: a SQLite path or postgresql://...")

    s = sub.add_parser("serve", help="serve until Ctrl-C")
    common(s, serve_only=True)
    s.add_argument("--port", type=int, metavar="P", help="override [gateway] port")
    s.add_argument("--workers", type=int, metavar="N",
                   help="override [gateway] workers: N processes on the one address (caps and ledger stay "
                        "exact across them, in the store; each keeps its own response cache)")
    s.set_defaults(func=cmd_serve)

    learner = sub.add_parser("learner", help="add, list or revoke learners")
    lsub = learner.add_subparsers(dest="learner_command", metavar="COMMAND", required=True)
    a = lsub.add_parser("add", help="add a learner and print their token once")
    a.add_argument("name")
    a.add_argument("--daily-usd", type=float, metavar="X", help="cap per UTC day (default: [learners] daily_usd)")
    a.add_argument("--total-usd", type=float, metavar="Y", help="cap over the course")
    a.add_argument("--rpm", type=float, metavar="N", help="requests per minute")
    common(a)
    a.set_defaults(func=cmd_learner_add)
    ls = lsub.add_parser("list", help="every learner and their caps")
    common(ls)
    ls.set_defaults(func=cmd_learner_list)
    r = lsub.add_parser("revoke", help="refuse a learner's token from now on")
    r.add_argument("name")
    common(r)
    r.set_defaults(func=cmd_learner_revoke)

    u = sub.add_parser("usage", help="spend per learner (today, total, saved), optionally the ledger")
    u.add_argument("--learner", metavar="NAME", help="one learner only")
    u.add_argument("--ledger", metavar="PATH.csv|.parquet", help="also write the ledger (what `costlab twin` reads)")
    common(u)
    u.set_defaults(func=cmd_usage)
