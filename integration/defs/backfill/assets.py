"""The linkage backfill: ``linked_person_contacts``, one partition per NOMS number, with its per-person check."""

import dagster as dg

from ...constants import BACKFILL_CHECK, DELIUS_CONTACTS, LINKED_PERSON_CONTACTS
from ...core.events import is_noms_number
from ...core.logfmt import kv
from ...core.text import clip
from ...flows.backfill import BackfillReport, backfill_people
from ...resources import DeliusDatabase, SourceApiResource
from .partitions import noms_partitions
from ...delius import queries

CHECK_NAME = BACKFILL_CHECK
PREVIEW_ROWS = 50
NOT_A_NOMS_NUMBER = "partition key is not a NOMS number (a letter, four digits, two letters: A1234BC)"


@dg.asset(
    key=LINKED_PERSON_CONTACTS,
    partitions_def=noms_partitions,
    group_name="delius",
    kinds={"postgres"},
    deps=[DELIUS_CONTACTS],
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=100),
    # Each person's partition is materialized on its own (below), so one person's failure fails only that partition
    # of a 100-partition run: the run's other people keep their materializations and counts.
    output_required=False,
    check_specs=[dg.AssetCheckSpec(CHECK_NAME, asset=LINKED_PERSON_CONTACTS,
                                   description="Every case note and alert of interest of the person has exactly "
                                               "one contact on the person's Delius record.")],
    description="Every case note of interest and every alert of a person whose NOMS number was linked to a "
                "probation case, merged into Delius with the event flow's rules (docs/rules.md §8).",
)
def linked_person_contacts(context: dg.AssetExecutionContext, delius: DeliusDatabase,
                           source_api: SourceApiResource):
    store, source = delius.store(), source_api.client()
    reports: list[BackfillReport] = []
    errors: list[str] = []
    # A partition key that is not a NOMS number (however it was added) is refused: its partition fails, clearly,
    # and nothing is fetched for it; the run's other people are backfilled.
    for key in context.partition_keys:
        if not is_noms_number(key):
            errors.append(f"{clip(key, 40)!r}: {NOT_A_NOMS_NUMBER}")
            context.log.warning(kv("backfill", noms=clip(key, 40), outcome="refused", reason=NOT_A_NOMS_NUMBER))
    people = [key for key in context.partition_keys if is_noms_number(key)]
    for report in backfill_people(people, source, store):
        if report.error is not None:
            errors.append(f"{report.noms_number}: {report.error}")
            context.log.warning(kv("backfill", noms=report.noms_number, outcome="fetch_failed",
                                   reason=report.error))
            continue
        reports.append(report)
        context.log.info(kv("backfill", noms=report.noms_number, **{k: v for k, v in report.counts.items() if v}))
        if report.first_failure:
            errors.append(f"{report.noms_number}: {report.first_failure}")
        else:
            yield dg.AssetMaterialization(asset_key=context.asset_key, partition=report.noms_number,
                                          description="contacts of a linked person",
                                          metadata=person_metadata(report))
    yield check_contacts(reports, store)
    totals = backfill_totals(reports)
    context.log.info(kv("backfill_run", people=len(context.partition_keys), failed=len(errors),
                        **{k: v for k, v in totals.items() if v}))
    if errors:
        raise dg.Failure(description=f"{len(errors)} of {len(context.partition_keys)} backfills failed: "
                                     + "; ".join(errors[:10]),
                         metadata={"people": len(context.partition_keys), "failed_people": len(errors),
                                   **totals})


def backfill_totals(reports: list[BackfillReport]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for report in reports:
        for key, value in report.counts.items():
            totals[key] = totals.get(key, 0) + value
    return totals


ITEM_COLUMNS = [("kind", "string"), ("source_id", "string"), ("planned", "string"), ("action", "string"),
                ("reason", "string"), ("contact_id", "int")]


def person_metadata(report: BackfillReport) -> dict:
    """One person's counts (CaseNotesMigrated-style), reasons and a preview of the items: ids and codes, no text."""
    preview = [dg.TableRecord({"kind": i.kind, "source_id": clip(i.source_id), "planned": i.planned or "",
                               "action": i.outcome.action.value if i.outcome else "filtered",
                               "reason": (i.outcome.reason if i.outcome else i.filtered) or "",
                               "contact_id": i.outcome.contact_id if i.outcome else None})
               for i in report.items[:PREVIEW_ROWS]]
    return {
        "crn": report.crn or "",
        "offender_in_delius": not report.offender_not_found,
        "items": len(report.items),
        "planned": dg.MetadataValue.json(report.planned),
        "seconds": dg.MetadataValue.json(report.seconds),
        **{key: dg.MetadataValue.int(value) for key, value in report.counts.items()},
        "skipped_by_reason": dg.MetadataValue.json(report.skipped_by_reason),
        "replaced_characters": dg.MetadataValue.int(report.replaced_characters),
        "preview": dg.MetadataValue.table(
            records=preview, schema=dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in ITEM_COLUMNS])),
    }


def check_contacts(reports: list[BackfillReport], store) -> dg.AssetCheckResult:
    """Each source item of interest has exactly one contact with its URN on the person's record."""
    rows, missing_total, duplicated_total = [], 0, 0
    for report in reports:
        if report.offender_not_found:
            continue
        found = queries.person_contact_urns(store.engine, report.noms_number)
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


