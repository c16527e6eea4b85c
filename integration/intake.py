"""What the queue sensor does with the messages of one tick (pure: no Dagster, no AWS).

* unreadable messages (poison) go straight to the dead-letter queue with the reason;
* linkage events (``probation-case.prison-identifier.added``) become a backfill of the NOMS number's partition;
* every other message is leased to a micro-batch run of ``prison_events_job``, which acknowledges it itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Sequence

from .clients.queue import QueueMessage
from .events import DomainEvent, EventKind, PoisonMessage, envelope_body, parse_sqs_body
from .pipeline import LeasedEvent

NOMS_NUMBER = re.compile(r"^[A-Z]\d{4}[A-Z]{2}$")


@dataclass(frozen=True)
class LinkageRequest:
    noms_number: str
    messages: tuple[QueueMessage, ...]

    @property
    def run_key(self) -> str:
        """Unique per receive (receipt handles change on every delivery): a redelivered linkage event gets a new
        backfill run instead of being blocked by an old run's key (dagster-notes §3.2)."""
        return "link-" + _digest(m.receipt_handle for m in self.messages)


@dataclass
class IntakePlan:
    batches: list[list[LeasedEvent]] = field(default_factory=list)
    linkage: list[LinkageRequest] = field(default_factory=list)
    poison: list[tuple[QueueMessage, str]] = field(default_factory=list)

    @property
    def leased(self) -> int:
        return sum(len(batch) for batch in self.batches)


def plan_intake(messages: Sequence[QueueMessage], *, received_at: float, max_per_run: int) -> IntakePlan:
    plan = IntakePlan()
    leased: list[LeasedEvent] = []
    linkage: dict[str, list[QueueMessage]] = {}
    for message in messages:
        try:
            event = parse_sqs_body(message.body, message.message_id)
        except PoisonMessage as poison:
            plan.poison.append((message, f"unreadable message: {poison.reason}"))
            continue
        if event.kind is EventKind.LINKAGE:
            noms = event.noms_number
            if not noms:
                plan.poison.append((message, "linkage event has no NOMS identifier"))
            elif not NOMS_NUMBER.match(noms):
                plan.poison.append((message, "linkage event has an invalid NOMS number"))
            else:
                linkage.setdefault(noms, []).append(message)
            continue
        leased.append(_lease(message, event, received_at))
    plan.linkage = [LinkageRequest(noms, tuple(msgs)) for noms, msgs in linkage.items()]
    plan.batches = split_evenly(leased, max_per_run)
    return plan


def split_evenly(items: list, max_size: int) -> list[list]:
    """As few batches as ``max_size`` allows, of equal sizes (1,200 with a maximum of 1,000 -> 600 + 600): the fixed
    cost of a run is paid as rarely as possible, and no batch is a small straggler."""
    if not items:
        return []
    count = -(-len(items) // max(1, max_size))
    size, extra = divmod(len(items), count)
    batches, start = [], 0
    for n in range(count):
        end = start + size + (1 if n < extra else 0)
        batches.append(items[start:end])
        start = end
    return batches


def batch_run_key(batch: Sequence[LeasedEvent]) -> str:
    return "events-" + _digest(e.receipt_handle for e in batch)


def _lease(message: QueueMessage, event: DomainEvent, received_at: float) -> LeasedEvent:
    return LeasedEvent(sqs_message_id=message.message_id, receipt_handle=message.receipt_handle,
                       body=envelope_body(event), receive_count=message.receive_count, received_at=received_at,
                       sent_timestamp_ms=message.sent_timestamp_ms, attributes=dict(message.attributes))


def _digest(parts) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode())
    return h.hexdigest()[:20]
