"""Housekeeping of the Dagster instance: delete finished runs older than a configurable age, in chunks.

Dagster never prunes run history or event logs on its own (docs/operations.md): with a run per micro-batch, run
storage grows every day. ``run_housekeeping_schedule`` (nightly) runs ``run_housekeeping_job``, which deletes
*finished* runs (success, failure, canceled) created before ``now - older_than_days``, ``chunk_size`` at a time,
at most ``max_runs`` per job run (the rest goes next night), and reports the counts as run metadata. Queued and
in-progress runs are never touched.

**Why the age is long (default 30 days, never less than 14).** Deleting a run frees its ``run_key``: from then on
Dagster no longer recognises a run request with that key as a duplicate (docs/queue-protocol.md), and lookups by key
(the sensor's custody of linkage messages) no longer find it. A message can be received again for as long as SQS
keeps it -- up to 14 days, the maximum ``MessageRetentionPeriod`` (the events queue keeps 4) -- and a dead-lettered
one can be redriven any time in its DLQ's retention. Keeping every run for longer than that means no key is freed
while a message that could lead to it is still around, and the run that handled a message (the operator's record of
its outcome: per-event rows, reasons) outlives the message. The nightly reconciliation also reads the runs of its
window (docs/schedules.md). Deleting a run also deletes its event log, including the ``delius_contacts``
materializations it reported, so the asset's history in the UI starts at the retention horizon.

Settings (environment, read when the schedule ticks; the cron when the code location loads):

* ``HOUSEKEEPING_RUN_RETENTION_DAYS`` — delete finished runs older than this many days (default 30; below 14 the
  job refuses to run);
* ``HOUSEKEEPING_CHUNK_SIZE`` (default 200), ``HOUSEKEEPING_MAX_RUNS`` (default 20000);
* ``HOUSEKEEPING_CRON`` — default ``45 3 * * *`` (03:45 Europe/London).
"""

from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg

from integration.defs.pods import OPERATIONS_RESOURCES, pod_tags

from ...constants import FLOW_OPERATIONS, FLOW_TAG, HOUSEKEEPING_JOB, HOUSEKEEPING_OP
from ...core.logfmt import kv

DEFAULT_RETENTION_DAYS = 30
MIN_RETENTION_DAYS = 14  # the longest SQS MessageRetentionPeriod: see the module docstring
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def utc_now() -> datetime:
    """The clock (tests move it)."""
    return datetime.now(UTC)


class RunHousekeepingConfig(dg.Config):
    older_than_days: int = DEFAULT_RETENTION_DAYS
    chunk_size: int = 200
    max_runs: int = 20_000
    dry_run: bool = False  # count what would be deleted, delete nothing


@dg.op(
    name=HOUSEKEEPING_OP,
    description="Delete finished runs (and their event logs) older than older_than_days, in chunks; counts as "
    "metadata. Never touches queued or in-progress runs.",
)
def delete_old_runs(context: dg.OpExecutionContext, config: RunHousekeepingConfig) -> dict:
    if config.older_than_days < MIN_RETENTION_DAYS:
        raise dg.Failure(
            description=f"older_than_days={config.older_than_days} is below {MIN_RETENTION_DAYS}: runs "
            "must outlive the SQS message retention (deleting a run frees its run_key)"
        )
    if config.chunk_size < 1 or config.max_runs < 1:
        raise dg.Failure(description="chunk_size and max_runs must be at least 1")
    instance = context.instance
    cutoff = utc_now() - timedelta(days=config.older_than_days)
    older = dg.RunsFilter(statuses=FINISHED, created_before=cutoff)
    by_status: Counter[str] = Counter()
    by_job: Counter[str] = Counter()
    chunks = 0
    if config.dry_run:
        would = instance.get_runs_count(older)
    else:
        while sum(by_status.values()) < config.max_runs:
            limit = min(config.chunk_size, config.max_runs - sum(by_status.values()))
            records = instance.get_run_records(older, limit=limit, order_by="create_timestamp", ascending=True)
            records = [r for r in records if r.dagster_run.run_id != context.run_id]
            if not records:
                break
            for record in records:
                run = record.dagster_run
                instance.delete_run(run.run_id)
                by_status[run.status.value] += 1
                by_job[run.job_name] += 1
            chunks += 1
            context.log.info(
                kv("housekeeping_chunk", chunk=chunks, deleted=len(records), deleted_so_far=sum(by_status.values()))
            )
        would = 0
    remaining = instance.get_runs_count(older)
    deleted = sum(by_status.values())
    context.log.info(
        kv(
            "housekeeping",
            deleted=deleted,
            cutoff_utc=cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"),
            chunks=chunks,
            remaining_older=remaining,
            dry_run=config.dry_run,
            **({"would_delete": would} if config.dry_run else {}),
        )
    )
    metadata = {
        "cutoff_utc": dg.MetadataValue.text(cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")),
        "older_than_days": dg.MetadataValue.int(config.older_than_days),
        "deleted": dg.MetadataValue.int(deleted),
        "deleted_by_status": dg.MetadataValue.json(dict(sorted(by_status.items()))),
        "deleted_by_job": dg.MetadataValue.json(dict(sorted(by_job.items()))),
        "chunks": dg.MetadataValue.int(chunks),
        "remaining_older": dg.MetadataValue.int(remaining),
        "dry_run": dg.MetadataValue.bool(config.dry_run),
    }
    if config.dry_run:
        metadata["would_delete"] = dg.MetadataValue.int(would)
    context.add_output_metadata(metadata)
    return {"deleted": deleted, "remaining_older": remaining, "chunks": chunks}


@dg.job(
    name=HOUSEKEEPING_JOB,
    description="Delete finished runs older than the retention age (HOUSEKEEPING_RUN_RETENTION_DAYS, default 30 "
    "days, at least 14: longer than SQS keeps a message). Runs nightly; safe to run by hand.",
    executor_def=dg.in_process_executor,
    tags={FLOW_TAG: FLOW_OPERATIONS, **pod_tags(OPERATIONS_RESOURCES)},
)
def run_housekeeping_job():
    delete_old_runs()
