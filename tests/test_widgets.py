"""Dashboards without a browser: set a control's `.value`, read what the dashboard shows.

Expected directions come from the model, not from printed numbers: a smaller LRU cache on the
same request stream never hits more (LRU is a stack algorithm), so it costs at least as much; a
lower cascade threshold escalates fewer answers, so it costs less and scores lower quality.
"""

from __future__ import annotations

import asyncio

import pytest

from lab import runs
from lab.errors import CostlabError
from lab.widgets import KNOBS, PLAYGROUND, Dashboard, Debouncer, Knob, default_scheduler


class ManualScheduler:
    """Collects scheduled calls; `fire()` runs the live ones, as an event loop would later."""

    def __init__(self):
        self.calls = []

    def __call__(self, delay_s, fn):
        handle = _Handle(fn)
        self.calls.append(handle)
        return handle

    def fire(self):
        for h in list(self.calls):
            if not h.cancelled:
                h.fn()
        self.calls.clear()


class _Handle:
    def __init__(self, fn):
        self.fn, self.cancelled = fn, False

    def cancel(self):
        self.cancelled = True


def test_changing_a_slider_changes_the_result_shown():
    dash = Dashboard("support-chatbot", knobs=["cache capacity", "cache TTL (s)"], requests=1500, debounce_s=0)
    before = dash.summary
    chart, numbers = dash.chart.value, dash.numbers.value
    assert dash.runs == 1 and before["cache_hit_rate"] > 0
    dash.controls["cache capacity"].value = 10          # from the scenario's 1,000 entries
    after = dash.summary
    assert dash.runs == 2
    assert dash.settings()["pipeline[cache].capacity"] == 10
    assert after["cache_hit_rate"] < before["cache_hit_rate"]
    assert after["cost_usd"] > before["cost_usd"]
    assert dash.chart.value != chart and dash.numbers.value != numbers
    assert f"{after['cost_usd']:,.4f}" in dash.numbers.value
    assert len(dash.history) == 2 and dash.history[-1].settings["pipeline[cache].capacity"] == 10


def test_playground_threshold_moves_cost_and_quality():
    dash = Dashboard.playground(requests=1500, debounce_s=0)
    assert set(dash.controls) >= {"cache capacity", "cascade threshold", "daily budget (USD)", "traffic rate (req/s)"}
    high = dash.summary
    dash.controls["cascade threshold"].value = 0.2
    low = dash.summary
    assert low["cost_usd"] < high["cost_usd"]
    assert low["quality_mean"] < high["quality_mean"]
    assert PLAYGROUND["pipeline"][2]["threshold"] == 0.8        # the module's scenario is never modified


def test_knobs_for_absent_stages_are_left_out():
    dash = Dashboard("support-chatbot", requests=500, debounce_s=0)
    assert "cache capacity" in dash.controls and "traffic rate (req/s)" in dash.controls
    assert not {"batch window (ms)", "cascade threshold", "daily budget (USD)"} & set(dash.controls)
    batch = Dashboard("analytics-dashboard-batching", requests=500, debounce_s=0)
    assert set(batch.controls) == {"batch window (ms)", "batch size"}    # mmpp traffic: no rate knob
    with pytest.raises(CostlabError, match="did you mean 'cache capacity'"):
        Dashboard("support-chatbot", knobs=["cache capacty"])


def test_rapid_changes_run_once_after_the_quiet_period():
    sched = ManualScheduler()
    dash = Dashboard("support-chatbot", knobs=["cache capacity"], requests=800, debounce_s=0.5, scheduler=sched)
    assert dash.runs == 1                    # building it runs once, synchronously
    for value in (50, 100, 200):
        dash.controls["cache capacity"].value = value
    assert dash.runs == 1 and dash.pending and "re-running" in dash.status.value
    sched.fire()
    assert dash.runs == 2 and not dash.pending
    assert dash.history[-1].settings["pipeline[cache].capacity"] == 200


def test_flush_runs_a_pending_change_now():
    sched = ManualScheduler()
    dash = Dashboard("support-chatbot", knobs=["cache capacity"], requests=800, debounce_s=10, scheduler=sched)
    dash.controls["cache capacity"].value = 30
    assert dash.flush() is True and dash.runs == 2
    assert dash.flush() is False
    sched.fire()                              # the cancelled timer must not run it again
    assert dash.runs == 2


def test_set_changes_several_controls_and_runs_once():
    dash = Dashboard.playground(requests=800, debounce_s=0)
    result = dash.set(cache_capacity=20, cascade_threshold=0.5)
    assert dash.runs == 2 and result is dash.result
    assert dash.settings()["pipeline[cascade].threshold"] == 0.5
    with pytest.raises(CostlabError, match="no control"):
        dash.set(cache_size=5)


def test_a_bad_setting_is_shown_in_the_widget_not_raised():
    policy = Knob("cache policy", "pipeline[cache].policy", "choice", options=("lru", "mru"), default="lru")
    dash = Dashboard("support-chatbot", knobs=[policy], requests=800, debounce_s=0)
    good = dash.result
    dash.controls["cache policy"].value = "mru"
    assert dash.error is not None and "policy" in dash.error and "mru" in dash.error
    assert "cannot run" in dash.status.value and "mru" in dash.status.value
    assert dash.result is good                # the last good run stays on show
    dash.controls["cache policy"].value = "lru"
    assert dash.error is None and dash.runs == 2


def test_an_unexpected_failure_is_shown_too(monkeypatch):
    dash = Dashboard("support-chatbot", knobs=["cache capacity"], requests=800, debounce_s=0)

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(runs, "run", broken)
    dash.controls["cache capacity"].value = 40
    assert dash.error == "unexpected ZeroDivisionError: boom"
    assert "ZeroDivisionError" in dash.status.value


def test_debouncer_schedules_on_a_running_event_loop():
    calls = []

    async def main():
        d = Debouncer(0.01, lambda: calls.append(1))
        d.trigger()
        d.trigger()                           # supersedes the first
        assert d.pending
        await asyncio.sleep(0.1)
        return d.pending

    assert asyncio.run(main()) is False
    assert calls == [1]


def test_default_scheduler_without_a_loop_uses_a_daemon_timer():
    handle = default_scheduler(60, lambda: None)
    try:
        assert handle.daemon                  # a pending re-run never keeps the process alive
    finally:
        handle.cancel()


def test_knob_widgets_round_trip_values():
    for knob in KNOBS.values():
        widget = knob.make_widget(knob.default)
        value = knob.coerce(widget.value)
        assert value == knob.default or abs(value - knob.default) <= 0.01 * abs(knob.default)
