"""Gateway overhead: the same open-loop load sent to the fake server directly and through the gateway.

Three processes: the fake server (`costlab fake-server`), the gateway (`costlab gateway serve`,
SQLite ledger on, pipeline cache + dedup + budget + output cap, every request distinct so each
one goes upstream), and this load generator. Requests leave on a fixed schedule (open loop:
a slow answer never delays the next request) at each rate for --duration-s seconds, over a pool
of keep-alive connections with a minimal HTTP/1.1 client (so the client's own cost stays out of
the figures). Overhead = gateway latency minus direct latency, percentile by percentile; the
gateway's own `x-costlab-overhead-ms` header (time spent in the gateway outside the upstream
call) is reported too. Bar (issue 18): at 500 requests/s, overhead p50 <= 2 ms and p95 <= 10 ms.

    python benchmarks/gateway.py [--rates 50,200,500] [--duration-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-bench-not-a-real-key"
BAR_P50_MS, BAR_P95_MS = 2.0, 10.0


class Pool:
    """Keep-alive HTTP/1.1 connections to one host: a request takes an idle one or opens another."""

    def __init__(self, port: int):
        self.port, self.idle = port, []

    async def post(self, path: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(body)}\r\n{head}\r\n".encode() + body)
        status_line = await reader.readline()
        got = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            got[k.strip().lower()] = v.strip()
        data = await reader.readexactly(int(got.get("content-length", 0)))
        self.idle.append((reader, writer))
        return int(status_line.split()[1]), got, data


async def load(port: int, path: str, headers: dict, rate: float, duration_s: float, tag: str):
    """Latencies (ms) and gateway overhead headers (ms) of an open-loop run at `rate` requests/s."""
    pool, n = Pool(port), int(rate * duration_s)
    latencies, overheads, failures = np.full(n, np.nan), [], 0
    start = time.perf_counter() + 0.2

    async def one(k: int):
        nonlocal failures
        body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 40,
                           "messages": [{"role": "user", "content": f"{tag} request {k}: where is my order?"}]}).encode()
        await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
        t0 = time.perf_counter()
        status, got, _ = await pool.post(path, body, headers)
        latencies[k] = (time.perf_counter() - t0) * 1000.0
        if status != 200:
            failures += 1
        if "x-costlab-overhead-ms" in got:
            overheads.append(float(got["x-costlab-overhead-ms"]))

    tasks = [asyncio.ensure_future(one(k)) for k in range(n)]
    done, late = await asyncio.wait(tasks, timeout=duration_s * 3 + 30)   # a saturated run is cut off
    for task in late:
        task.cancel()
    failures += len(late) + sum(1 for t in done if t.exception() is not None)
    return latencies[~np.isnan(latencies)], np.asarray(overheads), failures


def pct(x) -> dict:
    if len(x) == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    return {f"p{q}": round(float(np.percentile(x, q)), 3) for q in (50, 95, 99)}


def start(cmd: list[str], env: dict, pattern: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    line = proc.stdout.readline()
    match = re.search(pattern, line)
    if not match:
        proc.kill()
        raise SystemExit(f"could not start {cmd[1:4]}: {line}{proc.stdout.read()}")
    return proc, int(match.group(1))


def ready(port: int, workers: int, timeout_s: float = 60.0) -> None:
    """Until the gateway answers /healthz (each worker has loaded its tokenizer and prices before it accepts)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    time.sleep(0.5 * workers)   # the other workers finish starting
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the gateway did not answer /healthz within 60 s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="50,200,500")
    p.add_argument("--duration-s", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=1, help="gateway processes on the one address ([gateway] workers)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # `timeout` / kill: still stop the servers
    rates = [float(r) for r in args.rates.split(",")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COSTLAB_BENCH_KEY": KEY}
    costlab = [sys.executable, "-m", "lab.cli"]
    fake, fake_port = start(costlab + ["fake-server", "--port", "0"], env, r"127\.0\.0\.1:(\d+)")
    tmp = Path(tempfile.mkdtemp(prefix="costlab-gw-bench-"))
    gw_port = 18000 + os.getpid() % 1000
    (tmp / "gateway.toml").write_text(
        f'[gateway]\nport = {gw_port}\nstore = "bench.db"\n'
        f'[[upstreams]]\nprovider = "openai"\nbase_url = "http://127.0.0.1:{fake_port}/v1"\n'
        f'key_env = "COSTLAB_BENCH_KEY"\n'
        '[[pipeline]]\nstage = "cache"\nttl_s = 600\n[[pipeline]]\nstage = "dedup"\n'
        '[[pipeline]]\nstage = "budget"\ndaily_usd = 1000.0\n[[pipeline]]\nstage = "output_cap"\nmax_tokens = 200\n')
    token = subprocess.run(costlab + ["gateway", "learner", "add", "bench", "--config", str(tmp / "gateway.toml")],
                           env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
    gateway, _ = start(costlab + ["gateway", "serve", "--config", str(tmp / "gateway.toml"),
                                  "--workers", str(args.workers)], env, r":(\d+)")
    ready(gw_port, args.workers)
    results = {}
    try:
        direct_h, gw_h = {"authorization": f"Bearer {KEY}"}, {"authorization": f"Bearer {token}"}
        asyncio.run(load(fake_port, "/v1/chat/completions", direct_h, 50, 1, "warm"))
        asyncio.run(load(gw_port, "/openai/v1/chat/completions", gw_h, 50, 1, "warm"))
        for rate in rates:
            direct, _, f1 = asyncio.run(load(fake_port, "/v1/chat/completions", direct_h, rate, args.duration_s,
                                             f"direct{rate}"))
            through, header, f2 = asyncio.run(load(gw_port, "/openai/v1/chat/completions", gw_h, rate,
                                                   args.duration_s, f"gw{rate}"))
            d, g = pct(direct), pct(through)
            results[f"{rate:g}"] = {"requests": int(rate * args.duration_s), "failures": f1 + f2, "direct_ms": d, "gateway_ms": g,
                                    "overhead_ms": {k: round(g[k] - d[k], 3) for k in d},
                                    "overhead_header_ms": pct(header) if len(header) else None}
            print(f"{rate:>5g} req/s  direct p50/p95/p99 {d['p50']:.2f}/{d['p95']:.2f}/{d['p99']:.2f} ms  "
                  f"gateway {g['p50']:.2f}/{g['p95']:.2f}/{g['p99']:.2f} ms  overhead "
                  f"{g['p50'] - d['p50']:.2f}/{g['p95'] - d['p95']:.2f}/{g['p99'] - d['p99']:.2f} ms  "
                  f"(in-gateway {results[f'{rate:g}']['overhead_header_ms']}); failures {f1 + f2}", flush=True)
    finally:
        for proc in (gateway, fake):   # a saturated gateway may take long to drain its backlog: then killed
            proc.terminate()
        for proc in (gateway, fake):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    top = results.get(f"{max(rates):g}")
    bar = bool(top and top["failures"] == 0 and top["overhead_ms"]["p50"] <= BAR_P50_MS
               and top["overhead_ms"]["p95"] <= BAR_P95_MS)
    print(json.dumps({"workers": args.workers, "rates": results, "bar": {"p50_ms": BAR_P50_MS, "p95_ms": BAR_P95_MS, "at_rate": max(rates),
                                                "met": bar}}))


if __name__ == "__main__":
    main()
