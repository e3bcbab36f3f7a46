"""The redzone: quarantined processes and their lifecycle (SPEC §3).

:mod:`streams.redzone.model` is the pure state machine; stores (in memory
for replay, Redis for the stream) persist what it decides and never re-implement it.
:mod:`streams.redzone.analysis` turns a stored trace into a forensic report
(pure); :mod:`streams.redzone.service` is the operators' API on the Redis
store, publishing each transition to Kafka.
"""
