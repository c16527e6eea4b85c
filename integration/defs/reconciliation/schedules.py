"""The nightly reconciliation (02:00 London time unless ``RECONCILIATION_CRON`` says otherwise)."""

import dagster as dg

from ... import settings
from ...constants import RECONCILIATION_SCHEDULE, TIMEZONE, TRIGGER_TAG
from .checks import CHECK_OP, ReconciliationConfig
from .jobs import reconciliation_job

DEFAULT_RECONCILIATION_CRON = "0 2 * * *"  # every night 02:00 London time


@dg.schedule(
    name=RECONCILIATION_SCHEDULE,
    cron_schedule=settings.cron("RECONCILIATION_CRON", DEFAULT_RECONCILIATION_CRON),
    execution_timezone=TIMEZONE,
    job=reconciliation_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly reconciliation (02:00 London time unless RECONCILIATION_CRON says otherwise). Settings "
    "come from RECONCILIATION_<FIELD> variables, e.g. RECONCILIATION_AUTO_REPAIR=true.",
)
def reconciliation_schedule(context: dg.ScheduleEvaluationContext):
    config = settings.load(ReconciliationConfig, "RECONCILIATION_")
    return dg.RunRequest(run_config=dg.RunConfig(ops={CHECK_OP: config}), tags={TRIGGER_TAG: "schedule"})
