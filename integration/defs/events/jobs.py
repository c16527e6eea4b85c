"""The live event flow: ``prison_events_job`` is a long-lived consumer of the events queue.

A run receives from the queue itself (run config holds no message), works while the queue has work, and exits after
``CONSUMER_LIFETIME_SECONDS`` or ``CONSUMER_IDLE_SECONDS`` without a message, or when ``prison_events_sensor`` is
stopped (consumption paused); the sensor starts the next (docs/queue-protocol.md). The loop is
``flows.consume.consume``; this op gives it the ports and reports:

* one ``delius_contacts`` materialization per chunk of outcomes (at most ``CONSUMER_REPORT_EVENTS`` events, at least
  every ``CONSUMER_REPORT_SECONDS``), with int counts ``created, updated, moved, unchanged, skipped, failed`` (and
  ``linkage``), ``replaced_characters`` (NUL and lone surrogates replaced in its records), the chunk's outcome
  table (ids, event type, action, reason, disposition: never text) and logfmt lines;
* linkage events as ``linked_person_contacts`` observations of their partition (message id, receipt handle, lease
  end), which the sensor turns into backfill runs;
* red means act: the run fails only when it could not do its job (events left for retry or dead-lettered for an
  outage, the queue unreadable); per-event data failures already in the DLQ with a reason are a warning, a count and
  the ``hmpps/dead-lettered`` tag. A failed run carries the tag ``hmpps/failure`` with the short reason.
"""

import time
from collections import Counter
from typing import Any

import dagster as dg

from ...constants import (
    CONSUMER_UNTIL_TAG,
    DEAD_LETTERED_TAG,
    DELIUS_CONTACTS,
    EVENTS_JOB,
    EVENTS_OP,
    EVENTS_SENSOR,
    FAILURE_TAG,
    FLOW_EVENTS,
    FLOW_TAG,
    LINKED_PERSON_CONTACTS,
    NOMS_PARTITIONS,
)
from ...core.logfmt import kv
from ...core.messages import QueueMessage
from ...flows.consume import ChunkReport, ConsumeResult, consume
from ...resources import ConsumerSettings, DeliusDatabase, EventsQueueResource, SourceApiResource

OUTCOME_COLUMNS = (
    "sqs_message_id",
    "event_type",
    "source_id",
    "noms_number",
    "crn",
    "action",
    "reason",
    "contact_id",
    "disposition",
    "attempt",
)
MAX_CELL = 200  # characters of a string in metadata at most (ids from an event are not trusted)
MAX_TAG = 200
LANDED = ("created", "updated", "moved")
RUN_MAX_RUNTIME = 3600  # dagster/max_runtime: the lifetime is capped well inside it (ConsumerSettings.consume_settings)


def _cap(value: Any, limit: int = MAX_CELL) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


class _Hooks:
    """What the consumer loop asks of Dagster: is consumption paused, hand over a linkage message, report."""

    def __init__(self, context: dg.OpExecutionContext):
        self.context = context
        self.instance = context.instance
        self.partitions: set[str] = set()
        self.reports = 0
        self.totals: Counter = Counter()

    def paused(self) -> bool:
        return sensor_stopped(self.instance)

    def hand_over_linkage(self, message: QueueMessage, noms_number: str, visible_until: float, event_type: str) -> None:
        if noms_number not in self.partitions:
            if not self.instance.has_dynamic_partition(NOMS_PARTITIONS, noms_number):
                self.instance.add_dynamic_partitions(NOMS_PARTITIONS, [noms_number])
            self.partitions.add(noms_number)
        self.context.log_event(
            dg.AssetObservation(
                asset_key=dg.AssetKey(LINKED_PERSON_CONTACTS),
                partition=noms_number,
                description="a linkage event handed to prison_events_sensor, which requests the backfill",
                metadata={
                    "sqs_message_id": _cap(message.message_id),
                    "receipt_handle": message.receipt_handle,
                    "visible_until": dg.MetadataValue.float(round(visible_until, 1)),
                    "attempt": dg.MetadataValue.int(message.receive_count),
                    "event_type": _cap(event_type),
                },
            )
        )
        self.context.log.info(kv("linkage_handed_over", sqs_message_id=_cap(message.message_id), noms=noms_number))

    def report(self, chunk: ChunkReport) -> None:
        rows = [o.as_row() for o in chunk.outcomes]
        for row in rows:
            if row.get("action") not in LANDED:
                self.context.log.info(
                    kv(
                        "event",
                        **{
                            k: _cap(row.get(k))
                            for k in (
                                "sqs_message_id",
                                "event_type",
                                "source_id",
                                "action",
                                "reason",
                                "disposition",
                                "attempt",
                            )
                        },
                    )
                )
        counts = chunk.counts
        self.totals.update(counts)
        self.reports += 1
        phases = {f"{k}_s": v for k, v in chunk.seconds.items()}
        replaced = chunk.replaced_characters
        self.context.log.info(kv("chunk", events=len(rows), **counts, replaced_characters=replaced, **phases))
        metadata: dict[str, Any] = {
            "events": dg.MetadataValue.int(len(rows)),
            **{action: dg.MetadataValue.int(n) for action, n in counts.items()},
            "replaced_characters": dg.MetadataValue.int(replaced),
            "dispositions": dg.MetadataValue.json({_cap(k, 60): v for k, v in chunk.dispositions.items()}),
            "seconds": dg.MetadataValue.json(chunk.seconds),
            "outcomes": outcome_table(rows),
        }
        if chunk.first_received_at is not None and chunk.last_received_at is not None:
            metadata["first_received_at"] = dg.MetadataValue.float(round(chunk.first_received_at, 3))
            metadata["last_received_at"] = dg.MetadataValue.float(round(chunk.last_received_at, 3))
        if chunk.oldest_age_at_receipt is not None:
            metadata["oldest_age_at_receipt_seconds"] = dg.MetadataValue.float(round(chunk.oldest_age_at_receipt, 1))
        self.context.log_event(
            dg.AssetMaterialization(
                asset_key=dg.AssetKey(DELIUS_CONTACTS),
                description="contacts written by a chunk of prison events",
                metadata=metadata,
            )
        )


