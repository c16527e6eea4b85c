"""Backfill linked people: every case note of interest and every alert, merged with the event flow's rules.

docs/rules.md §8, planned in bulk: the people's records are fetched concurrently, compared (pandas) with the
contacts Delius already holds for them, fetched in one query, into create / update / unchanged; only the items that
may change anything go through ``DeliusStore.merge`` (which re-checks under row locks), in a few batched calls. Each
item is still merged independently (its own outcome); a re-run of a backfill reads a lot and writes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..clients import telemetry as telemetry_adapter
from ..core import rules, telemetry
from ..core.events import is_noms_number, search_type_subtypes
from ..core.outcomes import REASON_OFFENDER_NOT_FOUND, Action, MergeOutcome
from ..core.ports import SourceApi, UpstreamError
from ..core.text import clip
from ..delius import queries
from ..delius.store import DeliusStore

CASE_NOTE, ALERT = "case_note", "alert"
MERGE_CHUNK = 2000  # drafts per merge call (one transaction)
DEFAULT_CAUSE = "backfill"  # CaseNotesMigrated.cause when the caller does not know the event that asked for it


@dataclass
class Item:
    kind: str  # CASE_NOTE or ALERT
    source_id: str
    urn: str | None = None
    filtered: str | None = None  # content-filter reason: not of interest, never written
    draft: rules.ContactDraft | None = None
    planned: str | None = None  # create / update / unchanged, before writing
    outcome: MergeOutcome | None = None


@dataclass
class BackfillReport:
    noms_number: str
    items: list[Item] = field(default_factory=list)
    fetch_error: UpstreamError | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    refused: str | None = None  # not a NOMS number: nothing was fetched or merged

    @property
    def error(self) -> str | None:
        """Why nothing of the person was merged (a refused key, records that could not be read), or None."""
        if self.refused is not None:
            return self.refused
        return self.fetch_error.reason if self.fetch_error is not None else None

    @property
    def replaced_characters(self) -> int:
        """Characters no database stores (NUL, lone surrogates) replaced in the person's records (core/text.py)."""
        return sum(i.draft.replaced_characters for i in self.items if i.draft is not None)

    @property
    def planned(self) -> dict[str, int]:
        """Create / update / unchanged as planned from one query, before writing."""
        return dict(Counter(i.planned for i in self.items if i.planned))

    def count(self, kind: str, action: Action) -> int:
        return sum(1 for i in self.items if i.kind == kind and i.outcome and i.outcome.action is action)

    @property
    def counts(self) -> dict[str, int]:
        """CaseNotesMigrated-style counts: case_notes_created ... alerts_moved, plus skipped/failed/unchanged."""
        result = {}
        for kind, label in ((CASE_NOTE, "case_notes"), (ALERT, "alerts")):
            for action in Action:
                result[f"{label}_{action.value}"] = self.count(kind, action)
            result[f"{label}_filtered"] = sum(1 for i in self.items if i.kind == kind and i.filtered)
        return result

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        reasons = Counter(i.filtered for i in self.items if i.filtered)
        reasons.update(
            i.outcome.reason
            for i in self.items
            if i.outcome and i.outcome.action is Action.SKIPPED and i.outcome.reason
        )
        return dict(reasons)

    @property
    def crn(self) -> str | None:
        return next((i.outcome.crn for i in self.items if i.outcome and i.outcome.crn), None)

    @property
    def failures(self) -> list[Item]:
        return [i for i in self.items if i.outcome and i.outcome.action is Action.FAILED]

    @property
    def offender_not_found(self) -> bool:
        return any(i.outcome and i.outcome.reason == REASON_OFFENDER_NOT_FOUND for i in self.items)

    @property
    def first_failure(self) -> str | None:
        """§8.7: the first failure other than offender-not-found fails the backfill (after every item was tried)."""
        failure = next(iter(self.failures), None)
        if failure is None:
            return None
        assert failure.outcome is not None  # failures are items with a FAILED outcome
        return f"{failure.kind} {clip(failure.source_id, 60)}: {failure.outcome.reason}"

    @property
    def urns_of_interest(self) -> set[str]:
        return {i.urn for i in self.items if i.urn and not i.filtered}


