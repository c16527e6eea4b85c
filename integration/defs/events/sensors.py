"""The queue sensor: the only reader of the HMPPS domain-events queue.

Each tick (the protocol and its guarantees are in docs/queue-protocol.md):

1. settle custody: delete the linkage messages of earlier ticks whose backfill run now exists in run storage;
2. back-pressure: receive nothing while ``max_pending_runs`` batch runs wait in the run queue, so a backlog waits on
   the queue (where it costs no receive counts) instead of in leases that could expire;
3. long-poll up to ``max_events_per_tick`` messages within ``tick_seconds`` (a lease of ``visibility_timeout``);
4. unreadable messages -> dead-letter queue now, with the reason; linkage events -> a dynamic partition and a
   backfill run (deleted in step 1 of a later tick); everything else -> micro-batch runs of ``prison_events_job``
   that hold the lease and delete each message once its effect is committed.
"""

import json
import time
from typing import Any

import dagster as dg

from ...constants import EVENTS_JOB, EVENTS_OP, EVENTS_SENSOR, EVENTS_TAG, MESSAGES_TAG
from ...core.intake import IntakePlan, batch_run_key, plan_intake
from ...core.logfmt import kv
from ...core.messages import QueueMessage
from ...core.ports import EventsQueue
from ...resources import ConsumerSettings, EventsQueueResource
from ..backfill.jobs import backfill_request, noms_backfill_job
from ..backfill.partitions import noms_partitions
from .jobs import DeadLetteredConfig, EventBatchConfig, LeasedMessageConfig, prison_events_job
# Runs that wait for the run queue. STARTING runs are being launched and take their messages within seconds; a run
# queue that does not move (daemon down, limits full) shows as QUEUED runs piling up.
PENDING_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
EMPTY_POLLS_TO_STOP = 2      # consecutive empty 1 s long polls that end a tick's receiving early


