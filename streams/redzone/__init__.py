"""The redzone: quarantined processes and their lifecycle (docs/behaviour.md §3).

Pure (no Redis, no Kafka): :mod:`~streams.redzone.model` is the state
machine and the union of isolation levels; :mod:`~streams.redzone.analysis`
turns a stored trace into a forensic report; :mod:`~streams.redzone.view` is
a worker's local view; :mod:`~streams.redzone.store` is the `RedzoneStore`
protocol, and :mod:`~streams.redzone.memory` its in-memory implementation.

Adapters: :mod:`~streams.redzone.redis_store` is the store on Redis (and the
client, retry and back-off helpers); :mod:`~streams.redzone.service` is the
operators' API on a store, publishing each transition to Kafka.
"""
