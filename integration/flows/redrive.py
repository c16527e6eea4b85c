"""The dead-letter queue, for operators: redrive it into the events queue, and peek at it without personal data.

No Dagster here: the jobs and the weekday schedule are in ``defs/dlq/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..core.events import PoisonMessage, parse_sqs_body, unreadable_reason
from ..core.logfmt import kv
from ..core.messages import (
    ATTEMPTS,
    FAILED_AT,
    FAILED_BY,
    FAILURE_REASON,
    LAST_FAILURE_REASON,
    REDRIVE_COUNT,
    QueueMessage,
)
from ..core.ports import EventsQueue

DLQ_VISIBILITY_SECONDS = 60
PEEK_VISIBILITY_SECONDS = 5
# SQS short polls (WaitTimeSeconds=0) sample a subset of the servers and can answer empty while messages remain:
# the DLQ is read with short long polls, and only this many empty answers in a row mean it is empty.
DLQ_WAIT_SECONDS = 1
EMPTY_RECEIVES_TO_STOP = 2


MOVES = "moves back to the queue"
NEVER_READABLE = "parked: never readable"


def verdict(message: QueueMessage, park_after: int) -> str | None:
    """Why a redrive leaves this message in the DLQ (parks it), or None when it would move it back to the queue.
    A message that can never be read (``core.events.unreadable_reason``) is parked whatever ``park_after`` says:
    sent back, it would only be dead-lettered again."""
    reason = unreadable_reason(message.body, message.message_id)
    if reason is not None:
        return f"{NEVER_READABLE} ({reason})"
    if park_after and message.redrive_count >= park_after:
        return f"parked: redriven {message.redrive_count} times already"
    return None


def describe(message: QueueMessage, park_after: int = 3) -> dict:
    """What an operator may see of a dead-lettered message: ids, codes, reasons, times and what a redrive with
    ``park_after`` does with it; never body text."""
    try:
        event = parse_sqs_body(message.body, message.message_id)
        event_type, source_id = (
            event.event_type,
            str(
                (event.additional_information or {}).get("id")
                or (event.additional_information or {}).get("alertUuid")
                or ""
            ),
        )
    except PoisonMessage as poison:
        event_type, source_id = f"(unreadable: {poison.reason})", ""
    age = message.age_seconds
    return {
        "sqs_message_id": message.message_id,
        "event_type": event_type,
        "source_id": source_id or None,
        "failure_reason": message.attributes.get(FAILURE_REASON),
        "failed_at": message.attributes.get(FAILED_AT),
        "failed_by": message.attributes.get(FAILED_BY),
        "attempts": message.attributes.get(ATTEMPTS),
        "redrives": message.redrive_count,
        "age_hours": round(age / 3600, 1) if age is not None else None,
        "redrive": verdict(message, park_after) or MOVES,
    }


def receive_dlq(queue: EventsQueue, max_messages: int, visibility_timeout: int) -> list[QueueMessage]:
    """One receive from the DLQ as a short long poll (``DLQ_WAIT_SECONDS``), never a short poll."""
    return queue.receive_dlq(max_messages, wait_seconds=DLQ_WAIT_SECONDS, visibility_timeout=visibility_timeout)


def arrived_after(message: QueueMessage, started_ms: int) -> bool:
    """True when ``message`` reached the DLQ after a redrive that began at ``started_ms`` (epoch milliseconds): its
    ``SentTimestamp`` (set by SQS when the message was sent to the DLQ) is later. Such a message was dead-lettered
    while the redrive ran, typically by a consumer failing a message this redrive had just moved back; moving it
    again would redrive one failure twice in one run. A message without a ``SentTimestamp`` counts as older."""
    return message.sent_timestamp_ms is not None and message.sent_timestamp_ms > started_ms


def redrive(
    queue: EventsQueue,
    *,
    max_messages: int = 10_000,
    park_after: int = 3,
    log: Any = None,
    clock: Callable[[], float] = time.time,
) -> dict:
    """Move dead-lettered messages back to the main queue (send, then delete), counting redrives on each message.

    Only messages that were in the DLQ when the redrive began are moved (:func:`arrived_after`): those dead-lettered
    while it runs are left in the DLQ, untouched, for the next redrive, and counted as ``newer``.
    At most ``max_messages`` are moved (0 = no limit): each receive asks for no more than are still allowed.
    Messages redriven ``park_after`` times already, and messages that can never be read, are parked: left in the DLQ
    (never deleted) and reported with the reason.
    The DLQ counts as empty after ``EMPTY_RECEIVES_TO_STOP`` receives in a row bring nothing new.
    """
    started_ms = int(clock() * 1000)
    moved: list[str] = []
    parked: list[dict] = []
    failed: list[dict] = []
    newer: list[str] = []
    held: list[tuple[str, str]] = []  # parked and newer messages stay invisible until the end, then are released
    seen: set[str] = set()
    empty = 0
    while not max_messages or len(moved) < max_messages:
        wanted = 10 if not max_messages else min(10, max_messages - len(moved))
        batch = receive_dlq(queue, wanted, DLQ_VISIBILITY_SECONDS)
        held += [(m.message_id, m.receipt_handle) for m in batch if m.message_id in seen]
        fresh = [m for m in batch if m.message_id not in seen]
        if not fresh:
            empty += 1
            if empty >= EMPTY_RECEIVES_TO_STOP:
                break
            continue
        empty = 0
        for message in fresh:
            seen.add(message.message_id)
            if arrived_after(message, started_ms):
                newer.append(message.message_id)
                held.append((message.message_id, message.receipt_handle))
                continue
            if verdict(message, park_after) is not None:
                parked.append(describe(message, park_after))
                held.append((message.message_id, message.receipt_handle))
                continue
            attributes = {
                k: v for k, v in message.attributes.items() if k not in (FAILURE_REASON, FAILED_AT, FAILED_BY, ATTEMPTS)
            }
            attributes[REDRIVE_COUNT] = str(message.redrive_count + 1)
            if message.attributes.get(FAILURE_REASON):
                attributes[LAST_FAILURE_REASON] = message.attributes[FAILURE_REASON]
            try:
                queue.send(message.body, attributes)
                queue.delete_dlq([(message.message_id, message.receipt_handle)])
                moved.append(message.message_id)
            except Exception as exc:  # noqa: BLE001 - left in the DLQ: it reappears there after the visibility timeout
                failed.append({"sqs_message_id": message.message_id, "error": type(exc).__name__})
                if log:
                    log.warning(kv("redrive_failed", sqs_message_id=message.message_id, error=type(exc).__name__))
    if held:
        queue.change_visibility(held, 0, queue_url=queue.dlq_url)
    return {"moved": moved, "parked": parked, "failed": failed, "newer": newer}


def peek(queue: EventsQueue, max_messages: int = 50, park_after: int = 3) -> list[dict]:
    """Look at up to ``max_messages`` DLQ messages, each with what a redrive with ``park_after`` would do with it;
    they become visible again a few seconds later.

    Stops after ``EMPTY_RECEIVES_TO_STOP`` receives in a row bring nothing new, or after 20 s."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + 20
    empty = 0
    while len(seen) < max_messages and time.monotonic() < deadline:
        batch = receive_dlq(queue, min(10, max_messages - len(seen)), PEEK_VISIBILITY_SECONDS)
        fresh = [m for m in batch if m.message_id not in seen]
        if not fresh:
            empty += 1
            if empty >= EMPTY_RECEIVES_TO_STOP:
                break
            continue
        empty = 0
        for message in fresh:
            seen[message.message_id] = describe(message, park_after)
    return list(seen.values())
