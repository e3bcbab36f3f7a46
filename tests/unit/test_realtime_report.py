"""The pure parts of `benchmarks.realtime_bench`'s report: py-spy summary, CPU budget and fit."""

from __future__ import annotations

import pytest

from benchmarks.realtime_report import budget, cpu_model, profile_summary

COLLAPSED = """\
<module> (trustctl:8);main (streams/app.py:300);_run_once (asyncio/base_events.py:1922);decode (<avro decoder X>) 30
<module> (trustctl:8);main (streams/app.py:300);_run_once (asyncio/base_events.py:1900);send (/work/x/streams/agents/outputs.py:50) 50
Thread._bootstrap (threading.py:995);Thread._bootstrap_inner (threading.py:1038);WorkerThread.run (mode/threads.py:66);_run_once (asyncio/base_events.py:1922) 20
not a stack line
"""


def test_profile_summary_self_inclusive_package_and_thread():
    s = profile_summary(COLLAPSED, seconds=2.0)
    assert s["samples"] == 100
    assert s["busy_fraction"] == 0.5  # 100 samples of 2 s at py-spy's 100 Hz
    assert s["top_self"][0] == ("send (streams/agents/outputs.py)", 50.0)
    inclusive = dict(s["top_inclusive"])
    assert inclusive["_run_once (asyncio/base_events.py)"] == 100.0  # line numbers merged, counted once per stack
    assert inclusive["main (streams/app.py)"] == 80.0
    assert dict(s["self_by_package"]) == {"streams/agents": 50.0, "<avro decoder X>": 30.0, "asyncio": 20.0}
    assert dict(s["by_thread"]) == {"<module> (trustctl)": 80.0, "WorkerThread.run (mode/threads.py)": 20.0}


def test_budget_is_the_two_cpu_targets_together():
    assert budget(1000, 7000) == pytest.approx(0.25 + 0.14)


def step(rate, ev_per_msg, messages, cpu, window=10.0):
    return {"offered_rate": rate, "events_per_message": ev_per_msg, "messages": messages, "window_s": window,
            "cpu_seconds": {"worker": cpu}}


def test_cpu_fit_recovers_a_linear_cost_and_leaves_out_idle_and_low_rates():
    # 300 µs a message + 40 µs an event, plus 1 % of a core idle over each 10 s window.
    steps = [step(r, x, 1000, 1000 * (300 + 40 * x) / 1e6 + 0.1) for r, x in ((1000, 2.0), (4000, 4.0), (8000, 8.0))]
    steps.append(step(50, 1.0, 100, 5.0))  # a low rate: left out of the fit
    m = cpu_model(steps, idle_fraction=0.01, bursts=[])
    assert m["per_message_us"] == pytest.approx(300, abs=0.1)
    assert m["per_event_us"] == pytest.approx(40, abs=0.01)
    assert m["holds"] and len(m["points"]) == 3


def test_cpu_fit_says_when_it_does_not_hold():
    steps = [step(1000, 2.0, 1000, 1.0), step(8000, 8.0, 1000, 0.8)]  # a message gets cheaper with more events
    assert cpu_model(steps, 0.0, [])["holds"] is False
    assert cpu_model(steps[:1], 0.0, []) is None  # one batch size: nothing to fit
