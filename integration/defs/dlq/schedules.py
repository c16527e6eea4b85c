"""The unattended DLQ redrive: weekdays 05:30 London time, repeat offenders parked, nothing deleted."""

import dagster as dg

from ... import settings
from ...constants import REDRIVE_OP, REDRIVE_SCHEDULE, TIMEZONE, TRIGGER_TAG
from .jobs import RedriveConfig, redrive_dlq_job

DEFAULT_DLQ_REDRIVE_CRON = "30 5 * * 1-5"  # weekdays 05:30 London time


@dg.schedule(
    name=REDRIVE_SCHEDULE,
    cron_schedule=settings.cron("DLQ_REDRIVE_CRON", DEFAULT_DLQ_REDRIVE_CRON),
    execution_timezone=TIMEZONE,
    job=redrive_dlq_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Redrives the dead-letter queue into the events queue (weekdays 05:30 London time unless "
    "DLQ_REDRIVE_CRON says otherwise). Messages already redriven DLQ_REDRIVE_PARK_AFTER times (default 3) "
    "are parked in the DLQ and reported; nothing is deleted.",
)
def dlq_redrive_schedule(context: dg.ScheduleEvaluationContext):
    config = settings.load(RedriveConfig, "DLQ_REDRIVE_")
    return dg.RunRequest(run_config=dg.RunConfig(ops={REDRIVE_OP: config}), tags={TRIGGER_TAG: "schedule"})
