"""Repair after reconciliation: a backfill run for each person a reconciliation run asked to repair."""

import dagster as dg

from ...constants import RECONCILIATION_RUN_TAG, REPAIR_SENSOR
from ...core.logfmt import kv
from ..backfill.jobs import backfill_request, noms_backfill_job
from .checks import check_metadata
from .jobs import reconciliation_job


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name=REPAIR_SENSOR,
    monitored_jobs=[reconciliation_job],
    request_job=noms_backfill_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    # Not Dagster's 30 s: each tick opens the instance (docs/performance.md). A minute, not the other run-status
    # sensors' 5: a repair asked for is work an operator waits on, and 60 ticks an hour cost ~5 CPU-s.
    minimum_interval_seconds=60,
    description="Requests a noms_backfill_job run for each person a reconciliation run asked to repair "
    "(auto_repair). Does nothing for runs with auto_repair off.",
)
def reconciliation_repair_sensor(context: dg.RunStatusSensorContext):
    run_id = context.dagster_run.run_id
    metadata = check_metadata(context.instance, run_id)
    if not metadata or not metadata.get("repair_requested") or not metadata["repair_requested"].value:
        return dg.SkipReason("repair not requested by this reconciliation")
    people = list(metadata["people_to_repair"].value)
    context.log.info(kv("reconciliation_repair", reconciliation_run=run_id, backfills_requested=len(people)))
    return [
        backfill_request(
            [noms], run_key=f"repair-{run_id}-{noms}", trigger="reconciliation", tags={RECONCILIATION_RUN_TAG: run_id}
        )
        for noms in people
    ]