Emit = Callable[[Iterable[telemetry.TelemetryRecord]], None]


def backfill_person(
    noms_number: str,
    source: SourceApi,
    store: DeliusStore,
    *,
    cause: str = DEFAULT_CAUSE,
    emit: Emit = telemetry_adapter.emit,
) -> BackfillReport:
    """One person; an upstream failure to read the person's records raises ``UpstreamError``, a key that is not a
    NOMS number ``ValueError``."""
    [report] = backfill_people([noms_number], source, store, cause=cause, emit=emit)
    if report.refused is not None:
        raise ValueError(report.refused)
    if report.fetch_error is not None:
        raise report.fetch_error
    return report


def backfill_people(
    noms_numbers: Sequence[str],
    source: SourceApi,
    store: DeliusStore,
    *,
    fetch_workers: int = 8,
    merge_chunk: int = MERGE_CHUNK,
    cause: str = DEFAULT_CAUSE,
    emit: Emit = telemetry_adapter.emit,
) -> list[BackfillReport]:
    """Backfill several people at once: their records are fetched concurrently, compared with Delius in one query,
    and merged in a few bulk calls. Each item still has its own outcome, and each person their own report; a person
    whose records could not be read has ``fetch_error`` set and nothing merged, one whose key is not a NOMS number
    (``A1234BC``, ASCII) ``refused``, and nothing fetched.

    Each person read is reported to ``emit`` as the reference's ``CaseNotesMigrated`` (``cause``: what asked for the
    backfill, the linkage event's type where known), after a ``DataCleanseNotificationFailure`` for each move whose
    Data Cleanse contact could not be written.

    Bulkheads: whatever one person's records or one item holds fails that person or that item alone (the class of
    the exception is the reason, never its message); the merge pins a record Delius refuses to its item
    (``DeliusStore.merge``)."""
    reports = {noms: BackfillReport(noms) for noms in dict.fromkeys(n.strip().upper() for n in noms_numbers)}
    for report in reports.values():
        if not is_noms_number(report.noms_number):
            report.refused = "not a NOMS number (a letter, four digits, two letters: A1234BC)"
    started = time.monotonic()

    def fetch(report: BackfillReport):
        try:
            notes = source.search_case_notes(report.noms_number, search_type_subtypes())
            alerts = source.get_person_alerts(report.noms_number)
        except UpstreamError as exc:
            report.fetch_error = exc
            return
        except Exception as exc:  # noqa: BLE001 - the bulkhead: this person's records alone
            report.fetch_error = UpstreamError(f"reading the person's records failed ({type(exc).__name__})")
            return
        report.items = [case_note_item(raw) for raw in notes] + [alert_item(raw) for raw in alerts]

    wanted = [r for r in reports.values() if r.refused is None]
    with ThreadPoolExecutor(max_workers=max(1, min(fetch_workers, len(wanted) or 1))) as pool:
        list(pool.map(fetch, wanted))
    fetched = time.monotonic()
    to_merge = plan_changes(list(reports.values()), store)
    planned = time.monotonic()
    for start in range(0, len(to_merge), merge_chunk):
        chunk = to_merge[start : start + merge_chunk]
        for item, outcome in zip(chunk, store.merge([_draft(i) for i in chunk], data_cleanse_required=False)):
            item.outcome = outcome
    seconds = {
        "fetch": round(fetched - started, 3),
        "plan": round(planned - fetched, 3),
        "merge": round(time.monotonic() - planned, 3),
    }
    for report in reports.values():
        report.seconds = seconds
    _report_telemetry(reports.values(), cause, emit)
    return list(reports.values())


