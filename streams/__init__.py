"""ForgeOne Trust: a Zero-Trust syscall enforcement engine.

The pure core (policy graph, evaluation, adaptive trust, redzone state
machine) lives in :mod:`streams.policy`, :mod:`streams.engine` and
:mod:`streams.redzone.model`; Kafka, Faust and Redis sit at the edges.
"""

__version__ = "0.1.0"
