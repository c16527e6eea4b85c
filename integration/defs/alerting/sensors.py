"""Failure alerts: a short chat message (job, run id, reason; no personal data) when a run of this code location
fails, rate-limited so that an outage is one message, not hundreds."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from ...constants import FAILURE_SENSOR
from ...core.notices import failure_message, should_notify_failure, step_failure_summary
from ...resources import Notifier

FAILURE_WINDOW = timedelta(hours=1)


@dg.run_failure_sensor(
    name=FAILURE_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=120,  # not the 30 s default: each tick opens the instance (docs/performance.md)
    description="Posts a short message (job, run id, failure reason; no personal data) to NOTIFY_WEBHOOK_URL when "
    "a run of this code location fails. At most three messages per job per hour, then every tenth.",
)
def run_failure_notification_sensor(context: dg.RunFailureSensorContext, notifier: Notifier):
    run = context.dagster_run
    since = datetime.now(UTC) - FAILURE_WINDOW
    recent = context.instance.get_runs_count(
        dg.RunsFilter(job_name=run.job_name, updated_after=since, statuses=[dg.DagsterRunStatus.FAILURE])
    )
    if not should_notify_failure(recent):
        return dg.SkipReason(f"{recent} failures of {run.job_name} in the last hour: not notifying every one")
    steps = []
    for event in context.get_step_failure_events():
        assert event.step_key is not None  # a step failure event names its step
        steps.append(
            step_failure_summary(
                event.step_key,
                event.step_failure_data.error,
                event.step_failure_data.user_failure_data.description
                if event.step_failure_data.user_failure_data
                else None,
            )
        )
    reason = (context.failure_event.message or "run failed").splitlines()[0]
    notifier.post(
        failure_message(run.job_name, run.run_id, reason, steps, recent, notifier.run_link(run.run_id)), context.log
    )
    return None
