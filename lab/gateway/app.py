"""The gateway as an ASGI app: the three wire formats in, the pipeline, one upstream call, a ledger row out.

A request walks the same path as in the simulator, in this order: output cap (max_tokens cut
to the cap, or set when absent, so every request has a worst case) → response cache →
in-flight dedup → the learner's rpm → client rate limit (waits) → spend reserved on every
limit (learner daily/total, budget stage, class) → upstream, with retries and fallback → spend
settled on genai-prices' price of the provider's usage block, with the ledger row, in one
transaction. Fallback to another provider's model (`fallback_models`) translates a plain text
chat to that provider's format and its answer back to the caller's; the row then names the
provider and model that answered, the hold covers the dearest of them, and the answer carries
`x-costlab-fallback: provider/model`. Every answer carries `x-costlab-cost-usd`, `x-costlab-cache` (hit / miss /
coalesced / off) and `x-costlab-overhead-ms`; a streamed OpenAI or Anthropic answer's cost also
ends its stream as an SSE comment (`: x-costlab-cost-usd=...`), since its headers left before the
usage came (google-genai's parser does not skip comments, so a Gemini stream's cost is in the ledger only).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import time
import uuid
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from lab.errors import ConfigError, CostlabError
from lab.gateway.config import GatewayConfig, Upstream
from lab.gateway.metrics import GatewayMetrics
from lab.gateway.stages import Answer, InFlight, LearnerRate, RateLimiter, ResponseCache, request_keys
from lab.gateway.store import GatewayStore, Learner, Limit, Refused, today
from lab.gateway.transport import send, upstream_transport
from lab.gateway.wire import WIRES, BadRequest, Wire, sse_events
from lab.pricing import model_prices, price_usage_exact
from lab.providers.sdk import Usage, scrub, usage_and_cost
from lab.providers.sse import stream_body
from lab.tokens import get_encoding

log = logging.getLogger("costlab.gateway")
RETRYABLE = {408, 409, 429, 500, 502, 503, 504, 529}
HUB_CACHE_S = 60.0
PRICE_MEMO_SIZE = 10_000
LIMITS_MEMO_SIZE = 10_000
HUB_TIMEOUT = httpx.Timeout(10.0)
UPSTREAM_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
#: identity: a streamed answer's bytes go on to the caller as they came, so none may arrive compressed
UPSTREAM_HEADERS = {"accept": "application/json", "accept-encoding": "identity", "user-agent": "costlab-gateway"}
NO_RETRY = {"x-should-retry": "false"}   # the OpenAI and Anthropic SDKs then raise at once


class Refusal(Exception):
    """An answer the gateway gives itself, in the provider's error shape."""

    def __init__(self, status: int, message: str, headers: dict | None = None, outcome: str = "rejected"):
        super().__init__(message)
        self.status, self.message, self.headers, self.outcome = status, message, headers or {}, outcome


@dataclass(frozen=True)
class Leg:
    """One place a request may go: a provider's wire and model, the upstream path and body, its upstreams in order."""

    wire: Wire
    model: str
    path: str
    body: dict
    upstreams: tuple[Upstream, ...]
    native: bool = True          # the caller's own request (False: translated for a fallback model)

    @property
    def target(self) -> str:
        return f"{self.wire.provider}/{self.model}"


