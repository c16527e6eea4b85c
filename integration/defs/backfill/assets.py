"""The linkage backfill: ``linked_person_contacts``, one partition per NOMS number, with its per-person check."""

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import dagster as dg

from ...constants import BACKFILL_CHECK, CAUSE_TAG, DELIUS_CONTACTS, LINKED_PERSON_CONTACTS, TRIGGER_TAG
from ...core.events import is_noms_number
from ...core.logfmt import kv
from ...core.text import clip
from ...delius import queries
from ...flows.backfill import DEFAULT_CAUSE, BackfillReport, backfill_people
from ...resources import DeliusDatabase, SourceApiResource
from .partitions import noms_partitions

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
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=LINKED_PERSON_CONTACTS,
            description="Every case note and alert of interest of the person has exactly "
            "one contact on the person's Delius record.",
        )
    ],
    description="Every case note of interest and every alert of a person whose NOMS number was linked to a "
    "probation case, merged into Delius with the event flow's rules (docs/rules.md §8).",
)
def linked_person_contacts(context: dg.AssetExecutionContext, delius: DeliusDatabase, source_api: SourceApiResource):
    # The partitions of this run: one (a linkage or repair run of noms_backfill_job's partitions) or a range (a
    # multi-partition backfill); noms_backfill_job runs launched with NOMS numbers in config go through backfill_op.
    outcome = yield from backfill(
        context.partition_keys, delius, source_api, context.log, cause=backfill_cause(context.run.tags)
    )
    yield dg.AssetCheckResult(**outcome.check)
    outcome.raise_if_failed()


@dataclass
class BackfillOutcome:
    """What a backfill of some people came to: the check's result (``AssetCheckResult`` arguments) and the failures."""

    people: int
    check: dict
    errors: list[str]
    totals: dict[str, int]

    def raise_if_failed(self) -> None:
        if self.errors:
            raise dg.Failure(
                description=f"{len(self.errors)} of {self.people} backfills failed: " + "; ".join(self.errors[:10]),
                metadata={"people": self.people, "failed_people": len(self.errors), **self.totals},
            )


def backfill(
    noms_numbers: Sequence[str], delius: DeliusDatabase, source_api: SourceApiResource, log, cause: str = DEFAULT_CAUSE
) -> Generator[dg.AssetMaterialization, None, BackfillOutcome]:
    """Backfill each person, yielding one ``linked_person_contacts`` materialization per person that did not fail
    (its partition); returns the check of their contacts and the failures (raised by ``raise_if_failed``, after
    every person and item was tried)."""
    store, source = delius.store(), source_api.client()
    reports: list[BackfillReport] = []
    errors: list[str] = []
    # A key that is not a NOMS number (however its partition was added) is refused: that person fails, clearly, and
    # nothing is fetched for it; the run's other people are backfilled.
    for key in noms_numbers:
        if not is_noms_number(key):
            errors.append(f"{clip(key, 40)!r}: {NOT_A_NOMS_NUMBER}")
            log.warning(kv("backfill", noms=clip(key, 40), outcome="refused", reason=NOT_A_NOMS_NUMBER))
    people = [key for key in noms_numbers if is_noms_number(key)]
    for report in backfill_people(people, source, store, cause=cause):
        if report.error is not None:
            errors.append(f"{report.noms_number}: {report.error}")
            log.warning(kv("backfill", noms=report.noms_number, outcome="fetch_failed", reason=report.error))
            continue
        reports.append(report)
        log.info(kv("backfill", noms=report.noms_number, **{k: v for k, v in report.counts.items() if v}))
        if report.first_failure:
            errors.append(f"{report.noms_number}: {report.first_failure}")
        else:
            yield dg.AssetMaterialization(
                asset_key=dg.AssetKey(LINKED_PERSON_CONTACTS),
                partition=report.noms_number,
                description="contacts of a linked person",
                metadata=person_metadata(report),
            )
    totals = backfill_totals(reports)
    log.info(kv("backfill_run", people=len(noms_numbers), failed=len(errors), **{k: v for k, v in totals.items() if v}))
    return BackfillOutcome(len(noms_numbers), check_contacts(reports, store), errors, totals)


def backfill_cause(tags) -> str:
    """``CaseNotesMigrated.cause``: the run's ``hmpps/cause`` tag (the linkage event's type, for a requester that
    knows it), else what triggered it (``hmpps/trigger``: linkage, cli, reconciliation...), else ``backfill``."""
    return tags.get(CAUSE_TAG) or tags.get(TRIGGER_TAG) or DEFAULT_CAUSE


def backfill_totals(reports: list[BackfillReport]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for report in reports:
        for key, value in report.counts.items():
            totals[key] = totals.get(key, 0) + value
    return totals


ITEM_COLUMNS = [
    ("kind", "string"),
    ("source_id", "string"),
    ("planned", "string"),
    ("action", "string"),
    ("reason", "string"),
    ("contact_id", "int"),
]


def person_metadata(report: BackfillReport) -> dict:
    """One person's counts (CaseNotesMigrated-style), reasons and a preview of the items: ids and codes, no text."""
    preview = [
        dg.TableRecord(
            {
                "kind": i.kind,
                "source_id": clip(i.source_id),
                "planned": i.planned or "",
                "action": i.outcome.action.value if i.outcome else "filtered",
                "reason": (i.outcome.reason if i.outcome else i.filtered) or "",
                "contact_id": i.outcome.contact_id if i.outcome else None,
            }
        )
        for i in report.items[:PREVIEW_ROWS]
    ]
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
            records=preview, schema=dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in ITEM_COLUMNS])
        ),
    }


def check_contacts(reports: list[BackfillReport], store) -> dict:
    """Each source item of interest has exactly one contact with its URN on the person's record (the arguments of an
    ``AssetCheckResult``, or with ``asset_key`` of an ``AssetCheckEvaluation``)."""
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
        rows.append(
            dg.TableRecord(
                {
                    "noms_number": report.noms_number,
                    "items_of_interest": len(expected),
                    "missing": missing,
                    "duplicated": duplicated,
                }
            )
        )
    return dict(
        check_name=CHECK_NAME,
        passed=missing_total == 0 and duplicated_total == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "missing": missing_total,
            "duplicated": duplicated_total,
            "people": dg.MetadataValue.table(
                records=rows[:PREVIEW_ROWS],
                schema=dg.TableSchema(
                    columns=[
                        dg.TableColumn("noms_number", "string"),
                        dg.TableColumn("items_of_interest", "int"),
                        dg.TableColumn("missing", "int"),
                        dg.TableColumn("duplicated", "int"),
                    ]
                ),
            ),
        },
    )
