"""Assets: the Delius contacts table (written by the event flow) and the per-person linkage backfill."""


import dagster as dg

from .backfill import CASE_NOTE, BackfillReport, backfill_people
from .partitions import noms_partitions
from .resources import DeliusDatabase, SourceApiResource

delius_contacts = dg.AssetSpec(
    key="delius_contacts",
    group_name="delius",
    kinds={"postgres"},
    description="NDelius CONTACT rows made from prison case notes and alerts. Delius owns the table; "
                "prison_events_job and the linkage backfill report what they wrote as materializations.",
)

CHECK_NAME = "every_item_has_one_contact"
PREVIEW_ROWS = 50


@dg.asset(
    key="linked_person_contacts",
    partitions_def=noms_partitions,
    group_name="delius",
    kinds={"postgres"},
    deps=[delius_contacts],
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=100),
    check_specs=[dg.AssetCheckSpec(CHECK_NAME, asset="linked_person_contacts",
                                   description="Every case note and alert of interest of the person has exactly "
                                               "one contact on the person's Delius record.")],
    description="Every case note of interest and every alert of a person whose NOMS number was linked to a "
                "probation case, merged into Delius with the event flow's rules (reference-behaviour §8).",
)
def linked_person_contacts(context: dg.AssetExecutionContext, delius: DeliusDatabase,
                           source_api: SourceApiResource):
    store, source = delius.store(), source_api.client()
    reports: list[BackfillReport] = []
    errors: list[str] = []
    for report in backfill_people(context.partition_keys, source, store):
        if report.fetch_error is not None:
            errors.append(f"{report.noms_number}: {report.fetch_error.reason}")
            context.log.warning(f"backfill noms={report.noms_number} fetch_failed reason={report.fetch_error.reason}")
            continue
        reports.append(report)
        counts = " ".join(f"{k}={v}" for k, v in report.counts.items() if v)
        context.log.info(f"backfill noms={report.noms_number} {counts}")
        if report.first_failure:
            errors.append(f"{report.noms_number}: {report.first_failure}")
    metadata = backfill_metadata(reports)
    check = check_contacts(reports, store)
    if errors:
        raise dg.Failure(description=f"{len(errors)} of {len(context.partition_keys)} backfills failed: "
                                     + "; ".join(errors[:10]), metadata=metadata)
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def backfill_metadata(reports: list[BackfillReport]) -> dict:
    totals: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for report in reports:
        for key, value in report.counts.items():
            totals[key] = totals.get(key, 0) + value
        for reason, value in report.skipped_by_reason.items():
            skipped[reason] = skipped.get(reason, 0) + value
    preview = [dg.TableRecord({"noms_number": r.noms_number, "crn": r.crn or "",
                               "case_notes": sum(1 for i in r.items if i.kind == CASE_NOTE),
                               "alerts": sum(1 for i in r.items if i.kind != CASE_NOTE),
                               "created": sum(v for k, v in r.counts.items() if k.endswith("_created")),
                               "updated": sum(v for k, v in r.counts.items() if k.endswith("_updated")),
                               "moved": sum(v for k, v in r.counts.items() if k.endswith("_moved")),
                               "unchanged": sum(v for k, v in r.counts.items() if k.endswith("_unchanged")),
                               "failed": len(r.failures),
                               "offender_in_delius": not r.offender_not_found})
               for r in reports[:PREVIEW_ROWS]]
    columns = [("noms_number", "string"), ("crn", "string"), ("case_notes", "int"), ("alerts", "int"),
               ("created", "int"), ("updated", "int"), ("moved", "int"), ("unchanged", "int"), ("failed", "int"),
               ("offender_in_delius", "bool")]
    planned: dict[str, int] = {}
    for report in reports:
        for key, value in report.planned.items():
            planned[key] = planned.get(key, 0) + value
    return {
        "people": dg.MetadataValue.int(len(reports)),
        "planned": dg.MetadataValue.json(planned),
        "seconds": dg.MetadataValue.json(reports[0].seconds if reports else {}),
        **{key: dg.MetadataValue.int(value) for key, value in totals.items()},
        "skipped_by_reason": dg.MetadataValue.json(skipped),
        "preview": dg.MetadataValue.table(
            records=preview, schema=dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in columns])),
    }


def check_contacts(reports: list[BackfillReport], store) -> dg.AssetCheckResult:
    """Each source item of interest has exactly one contact with its URN on the person's record."""
    rows, missing_total, duplicated_total = [], 0, 0
    for report in reports:
        if report.offender_not_found:
            continue
        found = store.person_contact_urns(report.noms_number)
        expected = report.urns_of_interest
        missing = len(expected - set(found))
        duplicated = sum(1 for urn in expected if found.get(urn, 0) > 1)
        missing_total += missing
        duplicated_total += duplicated
        rows.append(dg.TableRecord({"noms_number": report.noms_number, "items_of_interest": len(expected),
                                    "missing": missing, "duplicated": duplicated}))
    return dg.AssetCheckResult(
        check_name=CHECK_NAME, passed=missing_total == 0 and duplicated_total == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"missing": missing_total, "duplicated": duplicated_total,
                  "people": dg.MetadataValue.table(records=rows[:PREVIEW_ROWS], schema=dg.TableSchema(columns=[
                      dg.TableColumn("noms_number", "string"), dg.TableColumn("items_of_interest", "int"),
                      dg.TableColumn("missing", "int"), dg.TableColumn("duplicated", "int")]))})


noms_backfill_job = dg.define_asset_job(
    "noms_backfill_job",
    selection=[linked_person_contacts],
    tags={"hmpps/flow": "backfill", "dagster/max_runtime": "3600"},
    description="Backfills the contacts of linked people: one partition per NOMS number.",
)
