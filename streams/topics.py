"""The one registry of the engine's topics (docs/behaviour.md §4).

Every place that needs a topic's name, key, Avro schema, partition count or
cleanup policy reads it here: `trustctl topics ensure`, `trustctl tail`, the
audit sink, the worker, the shim and the docker-compose test.  Pure data: no
Kafka client is imported.

Retention (also in deploy/README.md):

    trust.syscall-events   1 day     high volume; the decisions keep the trace
    trust.decisions        7 days
    trust.violations       7 days
    trust.quarantine       7 days
    trust.redzone-events   7 days    audit trail of redzone transitions
    trust.policy           compacted, kept forever; 1 partition (one key, read whole by every worker)
    trust.dlq              14 days   time to look at and replay bad input
    trust.enforcement      7 days    what shims did to real processes (§3.1)
    trust.control          7 days    beyond the reference: operator commands to the decide
                                     agent (trust resets); key = identity id, as many
                                     partitions as the events (co-partitioned)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

DAY_MS = 24 * 60 * 60 * 1000


class Cleanup(str, Enum):
    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic of §4: `kind` is the short name code uses, `suffix` follows the prefix."""

    kind: str
    suffix: str
    key: str
    schema: str
    cleanup: Cleanup = Cleanup.DELETE
    retention_ms: int = 7 * DAY_MS
    single_partition: bool = False
    batch_field: str | None = None  # the field holding a batch, for readers that unroll
    extension: bool = False  # beyond the reference table of §4

    def config(self) -> dict[str, str]:
        """Broker configuration of the topic."""
        return {"cleanup.policy": self.cleanup.value,
                "retention.ms": "-1" if self.cleanup is Cleanup.COMPACT else str(self.retention_ms)}


# In the order of the table of §4, then the extension topics.
TOPICS: tuple[Topic, ...] = (
    Topic("events", "syscall-events", "identity id of the first event", "SyscallEventBatch",
          retention_ms=1 * DAY_MS, batch_field="events"),
    Topic("decisions", "decisions", "the input batch's key", "DecisionBatch", batch_field="decisions"),
    Topic("violations", "violations", "identity id", "Violation"),
    Topic("quarantine", "quarantine", "process id", "QuarantineCommand"),
    Topic("redzone", "redzone-events", "process id", "RedzoneEvent"),
    Topic("policy", "policy", "`policy`", "PolicyDocument", cleanup=Cleanup.COMPACT, single_partition=True),
    Topic("dlq", "dlq", "original key", "DeadLetter", retention_ms=14 * DAY_MS),
    Topic("enforcement", "enforcement", "process id", "EnforcementAction"),
    Topic("control", "control", "identity id", "TrustControl", extension=True),
)

BY_KIND: dict[str, Topic] = {t.kind: t for t in TOPICS}
