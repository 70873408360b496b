"""`costlab call` (one real, spend-capped provider call) and `costlab fake-server` (the local fakes).

Errors a user can fix (a missing key, a refused budget, a provider error) are
CostlabErrors: one line, exit 2. The fake server is a test double: this is the one
production module allowed to import it (import-linter's `forbidden` contract).
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from lab.live import Session
from lab.pricing import PROVIDERS
from lab.providers import fake_server

DEFAULT_MAX_TOKENS = 256
DEFAULT_BUDGET_USD = 0.50


def cmd_call(args) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    session = Session(budget_usd=args.budget_usd, cassette=args.cassette,
                      mode="replay" if args.replay else "live", base_url=args.base_url)
    result = session.call(args.provider, args.model, prompt=prompt, max_tokens=args.max_tokens,
                          system=args.system, cache=args.cache)
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    print(result.text)
    print()
    cache = f", {result.cache_write_tokens:,} written to cache" if result.cache_write_tokens else ""
    print(f"{result.provider}/{result.model}: {result.input_tokens:,} input tokens "
          f"({result.cached_input_tokens:,} cached{cache}), {result.output_tokens:,} output tokens")
    retries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
    source = " (replayed)" if result.replayed else ""
    print(f"cost ${result.cost_usd:.8f} · latency {result.latency_ms:,.0f} ms{retries}{source} · "
          f"budget left ${session.remaining_usd:.6f} of ${session.budget_usd:.6f}")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_fake_server(args) -> int:
    server = fake_server.FakeProviderServer(port=args.port, latency_ms=args.latency_ms,
                                ms_per_output_token=args.ms_per_output_token)
    with server:
        print(f"costlab fake provider server on {server.url} (Ctrl-C stops it)")
        for provider in fake_server.PROVIDERS:
            print(f"  {provider:<9} --base-url {server.base_url(provider)}")
        print(f"  admin     POST {server.url}/_fake/fail {{\"count\": 2, \"status\": 429, \"retry_after_s\": 1}}"
              f" · POST /_fake/config · POST /_fake/reset · GET /_fake/stats")
        sys.stdout.flush()
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None  # `kill` stops it cleanly
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("\nstopped")
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
    return 0


def register(subparsers) -> None:
    """Add `call` and `fake-server` to the `costlab` command."""
    c = subparsers.add_parser(
        "call", help="make one real (spend-capped) provider call and print its tokens, cost and latency",
        description="Send one prompt through the provider's official SDK with the key from its environment "
                    "variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or GOOGLE_API_KEY), refuse it if "
                    "its worst case could exceed --budget-usd, and price the usage it returns with genai-prices.")
    c.add_argument("provider", choices=PROVIDERS, help="genai-prices' provider id")
    c.add_argument("model", help="the model id as the provider names it, e.g. gpt-4o-mini")
    c.add_argument("prompt", help="the prompt, or - to read standard input")
    c.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, metavar="N",
                   help=f"output token limit (default {DEFAULT_MAX_TOKENS})")
    c.add_argument("--base-url", metavar="URL", help="handed to the SDK as it takes it, e.g. a fake server's URL")
    c.add_argument("--budget-usd", type=float, default=DEFAULT_BUDGET_USD, metavar="X",
                   help=f"refuse the call if its worst case could cost more (default {DEFAULT_BUDGET_USD})")
    c.add_argument("--system", metavar="TEXT", help="a system prompt")
    c.add_argument("--cache", choices=("5m", "1h"), help="anthropic: cache breakpoints with this lifetime")
    c.add_argument("--cassette", metavar="PATH.jsonl", help="append the call to this cassette")
    c.add_argument("--replay", action="store_true", help="answer from --cassette instead of the network")
    c.add_argument("--json", action="store_true", help="print one JSON object: provider, model, input_tokens, "
                   "cached_input_tokens, output_tokens, cost_usd, latency_ms")
    c.set_defaults(func=cmd_call)

    f = subparsers.add_parser("fake-server", help="serve fake OpenAI, Anthropic and Gemini APIs on 127.0.0.1",
                              description="A local server speaking the three providers' wire formats, with usage "
                                          "counted by tiktoken, simulated prompt caching and scripted errors.")
    f.add_argument("--port", type=int, default=0, metavar="P", help="port to listen on (default: any free one)")
    f.add_argument("--latency-ms", type=float, default=0.0, help="fixed delay before each answer")
    f.add_argument("--ms-per-output-token", type=float, default=0.0, help="extra delay per output token")
    f.set_defaults(func=cmd_fake_server)
