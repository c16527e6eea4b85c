"""Unattended operation: the scheduled DLQ redrive, the nightly reconciliation and its repair (docs/schedules.md).

* ``dlq_redrive_schedule`` runs the operators' ``redrive_dlq_job`` every weekday morning; messages redriven
  ``DLQ_REDRIVE_PARK_AFTER`` times are parked (left in the DLQ) by the job itself, and ``dlq_redrive_report_sensor``
  (notifications.py) reports them.
* ``reconciliation_job`` runs the asset check ``delius_contacts / matches_prison_records``: the people whose prison
  records changed recently are compared with their Delius contacts (reconciliation.py). It fails (in the UI) when
  anything is missing; the people to repair are added as ``noms_number`` partitions, and when repair is on,
  ``reconciliation_repair_sensor`` requests a ``noms_backfill_job`` run for each.

Crons are read from ``DLQ_REDRIVE_CRON`` / ``RECONCILIATION_CRON`` when the code location loads (a deployment
setting: restart the code location to change it); the other settings are read at each tick and shown in the run's
config.
"""

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional

import dagster as dg

from . import notifications
from . import reconciliation as rec
from .assets import noms_backfill_job
from .delius.plan import london_now
from .jobs import prison_events_job
from .logfmt import kv
from .notifications import Notifier, reconciliation_message
from .operations import RedriveConfig, redrive_dlq_job
from .partitions import noms_partitions
from .resources import DeliusDatabase, SourceApiResource
from .rules import LONDON
from .settings import cron_from_env

log = logging.getLogger(__name__)

TIMEZONE = "Europe/London"
DEFAULT_DLQ_REDRIVE_CRON = "30 5 * * 1-5"       # weekdays 05:30 London time
DEFAULT_RECONCILIATION_CRON = "0 2 * * *"       # every night 02:00 London time
CHECK_NAME = "matches_prison_records"
CHECK_OP = f"delius_contacts_{CHECK_NAME}"
RUNS_PAGE = 500                  # runs read from run storage at a time (every run of the window is read)
PEOPLE_SHOWN = 100


def config_from_env(config_class: type[dg.Config], prefix: str) -> dict:
    """Scalar fields of ``config_class`` overridden by ``{prefix}{FIELD}`` environment variables (bad values are
    logged and ignored)."""
    values = {}
    for name, info in config_class.model_fields.items():
        raw = os.environ.get(f"{prefix}{name.upper()}")
        kind = info.annotation
        if raw in (None, "") or kind not in (int, bool, float):
            continue
        try:
            values[name] = raw.strip().lower() in ("1", "true", "yes", "on") if kind is bool else kind(raw)
        except ValueError:
            log.warning(kv("invalid_setting", setting=f"{prefix}{name.upper()}", value=raw, using="default"))
    return values


# ----------------------------------------------------------------------------------------------- DLQ redrive


