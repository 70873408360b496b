"""`costlab run`, `demo`, `models` and `tokens`: run scenarios, print bills, list prices, count tokens."""

from __future__ import annotations

import json
import sys
import time
from importlib import resources
from pathlib import Path

from lab.cli.args import positive_int
from lab.cli.table import print_table
from lab.files import write_json_atomic
from lab.fmt import duration
from lab.ledger import write_ledger
from lab.loader import load_scenario
from lab.pricing import PROVIDERS, model_prices, priced_models
from lab.sim import simulate
from lab.tokens import count_tokens, tokenizer_note


def print_result(result, out=None) -> None:
    out = sys.stdout if out is None else out     # the stdout of the moment (a test may redirect it)
    s = result.summary()
    print(f"costlab · {s['scenario']} · seed {s['seed']} · {s['requests']:,} requests over "
          f"{duration(s['simulated_s'])} simulated", file=out)
    print(file=out)
    print_table(result.table_rows(), ("", "baseline", "optimized"), out)
    if s["by_stage"]:
        print(file=out)
        rows = [(name, f"{v['requests_touched']:,}", f"${v['cost_saved_usd']:,.4f}")
                for name, v in s["by_stage"].items()]
        print_table(rows, ("stage", "requests touched", "saved"), out)


# --------------------------------------------------------------------------- commands


def cmd_run(args) -> int:
    scenario = load_scenario(args.scenario)
    started = time.perf_counter()
    result = simulate(scenario, seed=args.seed, requests=args.requests)
    wall_s = time.perf_counter() - started
    print_result(result)
    if args.json:
        write_json_atomic(args.json, result.summary())
        print(f"\nsummary written to {args.json}")
    if args.ledger:
        write_ledger(result.ledger, args.ledger)
        print(f"ledger ({len(result.ledger):,} rows) written to {args.ledger}")
    if args.save:
        import lab.store as lab_store  # reason: SQLAlchemy and pandas (~45 MB), only for --save (300 MB bar)

        store = lab_store.use(args.store)
        run_id = store.save(result, args.save, tags=args.tag, note=args.note, wall_s=wall_s)
        print(f"saved as run {run_id} in experiment {args.save!r} ({store!r}); "
              f"see `costlab runs show {run_id}`")
    return 0


def demo_scenario_path() -> Path:
    """The bundled demo scenario (packaged, so `costlab demo` works from any directory)."""
    return Path(str(resources.files("lab").joinpath("data/scenarios/demo.toml")))


def cmd_demo(args) -> int:
    scenario = load_scenario(demo_scenario_path())
    result = simulate(scenario, seed=args.seed, requests=args.requests)
    s = result.summary()
    print("costlab demo: one hour of a support chatbot on gpt-4o-mini, priced with genai-prices\n")
    print_result(result)
    ledger = result.ledger
    print("\nThe bill, by outcome (what each request cost, and what it would have cost):\n")
    by = ledger.groupby("outcome", observed=True).agg(requests=("request_id", "size"), cost_usd=("cost_usd", "sum"),
                                                      baseline_cost_usd=("baseline_cost_usd", "sum"))
    print_table([(r.Index, f"{int(r.requests):,}", f"${r.cost_usd:,.4f}", f"${r.baseline_cost_usd:,.4f}")
                 for r in by.itertuples()], ("outcome", "requests", "cost", "without optimization"))
    per_day = s["cost_usd"] / max(s["simulated_s"], 1e-9) * 86400
    base_day = s["baseline_cost_usd"] / max(s["simulated_s"], 1e-9) * 86400
    print(f"\nAt this rate: ${per_day:,.2f} per day instead of ${base_day:,.2f} "
          f"({s['reduction_pct']:.1f} % less). Try `costlab run {demo_scenario_path()} --json out.json`.")
    return 0