class Gateway:
    """The state one gateway process holds: config, store, upstream keys, live stages, metrics."""

    def __init__(self, config: GatewayConfig, store: GatewayStore | None = None, env=None):
        env = os.environ if env is None else env
        self.config = config
        self.store = store or GatewayStore(config.store)
        self.keys: dict[Upstream, str] = {}
        for ups in config.upstreams.values():
            for u in ups:
                key = (env.get(u.key_env) or "").strip()
                if not key:
                    raise ConfigError(f"{config.path}: upstream {u.provider}: the environment variable {u.key_env} "
                                      f"is not set (export the class's {u.provider} key in it)")
                self.keys[u] = key
        self.secrets = tuple(sorted(set(self.keys.values()), key=len, reverse=True))
        stage = config.stage
        self.cache = ResponseCache(stage("cache")) if stage("cache") else None
        self.dedup = InFlight(stage("dedup")) if stage("dedup") else None
        self.rate = RateLimiter(stage("rate_limit")) if stage("rate_limit") else None
        self.budget, self.retry, self.output_cap = stage("budget"), stage("retry"), stage("output_cap")
        self.router = stage("router")
        self.learner_rate = LearnerRate()
        self.metrics = GatewayMetrics()
        self.hub_cache: dict[str, tuple[float, str | None]] = {}
        self.rng = random.Random()
        self.price_memo: dict[tuple, tuple] = {}
        self._limits: dict[tuple, list[Limit]] = {}
        self.transport: httpx.AsyncBaseTransport | None = None
        # run as a JupyterHub service, the hub's proxy forwards /services/NAME/... unchanged, and the
        # hub's API (JUPYTERHUB_API_URL) can vouch for learners' hub tokens unless the config names another
        as_service = bool(env.get("JUPYTERHUB_SERVICE_NAME"))
        self.prefix = (env.get("JUPYTERHUB_SERVICE_PREFIX", "") if as_service else "").rstrip("/")
        self.hub_api_url = config.hub_api_url or (env.get("JUPYTERHUB_API_URL") if as_service else None)

    # -- lifecycle ----------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the upstream connection pool; load the tokenizer and the price data before the first call."""
        get_encoding("o200k_base")
        price_usage_exact("openai", "gpt-4o-mini", input_tokens=1, output_tokens=1)
        self.transport = upstream_transport(max_connections=2000)
        # what is loaded by now (tokenizer, price data, libraries) lives as long as the process: out of
        # the collector's way, so a full collection walks only what calls and the cache made since
        gc.collect()
        gc.freeze()

    async def shutdown(self) -> None:
        if self.transport is not None:
            await self.transport.aclose()

    # -- who is calling -------------------------------------------------------------------

    async def learner(self, token: str | None) -> Learner | None:
        if not token:
            return None
        learner = self.store.learner_by_token(token)
        if learner is not None or not self.hub_api_url:
            return learner
        name = await self._hub_user(token)
        if name is None:
            return None
        d = self.config.learner_defaults
        return self.store.ensure_hub_learner(name, d.daily_usd, d.total_usd, d.rpm)

    async def _hub_user(self, token: str) -> str | None:
        """The JupyterHub user a hub API token belongs to (asked of the hub's /user, remembered a minute)."""
        now = time.monotonic()
        cached = self.hub_cache.get(token)
        if cached and cached[0] > now:
            return cached[1]
        try:
            r = await send(self.transport, "GET", f"{self.hub_api_url.rstrip('/')}/user",
                           headers={"authorization": f"token {token}"}, timeout=HUB_TIMEOUT)
            try:
                name = json.loads(await r.aread()).get("name") if r.status_code == 200 else None
            finally:
                await r.aclose()
        except (httpx.HTTPError, ValueError, AttributeError):
            name = None
        self.hub_cache[token] = (now + HUB_CACHE_S, name)
        return name

    def limits(self, learner: Learner) -> list[Limit]:
        """Every spend row a call of `learner` counts against, capped or not (made once per learner and UTC day)."""
        day = today()
        key = (learner, day)
        made = self._limits.get(key)
        if made is None:
            if len(self._limits) >= LIMITS_MEMO_SIZE:
                self._limits.clear()
            made = self._limits[key] = self._make_limits(learner, day)
        return made

    def _make_limits(self, learner: Learner, day: str) -> list[Limit]:
        c, name = self.config.class_limits, learner.name
        out = [Limit(f"learner:{name}", day, learner.daily_usd, f"learner {name}'s daily cap"),
               Limit(f"learner:{name}", "total", learner.total_usd, f"learner {name}'s total cap")]
        b = self.budget
        if b is not None and b.action == "reject":
            if b.per == "all":
                if b.daily_usd is not None:
                    out.append(Limit("budget:all", day, b.daily_usd, "the pipeline budget's daily cap"))
                if b.monthly_usd is not None:
                    out.append(Limit("budget:all", day[:7], b.monthly_usd, "the pipeline budget's monthly cap"))
            else:
                daily = dict(b.daily_usd_by).get(name, b.daily_usd)
                if daily is not None:
                    out.append(Limit(f"budget:{name}", day, daily, f"the pipeline budget's daily cap for {name}"))
                if b.monthly_usd is not None:
                    out.append(Limit(f"budget:{name}", day[:7], b.monthly_usd,
                                     f"the pipeline budget's monthly cap for {name}"))
        out += [Limit("class", day, c.daily_usd, "the class's daily cap"),
                Limit("class", "total", c.total_usd, "the class's total cap")]
        return out

    # -- one call ---------------------------------------------------------------------------

    async def handle(self, request: Request, wire: Wire, path: str) -> Response:
        t0 = time.perf_counter()
        row = {"request_id": uuid.uuid4().hex, "t_arrival_s": time.time(), "provider": wire.provider,
               "endpoint": f"{wire.prefix}{path}", "feature": request.headers.get("x-costlab-feature", ""),
               "input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0, "cache_write_tokens": 0,
               "cost_usd": 0.0, "baseline_cost_usd": 0.0, "queue_ms": 0.0, "service_ms": 0.0,
               **{s: 0 for s in ("cache", "dedup", "rate_limit", "budget", "retry", "output_cap")}}
        learner = None
        try:
            learner = await self.learner(wire.token(request.headers, dict(request.query_params)))
            if learner is None:
                raise Refusal(401, "unknown or revoked costlab gateway token: use the token your instructor gave "
                                   "you (or your JupyterHub API token) where the SDK expects its API key",
                              outcome="unauthorized")
            row["learner"] = row["tenant"] = learner.name
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                raise BadRequest("the request body is not JSON") from None
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            model = wire.model(body, path)
            row["model"] = model
            return await self._serve(request, wire, path, body, model, learner, row, t0)
        except (Refusal, BadRequest, CostlabError) as exc:
            status = exc.status if isinstance(exc, Refusal) else 400
            headers = exc.headers if isinstance(exc, Refusal) else {}
            row["outcome"] = exc.outcome if isinstance(exc, Refusal) else "rejected"
            row["status"] = status
            message = scrub(str(exc.message if isinstance(exc, Refusal) else exc), self.secrets)
            if learner is not None:
                self._finish(row, t0, 0.0)
                await self.store.arecord(row)
            self.metrics.child(self.metrics.requests, wire.provider, row["outcome"]).inc()
            return JSONResponse(wire.error(status, message), status_code=status,
                                headers={**headers, "x-costlab-cost-usd": "0", "x-costlab-cache": "off",
                                         "x-costlab-overhead-ms": f"{(time.perf_counter() - t0) * 1000:.3f}"})

    async def _serve(self, request, wire, path, body, model, learner, row, t0) -> Response:
        max_tokens = wire.max_tokens(body)
        cap = self.output_cap.max_tokens if self.output_cap else None
        if max_tokens is None or (cap is not None and max_tokens > cap):
            row["output_cap"] = int(cap is not None and max_tokens is not None)
            wire.set_max_tokens(body, cap or self.config.default_max_tokens)
        if self.router is not None:
            model, path = self._route(wire, path, body, model, row)
        stream = wire.stream(body, path)
        if stream:
            wire.prepare_stream(body)
        shared = bool(self.cache and self.cache.config.shared) or bool(self.dedup and self.dedup.config.shared)
        key, prompt = request_keys(wire.provider, path, body, (None if shared else learner.name, None))
        row["prompt"] = prompt[:32]
        waited_s = 0.0
        if self.cache is not None:
            hit = self.cache.get(key)
            self.metrics.child(self.metrics.cache, "hit" if hit else "miss").inc()
            if hit is not None:
                row.update(cache=1, outcome="cache_hit")
                return await self._answer_again(hit, row, t0, "hit")
        leader = True
        if self.dedup is not None:
            future = self.dedup.join(key)
            if future is not None:
                waited = time.perf_counter()
                answer = await future
                waited_s = time.perf_counter() - waited
                if answer is not None and answer.status == 200:
                    self.metrics.child(self.metrics.cache, "coalesced").inc()
                    row.update(dedup=1, outcome="deduplicated")
                    return await self._answer_again(answer, row, t0, "coalesced", waited_s)
                leader = False   # the leader failed: this request tries for itself
        try:
            return await self._call(request, wire, path, body, model, learner, row, t0, key, stream)
        finally:
            if self.dedup is not None and leader:
                self.dedup.done(key, row.get("_answer"))

    async def _answer_again(self, answer: Answer, row: dict, t0: float, cache: str, waited_s: float = 0.0) -> Response:
        """A cache hit or a coalesced follower: the leader's bytes, billed nothing, its cost as the baseline."""
        u = answer.usage
        row.update(status=200, input_tokens=u.get("input_tokens", 0), output_tokens=u.get("output_tokens", 0),
                   cached_input_tokens=u.get("cached_input_tokens", 0), baseline_cost_usd=answer.cost_usd,
                   queue_ms=waited_s * 1000.0)
        overhead_ms = self._finish(row, t0, waited_s * 1000.0)
        await self.store.arecord(row)
        self._count(row)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type,
                        headers={"x-costlab-cost-usd": "0", "x-costlab-cache": cache,
                                 "x-costlab-overhead-ms": f"{overhead_ms:.3f}",
                                 "x-costlab-saved-usd": f"{answer.cost_usd:.8f}"})

    async def _call(self, request, wire, path, body, model, learner, row, t0, key, stream) -> Response:
        retry_s = self.learner_rate.retry_after_s(learner.name, learner.rpm)
        if retry_s > 0:
            raise Refusal(429, f"learner {learner.name}'s limit of {learner.rpm:g} requests per minute is reached; "
                               f"try again in {retry_s:.1f} s", {"retry-after": f"{max(1, round(retry_s))}"})
        legs = self._legs(wire, path, body, model, stream)
        worst_usd = max(leg.wire.worst_case_usd(leg.body, leg.model) for leg in legs)
        if self.rate is not None:
            wait_s = await self.rate.wait(wire.prompt_tokens(body, model) + wire.max_tokens(body))
            row["queue_ms"], row["rate_limit"] = wait_s * 1000.0, int(wait_s > 0)
        limits = self.limits(learner)
        try:
            await self.store.areserve(limits, worst_usd)
        except Refused as exc:
            row["budget"] = int(exc.limit.scope.startswith("budget"))
            raise Refusal(429, str(exc), NO_RETRY) from None
        try:
            upstream, attempts, retry_s, leg = await self._send(legs, request, row)
        except BaseException:
            self.store.release(limits, worst_usd)
            raise
        row["queue_ms"] += retry_s * 1000.0          # failed attempts and backoff: waiting, not service
        row["service_ms"] = (time.perf_counter() - row["_sent"]) * 1000.0
        row["retry"] = int(attempts > 1)
        fallback = {} if leg is legs[0] else {"x-costlab-fallback": leg.target}
        if fallback:
            row["provider"], row["model"] = leg.wire.provider, leg.model
        if upstream.status_code != 200:
            text = scrub((await self._read(upstream, leg, limits, worst_usd)).decode("utf-8", "replace"), self.secrets)
            if not leg.native:
                text = json.dumps(wire.error(upstream.status_code, f"fallback {leg.target} answered HTTP "
                                             f"{upstream.status_code}: {_error_message(text)}"))
            row.update(status=upstream.status_code, outcome="error")
            self._finish(row, t0, row["queue_ms"] + row["service_ms"])
            await self.store.arelease(limits, worst_usd, row)
            self._count(row)
            headers = {h: upstream.headers[h] for h in ("retry-after", "content-type") if h in upstream.headers}
            return Response(text, status_code=upstream.status_code, headers={
                **headers, **fallback, "x-costlab-cost-usd": "0", "x-costlab-cache": "miss" if self.cache else "off",
                "x-costlab-overhead-ms": f"{row['overhead_ms']:.3f}"})
        if stream and leg.native:
            return self._stream(upstream, wire, model, limits, worst_usd, row, t0, key)
        data = await self._read(upstream, leg, limits, worst_usd)
        row["service_ms"] = (time.perf_counter() - row.pop("_sent")) * 1000.0
        try:
            response = json.loads(data)
            usage, cost_usd = self.price(leg.wire, response, leg.model)
        except (ValueError, CostlabError, TypeError, AttributeError) as exc:
            log.warning("%s: cannot price the upstream answer (%s); billed at its worst case",
                        leg.target, type(exc).__name__)
            response, usage, cost_usd = None, None, worst_usd
        content_type = "application/json"
        if not leg.native and isinstance(response, dict):   # the caller's SDK reads its own provider's shape
            answer = wire.chat_answer(leg.model, leg.wire.text(response), leg.wire.truncated(response),
                                      usage or Usage(0), row["request_id"])
            data = json.dumps(answer).encode()
            if stream:          # the fallback was asked whole; the caller's SDK gets it as its own events
                content_type = "text/event-stream"
                data = stream_body(wire.provider, answer, {"stream_options": {"include_usage": True}})
                data += self._cost_trailer(wire, cost_usd)
        answer = await self._settle(wire, limits, worst_usd, cost_usd, usage, row, t0, key, data, content_type)
        return Response(data, status_code=200, media_type=content_type, headers={
            **fallback, "x-costlab-cost-usd": f"{cost_usd:.8f}", "x-costlab-cache": "miss" if self.cache else "off",
            "x-costlab-overhead-ms": f"{row['overhead_ms']:.3f}", "x-costlab-request-id": row["request_id"],
            **({"x-costlab-saved-usd": "0"} if answer else {})})

    async def _settle(self, wire, limits, worst_usd, cost_usd, usage, row, t0, key, data, content_type) -> Answer:
        """Bill the call, write its row and keep its answer for the cache (settled even if cancelled meanwhile:
        `row["_settled"]` is set once the store has it, as a stream's clean-up checks)."""
        u = usage.as_dict() if usage is not None else {}
        row.update(status=200, outcome="ok", cost_usd=cost_usd, baseline_cost_usd=self._baseline_usd(row, u, cost_usd),
                   input_tokens=u.get("input_tokens", 0), cached_input_tokens=u.get("cached_input_tokens", 0),
                   cache_write_tokens=u.get("cache_write_tokens", 0), output_tokens=u.get("output_tokens", 0))
        self._finish(row, t0, row["queue_ms"] + row["service_ms"])
        row["_settled"] = True          # asettle lands (or raises a database error), cancelled or not
        await self.store.asettle(limits, worst_usd, cost_usd, row)
        self._count(row)
        answer = Answer(200, content_type, data, cost_usd, u)
        if self.cache is not None:
            self.cache.put(key, answer)
        row["_answer"] = answer
        return answer

    def _stream(self, upstream, wire, model, limits, worst_usd, row, t0, key) -> StreamingResponse:
        """Pass the upstream's events on as they come; price the usage in its final events, then settle."""
        sent = row.pop("_sent")
        pre_overhead_ms = (time.perf_counter() - t0) * 1000.0 - (time.perf_counter() - sent) * 1000.0

        async def events():
            chunks = []
            try:
                # each chunk goes on when the next arrives: the last one waits for the settlement, since
                # an SDK hangs up at the stream's end and the usage must be billed before that
                async for chunk in upstream.aiter_raw():
                    if chunks:
                        yield chunks[-1]
                    chunks.append(chunk)
                row["service_ms"] = (time.perf_counter() - sent) * 1000.0
                data = b"".join(chunks)
                priced = wire.stream_usage(sse_events(data), model)
                try:
                    usage, cost_usd = self.price(wire, priced, model) if priced else (None, worst_usd)
                except (CostlabError, ValueError, TypeError, AttributeError):
                    usage, cost_usd = None, worst_usd
                trailer = self._cost_trailer(wire, cost_usd)
                await self._settle(wire, limits, worst_usd, cost_usd, usage, row, t0, key, data + trailer,
                                   "text/event-stream")
                yield (chunks[-1] if chunks else b"") + trailer
            finally:
                await upstream.aclose()
                if not row.get("_settled"):   # the client went away mid-stream: bill the worst case, the usage never came
                    row.update(status=499, outcome="error", cost_usd=worst_usd, baseline_cost_usd=worst_usd)
                    self._finish(row, t0, (time.perf_counter() - sent) * 1000.0)
                    self.store.settle(limits, worst_usd, worst_usd, row)
                    self._count(row)

        return StreamingResponse(events(), media_type="text/event-stream", headers={
            "x-costlab-cache": "miss" if self.cache else "off", "x-costlab-overhead-ms": f"{pre_overhead_ms:.3f}",
            "x-costlab-reserved-usd": f"{worst_usd:.8f}", "x-costlab-request-id": row["request_id"],
            "cache-control": "no-cache"})

    async def _read(self, upstream: httpx.Response, leg: Leg, limits: list[Limit], worst_usd: float) -> bytes:
        """The upstream answer's body; if it breaks off (or the caller goes), the hold is released.

        Asked with `accept-encoding: identity`, an answer comes as it is sent: its bytes are read off
        the transport's stream without httpx's decoder and chunker (a few % of a call's CPU).
        """
        try:
            if upstream.headers.get("content-encoding", "identity") == "identity":
                return b"".join([chunk async for chunk in upstream.stream])
            return await upstream.aread()
        except httpx.HTTPError as exc:
            await self.store.arelease(limits, worst_usd)
            raise Refusal(502, f"the {leg.wire.provider} upstream broke off its answer ({type(exc).__name__})",
                          outcome="error") from None
        except BaseException:
            self.store.release(limits, worst_usd)
            raise
        finally:
            await upstream.aclose()

    @staticmethod
    def _cost_trailer(wire: Wire, cost_usd: float) -> bytes:
        """A stream's cost as a closing SSE comment the OpenAI and Anthropic SDKs skip (google-genai would choke on it)."""
        return f": x-costlab-cost-usd={cost_usd:.8f}\n\n".encode() if wire.provider != "google" else b""

    def _route(self, wire: Wire, path: str, body: dict, model: str, row: dict) -> tuple[str, str]:
        """The router's `cheapest`: the listed model of the caller's provider with the lowest worst case that fits.

        The row then names the chosen model, and its baseline is the same usage priced on the model asked for.
        """
        best = None
        for provider, candidate in self.config.route_models:
            if provider != wire.provider:
                continue
            window = model_prices(provider, candidate).context_window
            if window and wire.prompt_tokens(body, candidate) + wire.max_tokens(body) > window:
                continue
            cost_usd = wire.worst_case_usd(body, candidate)
            if best is None or cost_usd < best[0]:
                best = (cost_usd, candidate)
        if best is None or best[1] == model:
            return model, path
        row["model"], row["_asked_model"] = best[1], model
        return best[1], wire.set_model(body, path, best[1])

    def _legs(self, wire: Wire, path: str, body: dict, model: str, stream: bool) -> list[Leg]:
        """Where the request may go, in order: its provider's upstreams, then the retry stage's `fallback_models`.

        Only a plain text chat is translated to a fallback model's format (a streamed one is asked
        of the fallback whole and re-told to the caller as its own provider's events); any other
        request (tools, images, the Responses API) stays with its provider.
        """
        r = self.retry
        upstreams = self.config.upstreams.get(wire.provider, ())
        if not upstreams:
            raise Refusal(404, f"this gateway has no {wire.provider} upstream")
        legs = [Leg(wire, model, path, body, upstreams if r and r.fallback else upstreams[:1])]
        chat = wire.chat(body) if self.config.fallback_models else None
        if chat is None:
            return legs
        for provider, target in self.config.fallback_models:
            if (provider, target) != (wire.provider, model):
                other = WIRES[provider]
                other_path, other_body = other.chat_request(target, chat[0], wire.max_tokens(body), chat[1])
                legs.append(Leg(other, target, other_path, other_body, self.config.upstreams[provider], False))
        return legs

    async def _send(self, legs: list[Leg], request, row) -> tuple[httpx.Response, int, float, Leg]:
        """The upstream answer (a stream, not yet read) and the leg it came from, with retries and fallback.

        A 429, 529 or 5xx is retried with exponential backoff (never sooner than Retry-After);
        with `fallback = true` the next `[[upstreams]]` entry of the provider is tried when one
        gives up, then each fallback model's upstreams. The last answer, good or bad, is
        returned; only an unreachable upstream raises.
        """
        r = self.retry
        max_attempts = r.max_attempts if r else 1
        query = {k: v for k, v in request.query_params.items() if k != "key"}
        extra = {h: request.headers[h] for h in ("anthropic-version", "anthropic-beta") if h in request.headers}
        service_s, attempts, failure = 0.0, 0, None
        tries = [(leg, upstream) for leg in legs for upstream in leg.upstreams]
        for k, (leg, upstream) in enumerate(tries):
            content = json.dumps(leg.body).encode()
            headers = {**UPSTREAM_HEADERS, "content-type": "application/json",
                       **(extra if leg.native else leg.wire.chat_headers),
                       **leg.wire.upstream_headers(self.keys[upstream])}
            for attempt in range(max_attempts):
                attempts += 1
                started = time.perf_counter()
                response = None
                try:
                    response = await send(self.transport, "POST", upstream.base_url + leg.path, content=content,
                                          params=query if leg.native else None, headers=headers,
                                          timeout=UPSTREAM_TIMEOUT)
                except httpx.HTTPError as exc:
                    failure = Refusal(502, f"the {leg.wire.provider} upstream could not be reached "
                                           f"({type(exc).__name__})", outcome="error")
                else:
                    self.metrics.child(self.metrics.upstream, leg.wire.provider).observe(time.perf_counter() - started)
                    last_try = attempt == max_attempts - 1 and k == len(tries) - 1
                    if response.status_code == 200 or response.status_code not in RETRYABLE or last_try:
                        row["_sent"] = started
                        return response, attempts, service_s, leg
                    await response.aclose()
                service_s += time.perf_counter() - started
                if attempt < max_attempts - 1:
                    await asyncio.sleep(self._backoff_s(attempt, response))
        raise failure or Refusal(502, f"the {legs[0].wire.provider} upstream failed after {attempts} attempts",
                                 outcome="error")

    def _backoff_s(self, attempt: int, response: httpx.Response | None) -> float:
        r = self.retry
        backoff_s = min(r.max_backoff_ms, r.base_ms * 2 ** attempt) / 1000.0
        if r.jitter:
            backoff_s = self.rng.uniform(0, backoff_s)
        after = response.headers.get("retry-after") if response is not None else None
        try:
            return max(backoff_s, float(after)) if after else backoff_s
        except ValueError:
            return backoff_s

    # -- bookkeeping -----------------------------------------------------------------------

    def price(self, wire: Wire, response: dict, model: str):
        """genai-prices on the response's usage block, remembered per (model, usage block): usage repeats."""
        if not isinstance(response, dict):
            raise ValueError("the upstream answer is not a JSON object")
        usage = response.get("usageMetadata") if wire.provider == "google" else response.get("usage")
        key = (wire.provider, model, str(response.get("model") or response.get("modelVersion")),
               json.dumps(usage, sort_keys=True, default=str))
        priced = self.price_memo.get(key)
        if priced is None:
            priced = usage_and_cost(wire.provider, response, model)
            if len(self.price_memo) >= PRICE_MEMO_SIZE:
                self.price_memo.clear()
            self.price_memo[key] = priced
        return priced

    def _baseline_usd(self, row: dict, usage: dict, cost_usd: float) -> float:
        """What the call would have cost without the router: its usage on the model asked for (else its cost)."""
        asked = row.get("_asked_model")
        if asked is None or not usage:
            return cost_usd
        try:
            return price_usage_exact(row["provider"], asked, input_tokens=usage["input_tokens"],
                                     output_tokens=usage["output_tokens"],
                                     cached_input_tokens=usage["cached_input_tokens"],
                                     cache_write_tokens=usage["cache_write_tokens"],
                                     cache_write_1h_tokens=usage["cache_write_1h_tokens"])
        except (CostlabError, LookupError, ValueError):
            return cost_usd

    def _finish(self, row: dict, t0: float, outside_ms: float) -> float:
        """Close the row's clocks: latency, and the overhead = latency minus upstream and queueing time."""
        latency_ms = (time.perf_counter() - t0) * 1000.0
        row["latency_ms"] = latency_ms
        row["overhead_ms"] = max(latency_ms - outside_ms, 0.0)
        row.setdefault("tenant", row.get("learner"))
        row.setdefault("model", "")
        return row["overhead_ms"]

    def _count(self, row: dict) -> None:
        m, provider = self.metrics, row["provider"]
        m.child(m.requests, provider, row["outcome"]).inc()
        m.child(m.cost, provider).inc(row["cost_usd"])
        m.child(m.saved, provider).inc(max(row["baseline_cost_usd"] - row["cost_usd"], 0.0))
        m.overhead.observe(row["overhead_ms"] / 1000.0)

    def _read_budget_left(self) -> None:
        """The class's daily budget left, read from the store when /metrics is scraped (not on every call)."""
        c = self.config.class_limits
        if c.daily_usd is not None:
            spent, held = self.store.spent("class", today())
            self.metrics.budget_left.labels("day").set(c.daily_usd - spent - held)

    # -- the app -----------------------------------------------------------------------------

    def app(self):
        """The ASGI app: the providers' endpoints straight to the call's handler, the rest through Starlette.

        Starlette's router, its two middlewares and its per-route wrappers cost ~5 % of a call's CPU,
        for nothing a provider endpoint uses; an error there still ends as uvicorn's 500, as it did.
        """
        async def chat(request: Request, provider: str, rest: str):
            wire = WIRES.get(provider)
            rest = "/" + rest
            if wire is None or not rest.startswith(wire.prefix[len(provider) + 1:]):
                return JSONResponse({"error": {"message": f"no such endpoint {request.url.path}"}}, status_code=404)
            path = rest[len(wire.prefix) - len(provider) - 1:]
            served = wire.match(path)
            if served is None:
                return JSONResponse(wire.error(404, f"the gateway has no endpoint {request.url.path}"),
                                    status_code=404)
            return await self.handle(request, served, path)

        async def healthz(request: Request):
            self.store.spent("class", today())
            return JSONResponse({"status": "ok", "providers": sorted(self.config.upstreams), "pid": os.getpid()})

        async def metrics(request: Request):
            self._read_budget_left()
            return Response(self.metrics.text(), media_type="text/plain; version=0.0.4")

        async def usage(request: Request):
            token = None
            for wire in WIRES.values():
                token = token or wire.token(request.headers, {})
            learner = await self.learner(token)
            if learner is None:
                return JSONResponse({"error": {"message": "unknown or revoked token"}}, status_code=401)
            table = self.store.usage(learner.name)   # only the caller's own row, whatever they ask
            return JSONResponse(json.loads(table.to_json(orient="records"))[0])

        @contextlib.asynccontextmanager
        async def lifespan(app):
            await self.startup()
            try:
                yield
            finally:
                await self.shutdown()

        # POSTs to /{provider}/{rest} never reach these: `app` below sends them to `chat`
        routes = [Route("/healthz", healthz), Route("/metrics", metrics), Route("/costlab/usage", usage)]
        if self.prefix:      # the same endpoints under the hub's service prefix, and at the root
            routes = [Mount(self.prefix, routes=list(routes)), *routes]
        starlette = Starlette(routes=routes, lifespan=lifespan)
        prefix = self.prefix + "/" if self.prefix else None

        async def app(scope, receive, send):
            if scope["type"] == "http" and scope["method"] == "POST":
                path = scope["path"]
                if prefix and path.startswith(prefix):
                    path = path[len(prefix) - 1:]
                provider, slash, rest = path[1:].partition("/")
                if slash:            # /{provider}/{rest}: a provider's endpoint, or its 404 in JSON
                    response = await chat(Request(scope, receive), provider, rest)
                    await response(scope, receive, send)
                    return
            await starlette(scope, receive, send)

        return app


def _error_message(text: str) -> str:
    """The message of a provider's JSON error body (`error.message` in all three), else the text itself."""
    try:
        error = json.loads(text).get("error")
        return str(error.get("message")) if isinstance(error, dict) and error.get("message") else text
    except (ValueError, AttributeError):
        return text
