"""The redzone: quarantined processes and their lifecycle (SPEC §3).

:mod:`streams.redzone.model` is the pure state machine; stores (in memory
for replay, Redis for the stream) persist what it decides and never re-implement it.
"""
