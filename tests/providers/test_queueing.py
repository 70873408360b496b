"""The mock provider is an M/M/c queue: mean wait in line against Erlang C.

Erlang C (A. K. Erlang, 1917; e.g. Kleinrock, "Queueing Systems", Vol. 1, eq. 3.40):
with offered load a = lambda/mu and utilisation rho = a/c,
    P(wait) = (a^c / c! / (1 - rho)) / (sum_{k<c} a^k/k! + a^c / c! / (1 - rho))
    Wq      = P(wait) / (c mu - lambda)
Simulated: Poisson arrivals, exponential service (latency_ms), c slots, no errors, no stages.
Run lengths are chosen so that the standard error of the simulated mean is about 1 % or less
(measured: one 2 M-request run at c=16, rho=0.9 scatters by about 2.5 %; four are averaged).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import lab
from lab.sim import Simulation
from lab.traffic import make_requests


def erlang_c_wait_s(lam: float, mu: float, c: int) -> float:
    a = lam / mu
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


def simulated_wait_s(c: int, rho: float, n: int, seed: int, mean_service_ms: float = 1000.0) -> float:
    mu = 1000.0 / mean_service_ms
    s = lab.scenario_from_dict({
        "name": "mmc", "requests": n,
        "traffic": {"arrivals": {"process": "poisson", "rate_per_s": rho * c * mu}},
        "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": c,
                       "latency_ms": {"dist": "exponential", "mean": mean_service_ms}}]})
    stream = make_requests(s, np.random.default_rng(seed), n)
    run = Simulation(s, stream, seed, optimized=False, progress=False).run_to_end()
    return float(run.queue_ms.astype(np.float64).mean() / 1000.0)


@pytest.mark.parametrize("c,rho,n,seeds", [
    (1, 0.5, 400_000, (0,)),
    (4, 0.8, 1_000_000, (0, 1)),
    (16, 0.9, 2_000_000, (10, 11, 12, 13)),
])
def test_mean_queue_wait_matches_erlang_c(c, rho, n, seeds):
    expected = erlang_c_wait_s(rho * c, 1.0, c)
    measured = float(np.mean([simulated_wait_s(c, rho, n, seed) for seed in seeds]))
    error = measured / expected - 1
    print(f"M/M/{c} rho={rho}: Erlang C {expected:.4f} s, simulated {measured:.4f} s, error {100 * error:+.2f} %")
    assert abs(error) < 0.03


def test_erlang_c_formula_known_value():
    # M/M/1: Wq = rho / (mu - lambda); rho = 0.5, mu = 1 -> 1.0 s
    assert erlang_c_wait_s(0.5, 1.0, 1) == pytest.approx(1.0)


def test_errors_and_outages_are_recorded():
    s = lab.scenario_from_dict({
        "name": "errs", "requests": 20_000,
        "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 10}},
        "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 64, "error_rate": 0.1,
                       "latency_ms": {"dist": "constant", "value": 100},
                       "outages": [{"start_s": 100, "end_s": 200}]}]})
    r = lab.simulate(s, seed=1, progress=False)
    led = r.ledger
    in_outage = (led.t_arrival_s >= 100) & (led.t_arrival_s < 200)
    assert (led.outcome[in_outage] == "error").all()
    rest = led[~in_outage]
    assert abs((rest.outcome == "error").mean() - 0.1) < 0.01
    assert (led.cost_usd[led.outcome == "error"] == 0).all()
    assert r.summary()["error_rate"] == pytest.approx((led.outcome == "error").mean())