@dg.schedule(
    name="dlq_redrive_schedule",
    cron_schedule=cron_from_env("DLQ_REDRIVE_CRON", DEFAULT_DLQ_REDRIVE_CRON),
    execution_timezone=TIMEZONE,
    job=redrive_dlq_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Redrives the dead-letter queue into the events queue (weekdays 05:30 London time unless "
                "DLQ_REDRIVE_CRON says otherwise). Messages already redriven DLQ_REDRIVE_PARK_AFTER times (default 3) "
                "are parked in the DLQ and reported; nothing is deleted.",
)
def dlq_redrive_schedule(context: dg.ScheduleEvaluationContext):
    config = RedriveConfig(**config_from_env(RedriveConfig, "DLQ_REDRIVE_"))
    return dg.RunRequest(run_config=dg.RunConfig(ops={"redrive_dead_letters": config}),
                         tags={"hmpps/trigger": "schedule"})


# ----------------------------------------------------------------------------------------------- reconciliation


class ReconciliationConfig(dg.Config):
    window_hours: int = 48          # people whose prison records changed this recently are checked
    grace_minutes: int = 60         # items changed more recently than this are not judged (events on their way)
    max_people: int = 2000          # people checked per run
    concurrency: int = 4            # people fetched from the APIs at once
    time_budget_seconds: int = 1800  # no new batch of people after this
    sweep_days: int = 0             # also check 1/sweep_days of all linked people each run (0 = off)
    auto_repair: bool = False       # request a backfill for every person with missing or stale contacts
    max_repairs: int = 200          # backfills requested per run at most
    noms_numbers: list[str] = []    # check these people too (operator's choice), first


@dg.asset_check(
    asset="delius_contacts",
    name=CHECK_NAME,
    description="The contacts of people whose prison records changed recently match their case notes of interest "
                "and alerts: fails when any is missing (ERROR) or older than its source (WARN). See "
                "docs/schedules.md.",
)
def delius_contacts_match_prison_records(context: dg.AssetCheckExecutionContext, config: ReconciliationConfig,
                                         delius: DeliusDatabase, source_api: SourceApiResource,
                                         notifier: Notifier) -> dg.AssetCheckResult:
    engine = delius.store().engine
    since = datetime.now(timezone.utc) - timedelta(hours=config.window_hours)
    from_runs, runs_scanned = people_in_recent_runs(context.instance, since)
    sources = {"requested": config.noms_numbers,
               **from_runs,
               "delius_recent": rec.people_with_recent_contacts(engine, since.astimezone(LONDON).replace(tzinfo=None)),
               "sweep": rec.people_in_sweep(engine, config.sweep_days, london_now().date())}
    linked = rec.linked_people(engine, set().union(*sources.values()))
    selection = rec.choose_people(sources, linked, config.max_people)
    context.log.info(kv("reconciliation_selection", people=len(selection.people),
                        over_max_people=selection.over_limit,
                        **{f"from_{name}": count for name, count in selection.by_source.items()},
                        **{f"runs_scanned_{name}": count for name, count in runs_scanned.items()}))
    report = rec.reconcile_people(selection.people, source_api.client(), engine, rec.Limits(
        concurrency=config.concurrency, time_budget_seconds=config.time_budget_seconds,
        grace_minutes=config.grace_minutes))
    report.not_checked += selection.over_limit
    counts = report.counts()

    to_repair = [c.noms_number for c in report.needing_repair]
    if to_repair:   # so that the backfill can be launched for them (by the repair sensor or from the UI)
        context.instance.add_dynamic_partitions(noms_partitions.name, to_repair)
    repair_requested = config.auto_repair and bool(to_repair)
    if not to_repair:
        repair = "nothing to repair"
    elif repair_requested:
        repair = f"backfill requested for {min(len(to_repair), config.max_repairs)} people"
    else:
        repair = f"off: launch noms_backfill_job for the {len(to_repair)} people in this run's metadata"
    context.log.info(kv("reconciliation", **counts, stopped=report.stopped,
                        repair="requested" if repair_requested else ("none" if not to_repair else "off"),
                        repairs=min(len(to_repair), config.max_repairs) if repair_requested else 0))
    notifier.post(reconciliation_message(context.run.run_id, counts, repair, report.stopped,
                                         notifier.run_link(context.run.run_id)), context.log)

    problems = counts["missing"] or counts["stale"] or counts["people_with_errors"]
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR if counts["missing"] else dg.AssetCheckSeverity.WARN,
        metadata={
            **{name: dg.MetadataValue.int(value) for name, value in counts.items()},
            "window_start": dg.MetadataValue.text(since.isoformat(timespec="seconds")),
            "people_by_source": dg.MetadataValue.json(selection.by_source),
            "runs_scanned": dg.MetadataValue.json(runs_scanned),
            "stopped": dg.MetadataValue.text(report.stopped or "no"),
            "seconds": dg.MetadataValue.float(report.seconds),
            "repair": dg.MetadataValue.text(repair),
            "repair_requested": dg.MetadataValue.bool(repair_requested),
            "people_to_repair": dg.MetadataValue.json(to_repair[:config.max_repairs] if repair_requested
                                                      else to_repair),
            "people": people_table(report),
            "missing_urns": dg.MetadataValue.json([urn for c in report.needing_repair for urn in c.missing][:100]),
        })


def runs_since(instance: dg.DagsterInstance, job_name: str, since: datetime) -> Iterator[dg.DagsterRun]:
    """Every run of ``job_name`` created after ``since``, newest first, read ``RUNS_PAGE`` at a time. The window
    bounds the scan, not a count: a busy window (a run per consumer tick: tens of thousands in 48 hours) is read
    to its start."""
    cursor = None
    while True:
        page = instance.get_runs(dg.RunsFilter(job_name=job_name, created_after=since), cursor=cursor,
                                 limit=RUNS_PAGE)
        yield from page
        if len(page) < RUNS_PAGE:
            return
        cursor = page[-1].run_id


