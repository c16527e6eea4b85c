"""Nightly housekeeping of the Dagster instance (03:45 London time unless ``HOUSEKEEPING_CRON`` says otherwise)."""

import dagster as dg

from ... import settings
from ...constants import HOUSEKEEPING_OP, HOUSEKEEPING_SCHEDULE, TIMEZONE, TRIGGER_TAG
from .jobs import RunHousekeepingConfig, run_housekeeping_job

DEFAULT_CRON = "45 3 * * *"


@dg.schedule(
    name=HOUSEKEEPING_SCHEDULE,
    cron_schedule=settings.cron("HOUSEKEEPING_CRON", DEFAULT_CRON),
    execution_timezone=TIMEZONE,
    job=run_housekeeping_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: delete finished runs older than HOUSEKEEPING_RUN_RETENTION_DAYS (default 30, at least 14).",
)
def run_housekeeping_schedule(context: dg.ScheduleEvaluationContext):
    config = settings.load(
        RunHousekeepingConfig, "HOUSEKEEPING_", names={"older_than_days": "HOUSEKEEPING_RUN_RETENTION_DAYS"}
    )
    return dg.RunRequest(run_config=dg.RunConfig(ops={HOUSEKEEPING_OP: config}), tags={TRIGGER_TAG: "schedule"})
