"""``queue_health_sensor``: reports ``events_queue`` (a materialization with the queue's status and numbers) and its
checks every minute, launching no runs."""

import json
import time
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ... import settings
from ...constants import HEALTH_SENSOR
from ...core.health import status_of, what_to_report
from ...core.logfmt import kv
from ...resources import EventsQueueResource
from .checks import DEFAULT_INTERVAL_SECONDS
from .observe import EVENTS_QUEUE_KEY, cannot_read_queue, check_evaluation, evaluate, health_settings, report_metadata


@dataclass(frozen=True)
class _Interval:
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS


def _interval_seconds() -> int:
    """HEALTH_SENSOR_INTERVAL_SECONDS, read when the code location loads (a deployment setting)."""
    return settings.load(_Interval, "HEALTH_SENSOR_", minimums={"interval_seconds": 5}).interval_seconds


@dg.sensor(
    name=HEALTH_SENSOR,
    minimum_interval_seconds=_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports events_queue (status, depths, oldest-message age, consumer state) as a materialization "
    "and its checks dlq_is_empty, consumer_is_alive and oldest_message_age_ok. Launches no runs and never "
    "receives from the queues.",
)
def queue_health_sensor(context: dg.SensorEvaluationContext, events_queue: EventsQueueResource):
    thresholds = health_settings()
    now = time.time()
    cursor = _load_cursor(context.cursor)
    since = cursor.get("at") or now - 2 * _interval_seconds()
    try:
        report = evaluate(
            context.instance,
            events_queue.queue(),
            backlog_since=cursor.get("backlog_since"),
            since=since,
            settings=thresholds,
            now=now,
        )
    except Exception as exc:  # noqa: BLE001 - SQS unreachable: say so on the check, keep the previous report
        context.log.warning(kv("queue_health", error=type(exc).__name__))
        return dg.SensorResult(
            asset_events=[cannot_read_queue(exc)],
            skip_reason=f"queue attributes could not be read ({type(exc).__name__})",
            cursor=json.dumps({**cursor, "at": now}),
        )
    reporting = what_to_report(report, cursor, thresholds)
    events: list = [check_evaluation(outcome) for outcome in reporting.checks]
    if reporting.observation:
        # First, so that the checks after it count for it (the UI shows checks against the latest materialization).
        events.insert(
            0,
            dg.AssetMaterialization(
                asset_key=EVENTS_QUEUE_KEY, description=status_of(report), metadata=report_metadata(report)
            ),
        )
    cursor = reporting.cursor
    context.log.info(report.log_line(reported=len(events)))
    return dg.SensorResult(asset_events=events, skip_reason=report.summary(), cursor=json.dumps(cursor))


def _load_cursor(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}
