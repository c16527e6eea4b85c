"""Operator jobs for the dead-letter queue: redrive it into the main queue, and peek at it without personal data."""

import time

import dagster as dg

from .clients.queue import ATTEMPTS, FAILED_AT, FAILED_BY, FAILURE_REASON, REDRIVE_COUNT, EventsQueue, QueueMessage
from .events import PoisonMessage, parse_sqs_body
from .logfmt import kv
from .resources import EventsQueueResource

DLQ_VISIBILITY_SECONDS = 60
PEEK_VISIBILITY_SECONDS = 5
# SQS short polls (WaitTimeSeconds=0) sample a subset of the servers and can answer empty while messages remain:
# the DLQ is read with short long polls, and only this many empty answers in a row mean it is empty.
DLQ_WAIT_SECONDS = 1
EMPTY_RECEIVES_TO_STOP = 2
LAST_FAILURE_REASON = "hmpps-last-failure-reason"


class RedriveConfig(dg.Config):
    max_messages: int = 10_000      # stop after this many (0 = no limit)
    park_after: int = 3             # messages already redriven this many times stay in the DLQ (parked); 0 = never


class PeekConfig(dg.Config):
    max_messages: int = 50


def describe(message: QueueMessage) -> dict:
    """What an operator may see of a dead-lettered message: ids, codes, reasons and times; never body text."""
    try:
        event = parse_sqs_body(message.body, message.message_id)
        event_type, source_id = event.event_type, str((event.additional_information or {}).get("id")
                                                      or (event.additional_information or {}).get("alertUuid") or "")
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
    }


def receive_dlq(queue: EventsQueue, max_messages: int, visibility_timeout: int) -> list[QueueMessage]:
    """One receive from the DLQ as a short long poll (``DLQ_WAIT_SECONDS``), never a short poll."""
    return queue.receive_dlq(max_messages, wait_seconds=DLQ_WAIT_SECONDS, visibility_timeout=visibility_timeout)


def redrive(queue: EventsQueue, *, max_messages: int = 10_000, park_after: int = 3,
            log=None) -> dict:
    """Move dead-lettered messages back to the main queue (send, then delete), counting redrives on each message.

    At most ``max_messages`` are moved (0 = no limit): each receive asks for no more than are still allowed.
    Messages redriven ``park_after`` times already are parked: left in the DLQ (never deleted) and reported.
    The DLQ counts as empty after ``EMPTY_RECEIVES_TO_STOP`` receives in a row bring nothing new.
    """
    moved, parked, failed = [], [], []
    held: list[tuple[str, str]] = []      # parked messages stay invisible until the end, then are released
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
            if park_after and message.redrive_count >= park_after:
                parked.append(describe(message))
                held.append((message.message_id, message.receipt_handle))
                continue
            attributes = {k: v for k, v in message.attributes.items()
                          if k not in (FAILURE_REASON, FAILED_AT, FAILED_BY, ATTEMPTS)}
            attributes[REDRIVE_COUNT] = str(message.redrive_count + 1)
            if message.attributes.get(FAILURE_REASON):
                attributes[LAST_FAILURE_REASON] = message.attributes[FAILURE_REASON]
            try:
                queue.send(message.body, attributes)
                queue.delete_dlq([(message.message_id, message.receipt_handle)])
                moved.append(message.message_id)
            except Exception as exc:   # left in the DLQ: it reappears there after the visibility timeout
                failed.append({"sqs_message_id": message.message_id, "error": type(exc).__name__})
                if log:
                    log.warning(kv("redrive_failed", sqs_message_id=message.message_id, error=type(exc).__name__))
    if held:
        queue.change_visibility(held, 0, queue_url=queue.dlq_url)
    return {"moved": moved, "parked": parked, "failed": failed}


def peek(queue: EventsQueue, max_messages: int = 50) -> list[dict]:
    """Look at up to ``max_messages`` DLQ messages; they become visible again a few seconds later.

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
            seen[message.message_id] = describe(message)
    return list(seen.values())


PEEK_COLUMNS = ("sqs_message_id", "event_type", "source_id", "failure_reason", "failed_at", "failed_by", "attempts",
                "redrives", "age_hours")


def dlq_table(rows: list[dict]) -> dg.MetadataValue:
    types = {"redrives": "int", "age_hours": "float"}
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: row.get(c) for c in PEEK_COLUMNS}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "string")) for c in PEEK_COLUMNS]))


@dg.op(description="Move dead-lettered messages back to the events queue, with counts; repeat offenders are parked.")
def redrive_dead_letters(context: dg.OpExecutionContext, config: RedriveConfig, events_queue: EventsQueueResource):
    queue = events_queue.queue()
    before = queue.dlq_depth().visible
    result = redrive(queue, max_messages=config.max_messages, park_after=config.park_after, log=context.log)
    context.log.info(kv("redrive", moved=len(result["moved"]), parked=len(result["parked"]),
                        failed=len(result["failed"]), dlq_visible_before=before, max_messages=config.max_messages,
                        park_after=config.park_after))
    metadata = {
        "dlq_before": before,
        "moved": len(result["moved"]),
        "parked": len(result["parked"]),
        "failed": len(result["failed"]),
        "parked_messages": dlq_table(result["parked"]),
        "moved_ids": dg.MetadataValue.json(result["moved"][:200]),
    }
    if result["failed"]:
        raise dg.Failure(description=f"{len(result['failed'])} messages could not be redriven and stay in the DLQ",
                         metadata={**metadata, "failed_messages": dg.MetadataValue.json(result["failed"])})
    context.add_output_metadata(metadata)
    return result


@dg.op(description="Show the dead-letter queue's messages (ids, event types, failure reasons; no message text).")
def peek_dead_letters(context: dg.OpExecutionContext, config: PeekConfig, events_queue: EventsQueueResource):
    queue = events_queue.queue()
    depth = queue.dlq_depth()
    rows = peek(queue, config.max_messages)
    reasons: dict[str, int] = {}
    for row in rows:
        key = row["failure_reason"] or "(no reason: moved by SQS after maxReceiveCount)"
        reasons[key] = reasons.get(key, 0) + 1
    context.add_output_metadata({"dlq_visible": depth.visible, "dlq_in_flight": depth.in_flight,
                                 "shown": len(rows), "reasons": dg.MetadataValue.json(reasons),
                                 "messages": dlq_table(rows)})
    context.log.info(kv("dlq_peek", visible=depth.visible, in_flight=depth.in_flight, shown=len(rows),
                        reasons=len(reasons)))
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        context.log.info(kv("dlq_reason", messages=count, reason=reason))
    return rows


@dg.job(description="Redrive the dead-letter queue into the events queue (after the cause of the failures is gone).",
        executor_def=dg.in_process_executor, tags={"hmpps/flow": "operations"})
def redrive_dlq_job():
    redrive_dead_letters()


@dg.job(description="Peek at the dead-letter queue: ids, event types and failure reasons, no personal data.",
        executor_def=dg.in_process_executor, tags={"hmpps/flow": "operations"})
def peek_dlq_job():
    peek_dead_letters()


defs = dg.Definitions(jobs=[redrive_dlq_job, peek_dlq_job])
