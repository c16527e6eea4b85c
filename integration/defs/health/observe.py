"""What the health checks read: the queue's attributes and Dagster's own storage, and what they report.

Queue *attributes* only (``GetQueueAttributes``): never a receive from the events queue (that would cost receive
counts, docs/queue-protocol.md) nor from the DLQ. Counts, times, run ids and error class names; never a body.
"""

import time
from typing import Any

import dagster as dg

from ... import settings
from ...constants import BACKFILL_JOB, DELIUS_CONTACTS, EVENTS_JOB, EVENTS_QUEUE, EVENTS_SENSOR, TRIGGER_TAG
from ...core.health import (
    CONSUMER_IS_ALIVE,
    CheckOutcome,
    ConsumerActivity,
    HealthReport,
    HealthSettings,
    ages_at_receipt,
    assess,
    next_backlog_since,
    status_of,
)
from ...core.messages import QueueDepth
from ...core.ports import EventsQueue

EVENTS_QUEUE_KEY = dg.AssetKey(EVENTS_QUEUE)
PENDING_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]
FINISHED_STATUSES = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
MAX_RUNS_SCANNED = 200  # consumer reports read per evaluation at most


def health_settings() -> HealthSettings:
    """``HEALTH_STALL_SECONDS``, ``HEALTH_MAX_MESSAGE_AGE_SECONDS``, ``HEALTH_HEARTBEAT_SECONDS`` (read each time)."""
    return settings.load(
        HealthSettings, "HEALTH_", minimums={"stall_seconds": 1, "max_message_age_seconds": 1, "heartbeat_seconds": 0}
    )


def consumer_activity(instance: dg.DagsterInstance, *, since: float) -> ConsumerActivity:
    """The queue sensor's state and latest tick, and what its consumer runs report (``since``: epoch seconds of the
    previous evaluation): received and processed from the ``delius_contacts`` materializations of consumer runs (each
    chunk's ``last_received_at`` and ``oldest_age_at_receipt_seconds``), and linkage backfill runs."""
    status, tick_at, tick_error = _sensor_state(instance)
    latest = instance.fetch_materializations(dg.AssetKey(DELIUS_CONTACTS), limit=1).records
    linkage = instance.get_run_records(dg.RunsFilter(job_name=BACKFILL_JOB, tags={TRIGGER_TAG: "linkage"}), limit=1)
    finished = instance.get_run_records(dg.RunsFilter(job_name=EVENTS_JOB, statuses=FINISHED_STATUSES), limit=1)
    received = [r.create_timestamp.timestamp() for r in linkage]
    received += [
        t
        for t in (
            _number(r.asset_materialization.metadata.get("last_received_at")) for r in latest if r.asset_materialization
        )
        if t is not None
    ]
    processed = [r.end_time for r in finished if r.end_time] + [r.timestamp for r in latest]
    recent = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(DELIUS_CONTACTS), after_timestamp=since), limit=MAX_RUNS_SCANNED
    ).records
    reports = [dict(r.asset_materialization.metadata) for r in recent if r.asset_materialization]
    ages = list(ages_at_receipt(reports))
    return ConsumerActivity(
        sensor_status=status,
        last_tick_at=tick_at,
        last_tick_error=tick_error,
        last_received_at=max(received) if received else None,
        last_processed_at=max(processed) if processed else None,
        runs_waiting=instance.get_runs_count(dg.RunsFilter(job_name=EVENTS_JOB, statuses=PENDING_STATUSES)),
        oldest_age_at_receipt=max(ages) if ages else None,
        received_since=sum(int(_number(m.get("events")) or 0) for m in reports),
    )