def sensor_stopped(instance: dg.DagsterInstance) -> bool:
    """True when an operator has stopped prison_events_sensor (consumption paused, docs/operations.md §5)."""
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

    states = [
        s
        for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if s.instigator_name == EVENTS_SENSOR
    ]
    return bool(states) and all(s.status is InstigatorStatus.STOPPED for s in states)


@dg.op(
    name=EVENTS_OP,
    description="Consume the events queue: receive, fetch each event's case note or alert, merge "
    "into Delius in chunks, then delete, retry or dead-letter each message by its "
    "outcome; exits after its lifetime or when the queue stays idle.",
)
def process_prison_events(
    context: dg.OpExecutionContext,
    delius: DeliusDatabase,
    source_api: SourceApiResource,
    events_queue: EventsQueueResource,
    consumer: ConsumerSettings,
) -> None:
    settings = consumer.consume_settings()
    started = time.time()
    context.instance.add_run_tags(
        context.run_id, {CONSUMER_UNTIL_TAG: str(int(started + settings.loop.lifetime_seconds))}
    )
    hooks = _Hooks(context)
    context.log.info(
        kv(
            "consumer_start",
            lifetime_s=settings.loop.lifetime_seconds,
            idle_s=settings.loop.idle_seconds,
            receivers=settings.receivers,
            fetch_workers=settings.batch.fetch_workers,
        )
    )
    result = consume(
        events_queue.queue(),
        source=source_api.client(),
        store=delius.store(),
        hooks=hooks,
        settings=settings,
        run_id=context.run_id,
    )
    finish(context, result, hooks)


def finish(context: dg.OpExecutionContext, result: ConsumeResult, hooks: _Hooks) -> None:
    counts = {key: int(hooks.totals.get(key, 0)) for key in hooks.totals} if hooks.totals else {}
    events = sum(counts.values())
    context.log.info(
        kv(
            "consumer_exit",
            reason=result.exit_reason,
            seconds=result.seconds,
            received=result.received,
            events=events,
            reports=hooks.reports,
            **counts,
        )
    )
    metadata = {
        "exit_reason": dg.MetadataValue.text(result.exit_reason),
        "received": dg.MetadataValue.int(result.received),
        "events": dg.MetadataValue.int(events),
        "seconds": dg.MetadataValue.float(result.seconds),
        "reports": dg.MetadataValue.int(hooks.reports),
        **{key: dg.MetadataValue.int(n) for key, n in counts.items()},
    }
    data_failures = sum(result.data_failures.values())
    if data_failures:
        summary = result.warning_summary()
        context.log.warning(kv("dead_lettered_data", events=data_failures, reasons=_cap(summary, 500)))
        context.instance.add_run_tags(context.run_id, {DEAD_LETTERED_TAG: str(data_failures)})
        metadata["dead_lettered_data"] = dg.MetadataValue.int(data_failures)
    if result.failed:
        needing = sum(result.needs_action.values())
        summary = result.failure_summary()
        short = (f"{needing} events need attention: " if needing else "") + summary
        context.instance.add_run_tags(context.run_id, {FAILURE_TAG: _cap(short, MAX_TAG)})
        raise dg.Failure(
            description=f"{needing} of {events} events could not be done: {_cap(summary, 1000)}"
            if needing
            else f"the queue could not be read: {_cap(summary, 1000)}",
            metadata=metadata,
            allow_retries=False,
        )
    context.add_output_metadata(metadata)


def outcome_table(rows: list[dict]) -> dg.MetadataValue:
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(name, "int" if name in ("contact_id", "attempt") else "string") for name in OUTCOME_COLUMNS
        ]
    )
    records = [dg.TableRecord({name: _cap(row.get(name)) for name in OUTCOME_COLUMNS}) for row in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


@dg.job(
    name=EVENTS_JOB,
    description="Consumes the events queue (case notes, alerts; linkage events are handed to prison_events_sensor): "
    "started and supervised by prison_events_sensor, exits after its lifetime or when idle.",
    executor_def=dg.in_process_executor,
    tags={
        FLOW_TAG: FLOW_EVENTS,
        "dagster/priority": "10",
        "dagster/max_retries": "0",
        "dagster/max_runtime": str(RUN_MAX_RUNTIME),
    },
)
def prison_events_job():
    process_prison_events()
