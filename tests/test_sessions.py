"""[traffic.sessions]: mean turns, think time and context growth recovered from a long run.

Traffic: 2 conversations opened per second for 20,000 s; turns uniform on 1..8 (mean 4.5);
think time exponential with mean 30 s; each message lognormal(median 100, sigma 0.5) tokens
(mean 100 e^0.125 = 113.3), each answer lognormal(200, 0.5) (mean 226.6); a 500-token shared
prefix per session; history on. Turn k+1 resends turn k's input plus its answer and the new
message, so the input grows by E[message] + E[answer] = 339.9 tokens a turn. Sessions opened
in the last 600 s are left out (a cut conversation has fewer turns; 7 think times exceed
600 s with probability ~1e-4). Tolerances: 1 % (about 10 standard errors at these counts).
"""

from __future__ import annotations

import numpy as np
import pytest

import lab

DURATION_S = 20_000.0


def session_run(**sessions):
    data = {"name": "chat", "duration_s": DURATION_S,
            "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 2.0},
                        "sessions": {"turns": {"dist": "empirical", "values": [1, 2, 3, 4, 5, 6, 7, 8]},
                                     "think_time_s": {"dist": "exponential", "mean": 30},
                                     "shared_prefix_tokens": 500, **sessions},
                        "input_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.5},
                        "output_tokens": {"dist": "lognormal", "median": 200, "sigma": 0.5}},
            "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": 100000,
                           "latency_ms": {"dist": "constant", "value": 500}}]}
    return lab.simulate(lab.scenario_from_dict(data), seed=0, progress=False)


def test_turns_think_time_and_context_growth_are_recovered_from_a_long_run():
    led = session_run().ledger.sort_values(["session", "turn"])
    first = led[led.turn == 0].set_index("session").t_arrival_s
    whole = first.index[first < DURATION_S - 600]
    led = led[led.session.isin(whole)]
    turns = led.groupby("session").size()
    same = led.session.to_numpy()[1:] == led.session.to_numpy()[:-1]
    think = np.diff(led.t_arrival_s.to_numpy())[same]
    growth = np.diff(led.input_tokens.to_numpy().astype(float))[same]
    answer_mean = 200 * np.exp(0.125)
    message_mean = 100 * np.exp(0.125)
    print(f"sessions: {len(turns):,}; mean turns {turns.mean():.3f} (4.5); think time {think.mean():.2f} s (30); "
          f"context growth {growth.mean():.1f} tokens/turn ({message_mean + answer_mean:.1f}); "
          f"first-turn input {led[led.turn == 0].input_tokens.mean():.1f} ({500 + message_mean:.1f})")
    assert turns.mean() == pytest.approx(4.5, rel=0.01)
    assert think.mean() == pytest.approx(30.0, rel=0.01)
    assert growth.mean() == pytest.approx(message_mean + answer_mean, rel=0.01)
    assert led[led.turn == 0].input_tokens.mean() == pytest.approx(500 + message_mean, rel=0.01)
    # each step of the history is exactly the previous turn's answer plus the new message
    prev_out = led.output_tokens.to_numpy()[:-1][same]
    assert (growth - prev_out > 0).all()


def test_without_history_inputs_do_not_grow_and_prompt_caching_reuses_a_session_prefix():
    led = session_run(history=False).ledger
    assert led.input_tokens.min() >= 501 and led.input_tokens.mean() == pytest.approx(500 + 100 * np.exp(0.125),
                                                                                       rel=0.01)
    data = {"name": "chat", "requests": 3000,
            "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 2.0},
                        "sessions": {"think_time_s": {"dist": "constant", "value": 20}, "shared_prefix_tokens": 2048}},
            "providers": [{"name": "openai", "model": "gpt-4o-mini", "latency_ms": {"dist": "constant", "value": 500}}],
            "pipeline": [{"stage": "prompt_cache", "rules": "ideal"}]}
    led = lab.simulate(lab.scenario_from_dict(data), progress=False).ledger
    later = led[led.turn > 0]
    # a later turn finds at least its session's 2,048-token prefix (16 blocks of 128) cached
    assert (later.cached_input_tokens >= 2048).all() and (led[led.turn == 0].cached_input_tokens == 0).all()


def test_sessions_with_requests_give_exactly_that_many_and_are_deterministic():
    data = {"name": "chat", "requests": 5000,
            "traffic": {"arrivals": {"process": "poisson", "rate_per_s": 5.0}, "sessions": {},
                        "prompts": {"catalog": 100}},
            "providers": [{"name": "openai", "model": "gpt-4o-mini"}]}
    s = lab.scenario_from_dict(data)
    a, b = lab.simulate(s, seed=3, progress=False), lab.simulate(s, seed=3, progress=False)
    assert a.summary() == b.summary() and len(a.ledger) == 5000
    assert np.all(np.diff(a.ledger.t_arrival_s) >= 0)
    openers = a.ledger[a.ledger.turn == 0]
    assert openers.input_tokens.nunique() <= 100          # openers come from the catalog


def test_sessions_with_a_trace_are_refused(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,input_tokens,output_tokens\n0,10,10\n")
    with pytest.raises(lab.ScenarioError, match="sessions"):
        lab.scenario_from_dict({"name": "x", "traffic": {"arrivals": {"process": "trace", "path": str(trace),
                                                                       "format": "csv"}, "sessions": {}},
                                "providers": [{"name": "openai", "model": "gpt-4o-mini"}]})
