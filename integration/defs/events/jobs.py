"""The live event flow: ``prison_events_job`` runs one micro-batch of queue messages leased by the sensor."""

from collections import Counter
from typing import Optional

import dagster as dg

from ...constants import DELIUS_CONTACTS, EVENTS_JOB, EVENTS_OP, FLOW_EVENTS, FLOW_TAG
from ...core.logfmt import kv
from ...core.messages import QueueMessage
from ...flows.batch import process_batch
from ...resources import ConsumerSettings, DeliusDatabase, EventsQueueResource, SourceApiResource

OUTCOME_COLUMNS = ("sqs_message_id", "event_type", "source_id", "noms_number", "crn", "action", "reason",
                   "contact_id", "disposition", "attempt")


class LeasedMessageConfig(dg.Config):
    """One in-flight queue message handed to this run by the sensor: a ``QueueMessage`` in run config (its body is
    the canonical envelope of the event: ids and codes, never note text)."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1
    sent_timestamp_ms: Optional[int] = None
    attributes: dict[str, str] = {}
    received_at: float = 0.0

    @classmethod
    def of(cls, message: QueueMessage) -> "LeasedMessageConfig":
        return cls(message_id=message.message_id, receipt_handle=message.receipt_handle, body=message.body,
                   receive_count=message.receive_count, sent_timestamp_ms=message.sent_timestamp_ms,
                   attributes=dict(message.attributes), received_at=message.received_at)

    def message(self) -> QueueMessage:
        return QueueMessage(self.message_id, self.receipt_handle, self.body, self.receive_count,
                            self.sent_timestamp_ms, dict(self.attributes), self.received_at)


class DeadLetteredConfig(dg.Config):
    """A message the sensor could not read and sent straight to the dead-letter queue (shown in this run)."""

    sqs_message_id: str
    reason: str


class EventBatchConfig(dg.Config):
    events: list[LeasedMessageConfig] = []
    dead_lettered: list[DeadLetteredConfig] = []


@dg.op(name=EVENTS_OP, description="Fetch each event's case note or alert, merge them into Delius in one batch, then delete, "
                   "retry or dead-letter each message by its outcome.")
def process_prison_events(context: dg.OpExecutionContext, config: EventBatchConfig, delius: DeliusDatabase,
                          source_api: SourceApiResource, events_queue: EventsQueueResource,
                          consumer: ConsumerSettings) -> None:
    events = [e.message() for e in config.events]
    report = process_batch(events, source=source_api.client(), store=delius.store(), queue=events_queue.queue(),
                           settings=consumer.batch_settings(), run_id=context.run_id)
    rows = [o.as_row() for o in report.outcomes]
    rows += [{"sqs_message_id": d.sqs_message_id, "action": "failed", "reason": d.reason,
              "disposition": "dead-lettered by the sensor"} for d in config.dead_lettered]
    counts = report.counts
    counts["failed"] += len(config.dead_lettered)
    dispositions = report.dispositions
    if config.dead_lettered:
        dispositions["dead-lettered by the sensor"] = len(config.dead_lettered)
    # One line per message that did not simply land (skipped, unchanged, failed): a run's log stays readable and its
    # event log small; every message, landed or not, is in the outcome table.
    for row in rows:
        if row.get("action") not in ("created", "updated", "moved"):
            context.log.info(kv("event", **{k: row.get(k) for k in ("sqs_message_id", "event_type", "source_id",
                                                                       "action", "reason", "disposition", "attempt")}))
    context.log.info(kv("batch", events=len(rows), **counts, seconds=report.seconds.get("total")))
    metadata = {
        "events": dg.MetadataValue.int(len(rows)),
        **{action: dg.MetadataValue.int(n) for action, n in counts.items()},
        "dispositions": dg.MetadataValue.json(dispositions),
        "seconds": dg.MetadataValue.json(report.seconds),
        "outcomes": outcome_table(rows),
    }
    context.log_event(dg.AssetMaterialization(
        asset_key=dg.AssetKey(DELIUS_CONTACTS), description="contacts written by a batch of prison events",
        metadata={k: v for k, v in metadata.items() if k != "outcomes"}))
    failed = report.failed
    if failed or config.dead_lettered:
        summary = report.failure_summary()
        if config.dead_lettered:
            reasons = Counter(d.reason for d in config.dead_lettered)
            summary = "; ".join(filter(None, [summary] + [f"{n} x {reason} -> dead-lettered by the sensor"
                                                          for reason, n in reasons.most_common()]))
        raise dg.Failure(description=f"{len(failed) + len(config.dead_lettered)} of {len(rows)} events failed: "
                                     f"{summary}", metadata=metadata, allow_retries=False)
    context.add_output_metadata(metadata)


def outcome_table(rows: list[dict]) -> dg.MetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "int" if name in ("contact_id", "attempt") else "string")
                                     for name in OUTCOME_COLUMNS])
    records = [dg.TableRecord({name: row.get(name) for name in OUTCOME_COLUMNS})
               for row in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


@dg.job(
    name=EVENTS_JOB,
    description="Processes a micro-batch of HMPPS domain events leased by prison_events_sensor.",
    executor_def=dg.in_process_executor,
    tags={FLOW_TAG: FLOW_EVENTS, "dagster/priority": "10", "dagster/max_retries": "0",
          "dagster/max_runtime": "1800"},
)
def prison_events_job():
    process_prison_events()
