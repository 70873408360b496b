"""1,000 concurrent requests from 50 learners with small daily caps, over loopback, bounded at 100 in flight.

Where the numbers come from: every request asks gpt-4o-mini for at most 40 tokens and the
fake server's replies are at least 40 tokens long (`REPLY_MIN_TOKENS`), so each call bills
exactly its worst case (the prompt counted by tiktoken, exact for OpenAI, plus 40 output
tokens, at genai-prices' price). A cap of 16.5 of the dearest calls lets 16 calls through and
leaves less than one call unspent: at least 16/16.5 = 97 % of it is used (>= 95 % asked);
a class cap of 500 calls leaves at most one unspent (99.8 %).
"""

from __future__ import annotations

import asyncio
import collections
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.gateway.store import today
from lab.pricing import price_usage_exact
from lab.tokens import count_messages

LEARNERS, PER_LEARNER, IN_FLIGHT, MAX_TOKENS = 50, 20, 100, 40


def _messages(learner: int, k: int) -> list[dict]:
    return [{"role": "user", "content": f"Question {k} from learner {learner}: where is order {k * 7919 % 1000}?"}]


def _worst_usd(messages) -> float:
    return price_usage_exact("openai", "gpt-4o-mini", input_tokens=count_messages(messages, "gpt-4o-mini", "openai"),
                             output_tokens=MAX_TOKENS)


#: each learner's daily cap, in worst cases of the storm's dearest call: 16 of their 20 calls fit
CAP_IN_CALLS = 16.5


def _dearest_usd() -> float:
    """The worst case of the storm's dearest call (what a hold takes at most)."""
    return max(_worst_usd(_messages(i, k)) for i in range(LEARNERS) for k in range(PER_LEARNER))


def _learners(store, cap_usd: float) -> list[str]:
    """The storm's learners, each with daily cap `cap_usd`; their tokens."""
    return [store.add_learner(f"learner{i:02d}", daily_usd=cap_usd) for i in range(LEARNERS)]


def _learner_spend(rows, cap_usd: float):
    """Each learner's billed spend, checked: never past the cap, at least 95 % of it used."""
    spent = rows.groupby("learner").cost_usd.sum()
    assert (spent <= cap_usd + 1e-12).all(), spent.max() / cap_usd
    assert (spent >= 0.95 * cap_usd).all(), spent.min() / cap_usd
    return spent


async def _storm(urls, tokens: list[str]) -> collections.Counter:
    """Every learner's 20 calls, interleaved, at most 100 in flight, spread over the gateways in `urls`."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    gate = asyncio.Semaphore(IN_FLIGHT)
    statuses = collections.Counter()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=IN_FLIGHT)) as client:
        async def one(learner: int, k: int):
            async with gate:
                url = urls[(learner + k) % len(urls)]
                r = await client.post(f"{url}/openai/v1/chat/completions",
                                      headers={"authorization": f"Bearer {tokens[learner]}"},
                                      json={"model": "gpt-4o-mini", "messages": _messages(learner, k),
                                            "max_tokens": MAX_TOKENS})
                statuses[r.status_code] += 1
        # interleaved, so every learner has many calls in flight at once
        await asyncio.gather(*(one(i, k) for k in range(PER_LEARNER) for i in range(LEARNERS)))
    return statuses


def _check_no_row_lost_or_doubled(fake, gw, statuses):
    """`gw`: anything with a `.store` (a Gateway, or the shared store of several)."""
    rows = gw.store.ledger()
    assert len(rows) == LEARNERS * PER_LEARNER == sum(statuses.values())
    assert rows.request_id.is_unique
    assert (rows.outcome == "ok").sum() == statuses[200] == fake.stats()["by_status"].get("200", 0)
    assert (rows.outcome == "rejected").sum() == statuses[429]
    for name in rows.learner.unique():       # the spend rows agree with the ledger, nothing left reserved
        spent, held = gw.store.spent(f"learner:{name}", today())
        assert spent == pytest.approx(rows[rows.learner == name].cost_usd.sum(), rel=1e-9) and abs(held) < 1e-12
    return rows


@pytest.mark.timeout(300)
def test_learner_caps_hold_under_1000_concurrent_requests(fake, gateway):
    cap_usd = CAP_IN_CALLS * _dearest_usd()
    url, gw = gateway()
    statuses = asyncio.run(_storm(url, _learners(gw.store, cap_usd)))
    rows = _check_no_row_lost_or_doubled(fake, gw, statuses)
    spent = _learner_spend(rows, cap_usd)
    served = rows[rows.outcome == "ok"].groupby("learner").size()
    assert len(spent) == LEARNERS
    assert (served < PER_LEARNER).all()           # the cap bound every learner
    print(f"\nlearner caps: {statuses[200]} served, {statuses[429]} refused; spend/cap min "
          f"{spent.min() / cap_usd:.4f} max {spent.max() / cap_usd:.4f}")


@pytest.mark.timeout(300)
def test_class_cap_holds_under_1000_concurrent_requests(fake, gateway):
    dearest = _dearest_usd()
    class_cap_usd = 500 * dearest                 # half of what the learners would spend
    url, gw = gateway(**{"class": {"daily_usd": class_cap_usd}})
    statuses = asyncio.run(_storm(url, _learners(gw.store, CAP_IN_CALLS * dearest)))
    rows = _check_no_row_lost_or_doubled(fake, gw, statuses)
    total = rows.cost_usd.sum()
    assert 0.95 * class_cap_usd <= total <= class_cap_usd + 1e-12, total / class_cap_usd
    assert gw.store.spent("class", today())[0] == pytest.approx(total, rel=1e-9)
    print(f"\nclass cap: {statuses[200]} served, {statuses[429]} refused; spend/cap {total / class_cap_usd:.4f}")


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=4.1e9, allow_nan=False), min_size=1, max_size=20))
def test_today_names_the_utc_day_of_any_time_asked_in_any_order(times):
    """`today` remembers the last day it named (every call asks for it); in any order of times, each
    answer is still datetime's own UTC date of that time, the period a daily cap's spend row has."""
    for t in times:
        assert today(t) == datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
