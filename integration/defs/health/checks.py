"""The three queue health checks of ``events_queue``; ``queue_health_checks`` evaluates them in a run (the UI's
"Execute"), ``queue_health_sensor`` every minute without one."""

import time

import dagster as dg

from ...constants import CONSUMER_IS_ALIVE, DLQ_IS_EMPTY, HEALTH_CHECKS, OLDEST_MESSAGE_AGE_OK
from ...resources import EventsQueueResource
from .observe import EVENTS_QUEUE_KEY, evaluate

DEFAULT_INTERVAL_SECONDS = 60

CHECK_SPECS = [
    dg.AssetCheckSpec(DLQ_IS_EMPTY, asset=EVENTS_QUEUE_KEY,
                      description="The dead-letter queue is empty. Fails (WARN) with the number of messages waiting "
                                  "for an operator: peek_dlq_job, fix the cause, redrive_dlq_job."),
    dg.AssetCheckSpec(CONSUMER_IS_ALIVE, asset=EVENTS_QUEUE_KEY,
                      description="Messages are not left waiting: fails (ERROR) when messages wait and nothing has "
                                  "been received or processed for HEALTH_STALL_SECONDS, or the queue sensor's latest "
                                  "tick failed or it stopped ticking; WARN while prison_events_sensor is stopped."),
    dg.AssetCheckSpec(OLDEST_MESSAGE_AGE_OK, asset=EVENTS_QUEUE_KEY,
                      description="The oldest message is younger than HEALTH_MAX_MESSAGE_AGE_SECONDS (WARN; ERROR "
                                  "above three times that). Estimated from the SentTimestamp of received messages and "
                                  "the time visible messages have been waiting."),
]


@dg.multi_asset_check(specs=CHECK_SPECS, name=HEALTH_CHECKS,
                      description="Evaluate the queue health checks now (queue_health_sensor does this every minute).")
def queue_health_checks(context: dg.AssetCheckExecutionContext, events_queue: EventsQueueResource):
    instance = context.instance
    latest = instance.fetch_observations(EVENTS_QUEUE_KEY, limit=1).records
    backlog_since = None
    observed_at = time.time() - 2 * DEFAULT_INTERVAL_SECONDS
    if latest:
        observed_at = latest[0].timestamp
        value = latest[0].asset_observation.metadata.get("backlog_since") if latest[0].asset_observation else None
        backlog_since = getattr(value, "value", None)
    report = evaluate(instance, events_queue.queue(), backlog_since=backlog_since, since=observed_at)
    context.log.info(report.log_line())
    for outcome in report.checks:
        yield dg.AssetCheckResult(asset_key=EVENTS_QUEUE_KEY, check_name=outcome.name, passed=outcome.passed,
                                  severity=dg.AssetCheckSeverity(outcome.severity), description=outcome.description,
                                  metadata=outcome.metadata)
