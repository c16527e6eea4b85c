"""What the queue sensor does with the messages of one tick (pure).

* unreadable messages (poison) go straight to the dead-letter queue with the reason;
* linkage events (``probation-case.prison-identifier.added`` and ``.updated``: ``events.LINKAGE_EVENT_TYPES``) become
  a backfill of the NOMS number's partition;
* every other message is leased to a micro-batch run of ``prison_events_job``, which acknowledges it itself. The
  leased message's body is the canonical envelope of its event (``events.envelope_body``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from .events import EventKind, PoisonMessage, envelope_body, is_noms_number, parse_sqs_body
from .messages import QueueMessage


@dataclass(frozen=True)
class LinkageRequest:
    noms_number: str
    messages: tuple[QueueMessage, ...]
    event_types: tuple[str, ...] = ()  # of each message: .added or .updated (the backfill's telemetry cause)

    @property
    def run_key(self) -> str:
        """Unique per receive (receipt handles change on every delivery): a redelivered linkage event gets a new
        backfill run instead of being blocked by an old run's key (docs/queue-protocol.md)."""
        return "link-" + _digest(m.receipt_handle for m in self.messages)


@dataclass
class IntakePlan:
    batches: list[list[QueueMessage]] = field(default_factory=list)
    linkage: list[LinkageRequest] = field(default_factory=list)
    poison: list[tuple[QueueMessage, str]] = field(default_factory=list)

    @property
    def leased(self) -> int:
        return sum(len(batch) for batch in self.batches)


def plan_intake(messages: Sequence[QueueMessage], *, max_per_run: int) -> IntakePlan:
    plan = IntakePlan()
    leased: list[QueueMessage] = []
    linkage: dict[str, list[tuple[QueueMessage, str]]] = {}
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
            elif not is_noms_number(noms):
                plan.poison.append((message, "linkage event has an invalid NOMS number"))
            else:
                linkage.setdefault(noms, []).append((message, event.event_type))
            continue
        leased.append(replace(message, body=envelope_body(event)))
    plan.linkage = [
        LinkageRequest(noms, tuple(m for m, _ in pairs), tuple(t for _, t in pairs)) for noms, pairs in linkage.items()
    ]
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


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode())
    return h.hexdigest()[:20]