def _number(entry: Any) -> float | None:
    value = getattr(entry, "value", entry)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sensor_state(instance: dg.DagsterInstance) -> tuple[str, float | None, str | None]:
    """(running | stopped | unknown, time of the latest tick, error class of the latest tick if it failed)."""
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType, TickStatus

    states = [
        s
        for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if s.instigator_name == EVENTS_SENSOR
    ]
    if not states:
        return "unknown", None, None
    running = [s for s in states if s.status is not InstigatorStatus.STOPPED]
    status = "running" if running else "stopped"
    ticks = [t for s in (running or states) for t in instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=1)]
    if not ticks:
        return status, None, None
    tick = max(ticks, key=lambda t: t.timestamp)
    error = None
    if tick.status is TickStatus.FAILURE:
        error = (tick.error.cls_name if tick.error is not None else None) or "error"
    return status, tick.timestamp, error


def read_depths(queue: EventsQueue) -> tuple[QueueDepth, QueueDepth]:
    """Queue attributes of the events queue and its DLQ (GetQueueAttributes only: nothing is received)."""
    return queue.depth(), queue.dlq_depth()


def evaluate(
    instance: dg.DagsterInstance,
    queue: EventsQueue,
    *,
    backlog_since: float | None,
    since: float,
    settings: HealthSettings | None = None,
    now: float | None = None,
) -> HealthReport:
    now = time.time() if now is None else now
    depth, dlq = read_depths(queue)
    activity = consumer_activity(instance, since=since)
    return assess(
        depth,
        dlq,
        activity,
        settings or health_settings(),
        now=now,
        backlog_since=next_backlog_since(backlog_since, depth, now),
    )


def latest_backlog_since(instance: dg.DagsterInstance) -> tuple[float | None, float]:
    """(``backlog_since`` of the latest ``events_queue`` report, the time of that report) for an evaluation in a run;
    without a report, no backlog and a time two sensor intervals ago."""
    latest = instance.fetch_materializations(EVENTS_QUEUE_KEY, limit=1).records
    if not latest:
        return None, time.time() - 120
    materialization = latest[0].asset_materialization
    value = materialization.metadata.get("backlog_since") if materialization else None
    return getattr(value, "value", None), latest[0].timestamp


def check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=EVENTS_QUEUE_KEY,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity(outcome.severity),
        description=outcome.description,
        metadata=outcome.metadata,
    )


def check_evaluation(outcome: CheckOutcome) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=EVENTS_QUEUE_KEY,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity(outcome.severity),
        description=outcome.description,
        metadata=outcome.metadata,
    )


def cannot_read_queue(error: BaseException) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=EVENTS_QUEUE_KEY,
        check_name=CONSUMER_IS_ALIVE,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"the queue's attributes could not be read ({type(error).__name__}): the consumer cannot read "
        "it either",
        metadata={"error": type(error).__name__},
    )


def report_metadata(report: HealthReport) -> dict[str, Any]:
    """What an ``events_queue`` report carries: the ``status`` first, then the numbers (plotted over time)."""
    a = report.activity
    meta: dict[str, Any] = {
        "status": dg.MetadataValue.text(status_of(report)),
        "visible": dg.MetadataValue.int(report.depth.visible),
        "in_flight": dg.MetadataValue.int(report.depth.in_flight),
        "delayed": dg.MetadataValue.int(report.depth.delayed),
        "dlq_messages": dg.MetadataValue.int(report.dlq.total),
        "oldest_message_age_seconds": dg.MetadataValue.float(round(report.oldest_message_age, 1)),
        "oldest_message_age_basis": dg.MetadataValue.text(report.age_basis),
        "batch_runs_waiting": dg.MetadataValue.int(a.runs_waiting),
        "received_since_last_report": dg.MetadataValue.int(a.received_since),
        "consumer": dg.MetadataValue.text(a.sensor_status),
    }
    if a.last_activity_at is not None:
        meta["seconds_since_consumer_activity"] = dg.MetadataValue.float(round(report.at - a.last_activity_at, 1))
        meta["last_consumer_activity"] = dg.MetadataValue.timestamp(a.last_activity_at)
    if report.backlog_since is not None:
        meta["backlog_since"] = dg.MetadataValue.timestamp(report.backlog_since)
    return meta
