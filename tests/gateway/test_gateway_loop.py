"""The loop: record traffic through the gateway -> a twin of its ledger -> what_if / recommend -> serve the
recommended pipeline -> measure the realized saving, and compare it with the twin's prediction.

The workload is synthetic and seeded: 400 questions drawn from a catalog of 40 with Zipf
popularity (alpha 1.0: 39 distinct questions, so 361 requests repeat an earlier one), one long system prompt
shared by all (so the provider's prompt cache acts in both runs) and two models (70 %
gpt-4o-mini, 30 % gpt-4.1-nano). The upstream is the fake server; the same 400 requests are
sent, in the same order, without and then with the pipeline the twin recommends.
"""

from __future__ import annotations

import numpy as np
import openai
import pytest

from lab.twin import calibrate, recommend, what_if

N, CATALOG, ALPHA = 400, 40, 1.0
SYSTEM = " ".join(f"Policy {k}: refunds within 30 days, exchanges within 60." for k in range(120))
POLICIES = {"cache": [{"stage": "cache", "ttl_s": 3600}],
            "cache + dedup": [{"stage": "cache", "ttl_s": 3600}, {"stage": "dedup"}],
            "dedup": [{"stage": "dedup"}]}


def workload(seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, CATALOG + 1) ** ALPHA
    questions = rng.choice(CATALOG, size=N, p=weights / weights.sum())
    models = np.where(rng.random(CATALOG) < 0.7, "gpt-4o-mini", "gpt-4.1-nano")   # one model per question
    return [(str(models[q]), f"Question {q}: what happens to order {q * 37}?") for q in questions]


def _replay(url: str, token: str, requests) -> None:
    client = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
    for model, question in requests:
        client.chat.completions.create(model=model, max_tokens=80, messages=[
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": question}])


@pytest.mark.timeout(600)
def test_record_twin_recommend_serve(fake, gateway, capsys):
    requests = workload()
    url, gw = gateway()
    _replay(url, gw.store.add_learner("class"), requests)
    recorded = gw.store.ledger()
    assert len(recorded) == N and (recorded.outcome == "ok").all()

    twin = calibrate(recorded, sla_p95_ms=5000)
    ranked = recommend(what_if(twin, POLICIES, seeds=5, requests=N)).table
    best = ranked.iloc[0]
    assert best.policy != "none"
    predicted_pct = float(best.reduction_pct)

    fake.reset()                                   # the provider's prompt cache starts cold again, as in run 1
    url2, gw2 = gateway(pipeline=POLICIES[best.policy])
    _replay(url2, gw2.store.add_learner("class"), requests)
    served = gw2.store.ledger()
    realized_pct = 100.0 * (1.0 - served.cost_usd.sum() / recorded.cost_usd.sum())
    hits = int((served.outcome == "cache_hit").sum())
    with capsys.disabled():
        print(f"\nloop: recommended {best.policy!r}: predicted {predicted_pct:.1f} % saving, realized "
              f"{realized_pct:.1f} % ({hits} of {N} cache hits; recorded ${recorded.cost_usd.sum():.6f}, "
              f"served ${served.cost_usd.sum():.6f})")
    distinct = len(set(requests))
    assert hits == N - distinct                      # an exact cache with no expiry misses each question once
    assert abs(predicted_pct - realized_pct) < 10.0
