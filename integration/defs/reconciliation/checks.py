"""Reconciliation: the asset check ``delius_contacts / matches_prison_records`` and what it reads from Dagster.

The people whose prison records changed recently are compared with their Delius contacts (flows/reconciliation.py).
The check fails (in the UI) when anything is missing; the people to repair are added as ``noms_number`` partitions,
and when repair is on, ``reconciliation_repair_sensor`` requests a ``noms_backfill_job`` run for each. Settings come
from ``RECONCILIATION_<FIELD>`` variables (settings.py), shown in the run's config; see docs/schedules.md.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from ...constants import BACKFILL_JOB, BACKFILL_OP, DELIUS_CONTACTS, EVENTS_JOB, RECONCILIATION_CHECK
from ...core.logfmt import kv
from ...core.notices import reconciliation_message
from ...core.times import LONDON, london_now
from ...flows import reconciliation as rec
from ...resources import DeliusDatabase, Notifier, SourceApiResource
from ..backfill.partitions import noms_partitions

CHECK_NAME = RECONCILIATION_CHECK
CHECK_OP = f"{DELIUS_CONTACTS}_{CHECK_NAME}"
RUNS_PAGE = 500  # runs (or reports) read at a time (every one of the window is read)
PEOPLE_SHOWN = 100


class ReconciliationConfig(dg.Config):
    window_hours: int = 48  # people whose prison records changed this recently are checked
    grace_minutes: int = 60  # items changed more recently than this are not judged (events on their way)
    max_people: int = 2000  # people checked per run
    concurrency: int = 4  # people fetched from the APIs at once
    time_budget_seconds: int = 1800  # no new batch of people after this
    sweep_days: int = 0  # also check 1/sweep_days of all linked people each run (0 = off)
    auto_repair: bool = False  # request a backfill for every person with missing or stale contacts
    max_repairs: int = 200  # backfills requested per run at most
    noms_numbers: list[str] = []  # check these people too (operator's choice), first


@dg.asset_check(
    asset=DELIUS_CONTACTS,
    name=CHECK_NAME,
    description="The contacts of people whose prison records changed recently match their case notes of interest "
    "and alerts: fails when any is missing (ERROR) or older than its source (WARN). See "
    "docs/schedules.md.",
)
def delius_contacts_match_prison_records(
    context: dg.AssetCheckExecutionContext,
    config: ReconciliationConfig,
    delius: DeliusDatabase,
    source_api: SourceApiResource,
    notifier: Notifier,
) -> dg.AssetCheckResult:
    engine = delius.store().engine
    since = datetime.now(UTC) - timedelta(hours=config.window_hours)
    from_runs, runs_scanned = people_in_recent_runs(context.instance, since)
    sources = {
        "requested": config.noms_numbers,
        **from_runs,
        "delius_recent": rec.people_with_recent_contacts(engine, since.astimezone(LONDON).replace(tzinfo=None)),
        "sweep": rec.people_in_sweep(engine, config.sweep_days, london_now().date()),
    }
    linked = rec.linked_people(engine, set().union(*sources.values()))
    selection = rec.choose_people(sources, linked, config.max_people)
    context.log.info(
        kv(
            "reconciliation_selection",
            people=len(selection.people),
            over_max_people=selection.over_limit,
            **{f"from_{name}": count for name, count in selection.by_source.items()},
            **{f"runs_scanned_{name}": count for name, count in runs_scanned.items()},
        )
    )
    report = rec.reconcile_people(
        selection.people,
        source_api.client(),
        engine,
        rec.Limits(
            concurrency=config.concurrency,
            time_budget_seconds=config.time_budget_seconds,
            grace_minutes=config.grace_minutes,
        ),
    )
    report.not_checked += selection.over_limit
    counts = report.counts()

    to_repair = [c.noms_number for c in report.needing_repair]
    if to_repair:  # so that the backfill can be launched for them (by the repair sensor or from the UI)
        context.instance.add_dynamic_partitions(noms_partitions.name, to_repair)
    repair_requested = config.auto_repair and bool(to_repair)
    if not to_repair:
        repair = "nothing to repair"
    elif repair_requested:
        repair = f"backfill requested for {min(len(to_repair), config.max_repairs)} people"
    else:
        repair = f"off: launch noms_backfill_job for the {len(to_repair)} people in this run's metadata"
    context.log.info(
        kv(
            "reconciliation",
            **counts,
            stopped=report.stopped,
            repair="requested" if repair_requested else ("none" if not to_repair else "off"),
            repairs=min(len(to_repair), config.max_repairs) if repair_requested else 0,
        )
    )
    notifier.post(
        reconciliation_message(
            context.run.run_id, counts, repair, report.stopped, notifier.run_link(context.run.run_id)
        ),
        context.log,
    )

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
            "people_to_repair": dg.MetadataValue.json(
                to_repair[: config.max_repairs] if repair_requested else to_repair
            ),
            "people": people_table(report),
            "missing_urns": dg.MetadataValue.json([urn for c in report.needing_repair for urn in c.missing][:100]),
        },
    )


def runs_since(instance: dg.DagsterInstance, job_name: str, since: datetime) -> Iterator[dg.DagsterRun]:
    """Every run of ``job_name`` created after ``since``, newest first, read ``RUNS_PAGE`` at a time. The window
    bounds the scan, not a count: a busy window (a run per consumer tick: tens of thousands in 48 hours) is read
    to its start."""
    cursor = None
    while True:
        page = instance.get_runs(dg.RunsFilter(job_name=job_name, created_after=since), cursor=cursor, limit=RUNS_PAGE)
        yield from page
        if len(page) < RUNS_PAGE:
            return
        cursor = page[-1].run_id


def reports_since(instance: dg.DagsterInstance, since: datetime) -> Iterator[Any]:
    """Every ``delius_contacts`` materialization (a consumer run's report of a chunk of events) recorded after
    ``since``, read ``RUNS_PAGE`` at a time: the window bounds the scan, not a count."""
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(DELIUS_CONTACTS), after_timestamp=since.timestamp()),
            limit=RUNS_PAGE,
            cursor=cursor,
        )
        yield from result.records
        if not result.has_more or not result.records:
            return
        cursor = result.cursor


def people_in_reports(metadata: Any) -> tuple[set[str], set[str]]:
    """(NOMS numbers of failed events, of the others) in one report's outcome table."""
    failed: set[str] = set()
    seen: set[str] = set()
    table = metadata.get("outcomes") if metadata else None
    for record in getattr(getattr(table, "value", None), "records", None) or []:
        data = record.data
        noms = data.get("noms_number")
        if isinstance(noms, str) and noms and data.get("action") != "linkage":
            (failed if data.get("action") == "failed" else seen).add(noms)
    return failed, seen


def people_in_recent_runs(instance: dg.DagsterInstance, since: datetime) -> tuple[dict[str, set[str]], dict[str, int]]:
    """People the integration heard about since ``since`` (run storage and event log, no API calls): from the outcome
    tables of the ``delius_contacts`` reports of ``prison_events_job`` runs (failed events first) and the partitions
    of ``noms_backfill_job`` runs; and how many runs of each job were read (all of the window's)."""
    failed, seen, backfilled = set(), set(), set()
    event_runs: set[str] = set()
    for record in reports_since(instance, since):
        if record.asset_materialization is None:
            continue
        event_runs.add(record.run_id)
        bad, good = people_in_reports(record.asset_materialization.metadata)
        failed |= bad
        seen |= good
    scanned = {EVENTS_JOB: len(event_runs), BACKFILL_JOB: 0}
    for run in runs_since(instance, BACKFILL_JOB, since):
        scanned[BACKFILL_JOB] += 1
        backfilled.update(partitions_of(instance, run))
    return {"failed_event_runs": failed, "event_runs": seen - failed, "backfill_runs": backfilled}, scanned


def partitions_of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The NOMS numbers of one backfill run: those in its config (``noms_backfill_job``), one partition, or a range
    (multi-partition backfill runs of ``linked_person_contacts``)."""
    run_config: dict[str, Any] = dict(run.run_config or {})
    configured = run_config.get("ops", {}).get(BACKFILL_OP, {}).get("config", {}).get("noms_numbers")
    if isinstance(configured, list):
        return [n for n in configured if isinstance(n, str)]
    if run.tags.get("dagster/partition"):
        return [run.tags["dagster/partition"]]
    start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    if not (start and end):
        return []
    try:
        with dg.partition_loading_context(dynamic_partitions_store=instance):  # the dynamic keys are the instance's
            return list(noms_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
    except Exception:  # noqa: BLE001 - a partition deleted since: the range cannot be resolved any more
        return []


def people_table(report: rec.ReconciliationReport) -> dg.MetadataValue:
    """The people with something wrong (repair first, then errors): ids and counts only."""
    rows = report.needing_repair + report.errors
    columns = [
        ("noms_number", "string"),
        ("items", "int"),
        ("missing", "int"),
        ("stale", "int"),
        ("soft_deleted", "int"),
        ("unreadable", "int"),
        ("error", "string"),
    ]
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "noms_number": c.noms_number,
                    "items": c.items,
                    "missing": len(c.missing),
                    "stale": len(c.stale),
                    "soft_deleted": c.soft_deleted,
                    "unreadable": c.unreadable,
                    "error": c.error or "",
                }
            )
            for c in rows[:PEOPLE_SHOWN]
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns]),
    )


def check_metadata(instance: dg.DagsterInstance, run_id: str) -> dict | None:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        assert record.dagster_event is not None  # of_type: records of Dagster events only
        evaluation = record.dagster_event.asset_check_evaluation_data
        if evaluation.check_name == CHECK_NAME:
            return dict(evaluation.metadata)
    return None