def _report_telemetry(reports: Iterable[BackfillReport], cause: str, emit: Emit) -> None:
    records: list[telemetry.TelemetryRecord] = []
    for report in reports:
        if report.error is not None:  # nothing was merged (unreadable or refused): the reference reports nothing either
            continue
        for item in report.items:
            outcome = item.outcome
            if outcome is not None:
                cleanse = telemetry.data_cleanse_failure(
                    action=outcome.action.value, reason=outcome.reason, warning=outcome.warning
                )
                if cleanse is not None:
                    records.append(cleanse)
        records.append(
            telemetry.case_notes_migrated(
                noms_number=report.noms_number, crn=report.crn, cause=cause, counts=report.counts
            )
        )
    emit(records)  # the adapter never raises (clients/telemetry.py)


def plan_changes(reports: Sequence[BackfillReport], store: DeliusStore) -> list[Item]:
    """Compare the drafts with the people's contacts (one query) and return the items that may change Delius.

    Items whose contact exists on the same person with the same or a newer timestamp (to the second) are settled as
    unchanged here, exactly as the merge would; everything else (new, newer, on another person, or possibly a
    legacy row without URN) goes to the merge, which decides again under row locks.
    """
    drafts = [i for report in reports for i in report.items if i.draft is not None]
    if not drafts:
        return []
    # Imported here: pandas costs ~0.7 CPU-s to import, paid by every process that loads the code location (the
    # daemon's code server, every run worker) although only backfill runs plan with it (docs/performance.md).
    import pandas as pd

    wanted = pd.DataFrame(
        {
            "pos": range(len(drafts)),
            "urn": [i.urn for i in drafts],
            "noms": [_draft(i).noms_number for i in drafts],
            "incoming": pd.to_datetime([_draft(i).system_datetime.replace(microsecond=0) for i in drafts]),
        }
    )
    rows = queries.people_contacts(store.engine, {r.noms_number for r in reports if r.refused is None})
    existing = pd.DataFrame(rows, columns=["urn", "noms", "stored"])
    existing["stored"] = pd.to_datetime(existing["stored"]).dt.floor("s")
    plan = wanted.merge(existing.drop_duplicates("urn"), on=["urn", "noms"], how="left")
    plan["action"] = "create"
    plan.loc[plan["stored"].notna() & (plan["stored"] < plan["incoming"]), "action"] = "update"
    plan.loc[plan["stored"].notna() & (plan["stored"] >= plan["incoming"]), "action"] = "unchanged"
    unchanged = set(plan.loc[plan["action"] == "unchanged", "pos"])
    planned = dict(zip(plan["pos"], plan["action"]))
    to_merge = []
    for pos, item in enumerate(drafts):
        item.planned = planned[pos]
        if pos in unchanged:
            assert item.urn is not None  # _item always sets it
            item.outcome = MergeOutcome(item.urn, Action.UNCHANGED, "already up to date")
        else:
            to_merge.append(item)
    return to_merge


def _draft(item: Item) -> rules.ContactDraft:
    """The draft of an item planned or merged: only items with a draft are."""
    assert item.draft is not None
    return item.draft


def case_note_item(raw: dict) -> Item:
    """A case note from the search, filtered and mapped (rules.map_case_note: the one definition of "of interest")."""
    return _item(CASE_NOTE, _mapped(rules.map_case_note, raw, "case note"))


def alert_item(raw: dict) -> Item:
    """An alert of the person, filtered and mapped (rules.map_alert)."""
    return _item(ALERT, _mapped(rules.map_alert, raw, "alert"))


def _mapped(mapping, raw: dict, what: str) -> rules.Mapped:
    """The bulkhead of one item: an exception while mapping it makes it invalid (its class the reason)."""
    try:
        return mapping(raw)
    except Exception as exc:  # noqa: BLE001 - mapping is pure: the same record always fails the same way
        return rules.Mapped(None, "unknown", invalid=f"the {what} could not be mapped ({type(exc).__name__})")


def _item(kind: str, mapped: rules.Mapped) -> Item:
    urn = mapped.urn or (
        rules.case_note_urn(mapped.source_id) if kind == CASE_NOTE else rules.alert_urn(mapped.source_id, False)
    )
    item = Item(kind, mapped.source_id, urn, filtered=mapped.ignored, draft=mapped.draft)
    if mapped.invalid is not None:
        item.outcome = MergeOutcome(urn, Action.FAILED, mapped.invalid)
    return item
