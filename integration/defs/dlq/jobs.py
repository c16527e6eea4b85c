"""Operator jobs for the dead-letter queue: ``redrive_dlq_job`` (move messages back, park repeat offenders) and
``peek_dlq_job`` (ids, event types and reasons, never message text). The work is in flows/redrive.py."""

from typing import Any

import dagster as dg

from integration.defs.pods import OPERATIONS_RESOURCES, pod_tags

from ...constants import FLOW_OPERATIONS, FLOW_TAG, PEEK_JOB, PEEK_OP, REDRIVE_JOB, REDRIVE_OP
from ...core.logfmt import kv
from ...flows.redrive import NEVER_READABLE, peek, redrive
from ...resources import EventsQueueResource


class RedriveConfig(dg.Config):
    max_messages: int = 10_000  # stop after this many (0 = no limit)
    park_after: int = 3  # messages already redriven this many times stay in the DLQ (parked); 0 = never
    #                                 (messages that can never be read are always parked)


class PeekConfig(dg.Config):
    max_messages: int = 50
    park_after: int = 3  # the redrive setting the `redrive` column assumes


PEEK_COLUMNS = (
    "sqs_message_id",
    "event_type",
    "source_id",
    "redrive",
    "failure_reason",
    "failed_at",
    "failed_by",
    "attempts",
    "redrives",
    "age_hours",
)


def dlq_table(rows: list[dict]) -> dg.MetadataValue:
    types = {"redrives": "int", "age_hours": "float"}
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: row.get(c) for c in PEEK_COLUMNS}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "string")) for c in PEEK_COLUMNS]),
    )


@dg.op(
    name=REDRIVE_OP,
    description="Move dead-lettered messages back to the events queue, with counts; repeat offenders "
    "and messages that can never be read are parked.",
)
def redrive_dead_letters(context: dg.OpExecutionContext, config: RedriveConfig, events_queue: EventsQueueResource):
    queue = events_queue.queue()
    before = queue.dlq_depth().visible
    result = redrive(queue, max_messages=config.max_messages, park_after=config.park_after, log=context.log)
    context.log.info(
        kv(
            "redrive",
            moved=len(result["moved"]),
            parked=len(result["parked"]),
            failed=len(result["failed"]),
            dlq_visible_before=before,
            max_messages=config.max_messages,
            park_after=config.park_after,
            left_newer=len(result["newer"]),
        )
    )
    never_readable = sum(1 for row in result["parked"] if str(row.get("redrive", "")).startswith(NEVER_READABLE))
    metadata: dict[str, Any] = {
        "dlq_before": before,
        "moved": len(result["moved"]),
        "parked": len(result["parked"]),
        "parked_never_readable": never_readable,
        "failed": len(result["failed"]),
        "left_newer": len(result["newer"]),
        "parked_messages": dlq_table(result["parked"]),
        "moved_ids": dg.MetadataValue.json(result["moved"][:200]),
    }
    if result["failed"]:
        raise dg.Failure(
            description=f"{len(result['failed'])} messages could not be redriven and stay in the DLQ",
            metadata={**metadata, "failed_messages": dg.MetadataValue.json(result["failed"])},
        )
    context.add_output_metadata(metadata)
    return result


@dg.op(
    name=PEEK_OP,
    description="Show the dead-letter queue's messages (ids, event types, failure reasons; no message text).",
)
def peek_dead_letters(context: dg.OpExecutionContext, config: PeekConfig, events_queue: EventsQueueResource):
    queue = events_queue.queue()
    depth = queue.dlq_depth()
    rows = peek(queue, config.max_messages, config.park_after)
    never_readable = sum(1 for row in rows if str(row.get("redrive", "")).startswith(NEVER_READABLE))
    reasons: dict[str, int] = {}
    for row in rows:
        key = row["failure_reason"] or "(no reason: moved by SQS after maxReceiveCount)"
        reasons[key] = reasons.get(key, 0) + 1
    context.add_output_metadata(
        {
            "dlq_visible": depth.visible,
            "dlq_in_flight": depth.in_flight,
            "shown": len(rows),
            "never_readable": never_readable,
            "reasons": dg.MetadataValue.json(reasons),
            "messages": dlq_table(rows),
        }
    )
    context.log.info(
        kv(
            "dlq_peek",
            visible=depth.visible,
            in_flight=depth.in_flight,
            shown=len(rows),
            never_readable=never_readable,
            reasons=len(reasons),
        )
    )
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        context.log.info(kv("dlq_reason", messages=count, reason=reason))
    return rows


@dg.job(
    name=REDRIVE_JOB,
    description="Redrive the dead-letter queue into the events queue (after the cause of the failures is gone).",
    executor_def=dg.in_process_executor,
    tags={FLOW_TAG: FLOW_OPERATIONS, **pod_tags(OPERATIONS_RESOURCES)},
)
def redrive_dlq_job():
    redrive_dead_letters()


@dg.job(
    name=PEEK_JOB,
    description="Peek at the dead-letter queue: ids, event types and failure reasons, no personal data.",
    executor_def=dg.in_process_executor,
    tags={FLOW_TAG: FLOW_OPERATIONS, **pod_tags(OPERATIONS_RESOURCES)},
)
def peek_dlq_job():
    peek_dead_letters()