def people_in_recent_runs(instance: dg.DagsterInstance,
                          since: datetime) -> tuple[dict[str, set[str]], dict[str, int]]:
    """People the integration heard about since ``since`` (run storage, no API calls): from the events of
    ``prison_events_job`` runs (failed runs first) and the partitions of ``noms_backfill_job`` runs; and how many
    runs of each job were read (all of the window's)."""
    failed, seen, backfilled = set(), set(), set()
    scanned = {prison_events_job.name: 0, noms_backfill_job.name: 0}
    for run in runs_since(instance, prison_events_job.name, since):
        scanned[prison_events_job.name] += 1
        events = (run.run_config.get("ops", {}).get("process_prison_events", {}).get("config", {})
                  .get("events", []))
        people = rec.people_in_event_bodies(e.get("body", "") for e in events)
        (failed if run.status is dg.DagsterRunStatus.FAILURE else seen).update(people)
    for run in runs_since(instance, noms_backfill_job.name, since):
        scanned[noms_backfill_job.name] += 1
        backfilled.update(partitions_of(instance, run))
    return {"failed_event_runs": failed, "event_runs": seen, "backfill_runs": backfilled}, scanned


def partitions_of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The NOMS numbers of one backfill run: one partition, or a range (multi-partition backfill runs)."""
    if run.tags.get("dagster/partition"):
        return [run.tags["dagster/partition"]]
    start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    if not (start and end):
        return []
    try:
        return noms_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end),
                                                           dynamic_partitions_store=instance)
    except Exception:   # a partition deleted since: the range cannot be resolved any more
        return []


def people_table(report: rec.ReconciliationReport) -> dg.MetadataValue:
    """The people with something wrong (repair first, then errors): ids and counts only."""
    rows = report.needing_repair + report.errors
    columns = [("noms_number", "string"), ("items", "int"), ("missing", "int"), ("stale", "int"),
               ("soft_deleted", "int"), ("unreadable", "int"), ("error", "string")]
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"noms_number": c.noms_number, "items": c.items, "missing": len(c.missing),
                                 "stale": len(c.stale), "soft_deleted": c.soft_deleted, "unreadable": c.unreadable,
                                 "error": c.error or ""}) for c in rows[:PEOPLE_SHOWN]],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns]))


reconciliation_job = dg.define_asset_job(
    "reconciliation_job",
    selection=dg.AssetSelection.checks(delius_contacts_match_prison_records),
    tags={"hmpps/flow": "operations", "dagster/max_runtime": "3600"},
    description="Compares the Delius contacts of recently changed people with their prison records "
                "(check delius_contacts / matches_prison_records).",
)


@dg.schedule(
    name="reconciliation_schedule",
    cron_schedule=cron_from_env("RECONCILIATION_CRON", DEFAULT_RECONCILIATION_CRON),
    execution_timezone=TIMEZONE,
    job=reconciliation_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly reconciliation (02:00 London time unless RECONCILIATION_CRON says otherwise). Settings "
                "come from RECONCILIATION_<FIELD> variables, e.g. RECONCILIATION_AUTO_REPAIR=true.",
)
def reconciliation_schedule(context: dg.ScheduleEvaluationContext):
    config = ReconciliationConfig(**config_from_env(ReconciliationConfig, "RECONCILIATION_"))
    return dg.RunRequest(run_config=dg.RunConfig(ops={CHECK_OP: config}), tags={"hmpps/trigger": "schedule"})


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="reconciliation_repair_sensor",
    monitored_jobs=[reconciliation_job],
    request_job=noms_backfill_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
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
    return [dg.RunRequest(run_key=f"repair-{run_id}-{noms}", partition_key=noms,
                          tags={"hmpps/trigger": "reconciliation", "hmpps/reconciliation-run": run_id})
            for noms in people]


def check_metadata(instance: dg.DagsterInstance, run_id: str) -> Optional[dict]:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if evaluation.check_name == CHECK_NAME:
            return dict(evaluation.metadata)
    return None


defs = dg.Definitions.merge(
    dg.Definitions(asset_checks=[delius_contacts_match_prison_records], jobs=[reconciliation_job],
                   schedules=[dlq_redrive_schedule, reconciliation_schedule], sensors=[reconciliation_repair_sensor]),
    notifications.defs,
)
