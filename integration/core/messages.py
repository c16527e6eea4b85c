"""Queue messages as the integration handles them, whatever queue they come from (SQS, or a fake in tests).

``QueueMessage`` is the one shape of a message between the queue and the flows: the sensor receives it, intake
routes it, a batch run holds its lease (``received_at``) and acknowledges it by ``message_id`` and
``receipt_handle``. Message attributes the integration adds itself (SQS attributes, not the SNS ones in the body)
are named here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

FAILURE_REASON = "hmpps-failure-reason"  # why it was dead-lettered
FAILED_AT = "hmpps-failed-at"  # when (UTC, ISO-8601)
FAILED_BY = "hmpps-failed-by"  # a run id, or sensor:<name>
ATTEMPTS = "hmpps-attempts"  # deliveries before dead-lettering
REDRIVE_COUNT = "hmpps-redrive-count"  # redrives so far
LAST_FAILURE_REASON = "hmpps-last-failure-reason"  # the reason of the dead-lettering before the latest redrive
MAX_ATTRIBUTE_LENGTH = 1000


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1
    sent_timestamp_ms: int | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)  # our own SQS message attributes
    received_at: float = 0.0  # epoch seconds: when this delivery was received (the lease started)

    @property
    def handle(self) -> tuple[str, str]:
        """(message id, receipt handle): what deleting or changing the visibility of this delivery takes."""
        return self.message_id, self.receipt_handle

    @property
    def age_seconds(self) -> float | None:
        if self.sent_timestamp_ms is None:
            return None
        return max(0.0, time.time() - self.sent_timestamp_ms / 1000)

    @property
    def redrive_count(self) -> int:
        try:
            return int(self.attributes.get(REDRIVE_COUNT, "0"))
        except ValueError:
            return 0


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed
