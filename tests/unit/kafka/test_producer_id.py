"""A new idempotent producer's id, read from librdkafka's statistics (no broker)."""

from __future__ import annotations

import json

from streams.kafka import clients
from streams.settings import Settings


def stats(state: str) -> str:
    return json.dumps({"name": "p#producer-1", "eos": {"idemp_state": state, "producer_id": 7}})


def test_the_watch_turns_assigned_only_on_the_assigned_state():
    watch = clients.ProducerIdWatch()
    for state in ("Init", "RequestPID", "WaitTransport", "WaitPID"):
        watch(stats(state))
        assert not watch.assigned
    watch(stats("Assigned"))
    assert watch.assigned
    watch(stats("DrainBump"))  # later states do not take it back: the id was there once
    assert watch.assigned


def test_the_watch_ignores_a_report_that_does_not_parse_and_chains_the_callers_callback():
    seen = []
    watch = clients.ProducerIdWatch(chain=seen.append)
    watch('{"eos": {"idemp_state": "Assigned"')  # cut short
    assert not watch.assigned and len(seen) == 1


def test_watch_producer_id_hooks_an_idempotent_configuration_only():
    conf = clients.producer_config(Settings(), "x")
    watch = clients.watch_producer_id(conf)
    assert conf["stats_cb"] is watch and conf["statistics.interval.ms"] == clients.STATS_INTERVAL_MS
    plain = clients.producer_config(Settings(), "x", **{"enable.idempotence": False})
    assert clients.watch_producer_id(plain).assigned and "stats_cb" not in plain


class Polled:
    """A producer whose n-th poll delivers the n-th statistics report."""

    def __init__(self, watch, states):
        self.watch, self.states, self.polls = watch, list(states), 0

    def poll(self, timeout):
        self.polls += 1
        if self.states:
            self.watch(stats(self.states.pop(0)))
        return 0


def test_wait_for_producer_id_polls_until_assigned():
    watch = clients.ProducerIdWatch()
    producer = Polled(watch, ["Init", "WaitPID", "Assigned"])
    assert clients.wait_for_producer_id(producer, watch, timeout=10) is True
    assert producer.polls == 3


def test_wait_for_producer_id_gives_up_at_the_timeout():
    watch = clients.ProducerIdWatch()
    assert clients.wait_for_producer_id(Polled(watch, []), watch, timeout=0.02) is False