@dg.sensor(
    name=EVENTS_SENSOR,
    jobs=[prison_events_job, noms_backfill_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reads HMPPS domain events from the queue and hands them to prison_events_job runs (case notes, "
                "alerts) and noms_backfill_job runs (linkage). Stop it to pause consumption: messages wait on "
                "the queue.",
)
def prison_events_sensor(context: dg.SensorEvaluationContext, events_queue: EventsQueueResource,
                         consumer: ConsumerSettings):
    settings = consumer.resolved()
    queue = events_queue.queue()
    cursor = _load_cursor(context.cursor)
    custody, settled = settle_custody(context.instance, queue, cursor["custody"], settings.visibility_timeout)

    pending = context.instance.get_runs_count(dg.RunsFilter(job_name=EVENTS_JOB,
                                                            statuses=PENDING_STATUSES))
    if pending >= settings.max_pending_runs:
        context.log.info(kv("tick", skipped="back-pressure", batch_runs_waiting=pending, linkage_acked=settled))
        return dg.SensorResult(skip_reason=f"back-pressure: {pending} batch runs waiting to start",
                               cursor=_dump_cursor(custody))

    messages = receive_for_tick(context, queue, settings)
    plan = plan_intake(messages, max_per_run=settings.max_events_per_run)
    dead_lettered = dead_letter_poison(context, queue, plan)
    run_requests = batch_run_requests(plan, dead_lettered)
    for link in plan.linkage:
        run_requests.append(backfill_request([link.noms_number], run_key=link.run_key, trigger="linkage",
                                             tags={MESSAGES_TAG: str(len(link.messages))}))
        custody += [{"k": link.run_key, "id": m.message_id, "h": m.receipt_handle, "t": m.received_at}
                    for m in link.messages]
    context.log.info(kv("tick", received=len(messages), leased=plan.leased, batch_runs=len(plan.batches),
                        linkage_backfills=len(plan.linkage), dead_lettered=len(dead_lettered),
                        linkage_acked=settled))
    if not run_requests:
        return dg.SensorResult(skip_reason=f"queue empty ({settled} linkage messages acknowledged)",
                               cursor=_dump_cursor(custody))
    partitions = sorted({link.noms_number for link in plan.linkage})
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[noms_partitions.build_add_request(partitions)] if partitions else [],
        cursor=_dump_cursor(custody))


def receive_for_tick(context: dg.SensorEvaluationContext, queue: EventsQueue,
                     settings: ConsumerSettings) -> list[QueueMessage]:
    """Long-poll for the whole tick budget (messages arriving mid-tick are taken too); stop early once the queue has
    stayed empty for a couple of polls, so an idle queue costs a short tick."""
    messages: list[QueueMessage] = []
    empty_polls = 0
    deadline = time.monotonic() + settings.tick_seconds
    while len(messages) < settings.max_events_per_tick and time.monotonic() < deadline:
        try:
            batch = queue.receive(min(10, settings.max_events_per_tick - len(messages)), wait_seconds=1,
                                  visibility_timeout=settings.visibility_timeout)
        except Exception as exc:   # an SQS hiccup ends this tick's receiving; what we have is handed over
            context.log.warning(kv("receive_failed", error=type(exc).__name__, received=len(messages)))
            break
        empty_polls = 0 if batch else empty_polls + 1
        if empty_polls >= EMPTY_POLLS_TO_STOP:
            break
        messages += batch
    return messages


def dead_letter_poison(context: dg.SensorEvaluationContext, queue: EventsQueue,
                       plan: IntakePlan) -> list[DeadLetteredConfig]:
    done = []
    for message, reason in plan.poison:
        try:
            queue.dead_letter(message, reason, failed_by=f"sensor:{EVENTS_SENSOR}")
        except Exception as exc:   # left in flight: it comes back, and SQS's own redrive catches it at worst
            context.log.warning(kv("dead_letter_failed", sqs_message_id=message.message_id,
                                   error=type(exc).__name__))
            continue
        context.log.warning(kv("dead_lettered", sqs_message_id=message.message_id, reason=reason))
        done.append(DeadLetteredConfig(sqs_message_id=message.message_id, reason=reason))
    return done


def batch_run_requests(plan: IntakePlan, dead_lettered: list[DeadLetteredConfig]) -> list[dg.RunRequest]:
    batches = plan.batches or ([[]] if dead_lettered else [])
    requests = []
    for n, batch in enumerate(batches):
        config = EventBatchConfig(
            events=[LeasedMessageConfig.of(message) for message in batch],
            dead_lettered=dead_lettered if n == 0 else [])
        key = batch_run_key(batch) if batch else "dead-lettered-" + dead_lettered[0].sqs_message_id
        requests.append(dg.RunRequest(
            run_key=key, job_name=EVENTS_JOB,
            run_config=dg.RunConfig(ops={EVENTS_OP: config}),
            tags={EVENTS_TAG: str(len(batch) + (len(dead_lettered) if n == 0 else 0))}))
    return requests


def settle_custody(instance: dg.DagsterInstance, queue: EventsQueue, custody: list[dict[str, Any]],
                   visibility_timeout: int) -> tuple[list[dict[str, Any]], int]:
    """Delete messages whose run now exists; forget leases that expired (those messages come back by themselves)."""
    keep, done = [], []
    now = time.time()
    for entry in custody:
        if instance.get_run_records(dg.RunsFilter(tags={"dagster/run_key": entry["k"]}), limit=1):
            done.append((entry["id"], entry["h"]))
        elif now - entry["t"] < visibility_timeout:
            keep.append(entry)
    if done:
        try:
            queue.delete(done)
        except Exception:   # they will be redelivered, and the backfill re-run is a no-op
            keep += [e for e in custody if (e["id"], e["h"]) in set(done)]
            return keep, 0
    return keep, len(done)


def _load_cursor(raw: str | None) -> dict[str, Any]:
    try:
        cursor = json.loads(raw) if raw else {}
    except ValueError:
        cursor = {}
    return {"custody": list(cursor.get("custody", []))}


def _dump_cursor(custody: list[dict[str, Any]]) -> str:
    return json.dumps({"custody": custody}, separators=(",", ":"))