def cmd_models(args) -> int:
    providers = [args.provider] if args.provider else list(PROVIDERS)
    rows = []
    for m in priced_models(providers):
        d = m.describe()
        if args.filter and args.filter not in d["model"]:
            continue

        def fmt(x):
            return "-" if x is None else f"{x:g}"
        rows.append((f"{d['provider']}/{d['model']}", fmt(d["input_usd_per_mtok"]), fmt(d["cached_input_usd_per_mtok"]),
                     fmt(d["cache_write_usd_per_mtok"]), fmt(d["output_usd_per_mtok"]),
                     fmt(d["batch_input_usd_per_mtok"]), "yes" if d["long_context_tiers"] else ""))
    if args.json:
        print(json.dumps([m.describe() for m in priced_models(providers)
                          if not args.filter or args.filter in m.model], indent=1))
        return 0
    print("USD per million tokens, from genai-prices (long-context tiers apply above their threshold)\n")
    print_table(rows, ("model", "input", "cached in", "cache write", "output", "batch in", "tiers"))
    return 0


def cmd_tokens(args) -> int:
    provider, model = _split_model(args.model)
    text = args.text if args.text != "-" else sys.stdin.read()
    n = count_tokens(text, model)
    prices = model_prices(provider, model)
    cost_in = float(prices.cost_usd([n], [0])[0])
    cost_out = float(prices.cost_usd([0], [n])[0])
    if args.json:
        print(json.dumps({"provider": provider, "model": prices.model, "tokens": n,
                          "cost_as_input_usd": cost_in, "cost_as_output_usd": cost_out}))
        return 0
    print(f"{n:,} tokens ({tokenizer_note(model)})")
    print(f"as input to {provider}/{prices.model}: ${cost_in:.8f}; as output: ${cost_out:.8f}")
    return 0


def _split_model(spec: str) -> tuple[str, str]:
    """'openai/gpt-4o-mini' or a bare model id, whose provider is guessed from its name."""
    if "/" in spec:
        provider, model = spec.split("/", 1)
        return provider, model
    lower = spec.lower()
    if lower.startswith("claude"):
        return "anthropic", spec
    if lower.startswith("gemini"):
        return "google", spec
    return "openai", spec


def register(subparsers) -> None:
    """Add `run`, `demo`, `models` and `tokens` to the `costlab` command."""
    r = subparsers.add_parser("run", help="run a scenario and its no-optimization baseline",
                              description="Play a scenario's traffic through its pipeline and, on the same requests, "
                                          "with no optimization; print both. The same seed gives the same "
                                          "numbers.")
    r.add_argument("scenario", help="a scenario file (scenarios/*.toml; fields in scenarios/README.md)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--requests", type=positive_int, default=None, metavar="N",
                   help="simulate exactly N requests instead of the scenario's duration_s")
    r.add_argument("--json", metavar="PATH", help="write the summary (the documented JSON contract) here")
    r.add_argument("--ledger", metavar="PATH", help="write one row per request to PATH.csv or PATH.parquet")
    r.add_argument("--save", metavar="NAME", help="save the run in the experiment store under experiment NAME")
    r.add_argument("--tag", action="append", default=[], metavar="TAG", help="a tag for the saved run (repeatable)")
    r.add_argument("--note", default="", help="a note for the saved run")
    r.add_argument("--store", metavar="URL", help="the store (default $COSTLAB_STORE, else ~/.costlab/lab.db)")
    r.set_defaults(func=cmd_run)

    d = subparsers.add_parser("demo", help="run the bundled demo scenario and print its bill",
                              description="One hour of a support chatbot: cache, dedup and prompt caching vs none.")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--requests", type=positive_int, default=None, metavar="N")
    d.set_defaults(func=cmd_demo)

    m = subparsers.add_parser("models", help="list priced models and their prices (from genai-prices)")
    m.add_argument("--provider", choices=("openai", "anthropic", "google"))
    m.add_argument("--filter", metavar="TEXT", help="only models whose id contains TEXT")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.set_defaults(func=cmd_models)

    t = subparsers.add_parser("tokens", help="count the tokens of a text and price them",
                              description="Count tokens with tiktoken (offline) and price them as input and as output.")
    t.add_argument("text", help="the text, or - to read standard input")
    t.add_argument("--model", default="openai/gpt-4o-mini", help="PROVIDER/MODEL or a model id (default openai/gpt-4o-mini)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_tokens)
