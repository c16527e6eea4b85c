"""Reconciliation: do the Delius contacts of recently changed people still match their prison records?

No Dagster: the wiring is in ``defs/reconciliation/``. For each person it compares the source items of
interest (the same search and the same rules as the backfill: ``rules.map_case_note`` / ``map_alert``) with
the integration's contacts on the person's Delius record, and counts

* missing: an item of interest with no contact on the record (never written, or deleted behind our back);
* stale: a contact older (to the second) than the item's system time (an update that never landed).

Cost is bounded: one Delius query per batch of people (never per contact), two API calls per person (more only when
the APIs page), at most ``concurrency`` people fetched at once, ``max_people`` people and ``time_budget_seconds``
per run. Items changed within ``grace_minutes`` are not judged: their events may still be on the queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from ..core import rules
from ..core.events import EventKind, PoisonMessage, parse_sqs_body, search_type_subtypes
from ..core.ports import SourceApi, UpstreamError
from ..core.rules import ContactKind
from ..core.times import london_now
from ..delius.queries import (  # noqa: F401  (the reconciliation's Delius reads, named here as before)
    StoredContact,
    linked_people,
    people_in_sweep,
    people_with_recent_contacts,
    stored_contacts,
)


@dataclass(frozen=True)
class Limits:
    concurrency: int = 4  # people fetched from the APIs at once
    time_budget_seconds: float = 1800  # no new batch of people is started after this
    grace_minutes: int = 60  # items changed more recently than this are not judged
    batch_size: int = 50  # people per Delius query


@dataclass
class PersonCheck:
    noms_number: str
    items: int = 0  # source items of interest compared
    matched: int = 0
    missing: list[str] = field(default_factory=list)  # URNs without a contact on the person's record
    stale: list[str] = field(default_factory=list)  # URNs whose contact is older than the source item
    too_recent: int = 0  # changed within the grace period
    unreadable: int = 0  # source records the rules reject (the backfill fails on them too)
    soft_deleted: int = 0  # contacts soft-deleted in Delius: counted, never restored by a backfill
    error: str | None = None  # the person could not be checked (an UpstreamError's reason)

    @property
    def needs_repair(self) -> bool:
        return bool(self.missing or self.stale)


@dataclass
class ReconciliationReport:
    checks: list[PersonCheck] = field(default_factory=list)
    not_checked: int = 0  # over max_people, or left when the time budget ran out or the APIs failed
    stopped: str | None = None  # why checking stopped early
    seconds: float = 0.0

    @property
    def checked(self) -> list[PersonCheck]:
        return [c for c in self.checks if c.error is None]

    @property
    def errors(self) -> list[PersonCheck]:
        return [c for c in self.checks if c.error is not None]

    @property
    def needing_repair(self) -> list[PersonCheck]:
        return [c for c in self.checks if c.needs_repair]

    def counts(self) -> dict[str, int]:
        checked = self.checked
        return {
            "people_checked": len(checked),
            "people_needing_repair": len(self.needing_repair),
            "people_not_checked": self.not_checked,
            "people_with_errors": len(self.errors),
            "items_compared": sum(c.items for c in checked),
            "matched": sum(c.matched for c in checked),
            "missing": sum(len(c.missing) for c in checked),
            "stale": sum(len(c.stale) for c in checked),
            "too_recent": sum(c.too_recent for c in checked),
            "unreadable": sum(c.unreadable for c in checked),
            "soft_deleted": sum(c.soft_deleted for c in checked),
        }


# ----------------------------------------------------------------------------------------------- comparison


def compare_person(
    noms_number: str,
    case_notes: Iterable[dict],
    alerts: Iterable[dict],
    contacts: Iterable[StoredContact],
    *,
    settled_before: datetime,
) -> PersonCheck:
    """Compare one person's source records (raw API JSON) with their contacts (no I/O)."""
    check = PersonCheck(noms_number)
    contacts = list(contacts)
    by_urn = {c.urn: c for c in contacts if c.urn}
    by_legacy_id = {c.legacy_id: c for c in contacts if c.urn is None and c.legacy_id is not None}
    items = [rules.map_case_note(raw) for raw in case_notes] + [rules.map_alert(raw) for raw in alerts]
    for item in items:
        if item.invalid is not None:  # the rules reject the record
            check.unreadable += 1
            continue
        draft = item.draft
        if draft is None:  # filtered: deliberately never written
            continue
        if draft.system_datetime > settled_before:
            check.too_recent += 1
            continue
        check.items += 1
        contact = by_urn.get(draft.urn)
        if contact is None and draft.kind is ContactKind.CASE_NOTE and draft.legacy_id is not None:
            contact = by_legacy_id.get(draft.legacy_id)  # a legacy row the merge would adopt
        if contact is None:
            check.missing.append(draft.urn)
        elif contact.soft_deleted:
            check.soft_deleted += 1
        elif contact.last_updated.replace(microsecond=0) < draft.system_datetime.replace(microsecond=0):
            check.stale.append(draft.urn)
        else:
            check.matched += 1
    return check


def reconcile_people(
    people: Sequence[str],
    source: SourceApi,
    engine: Engine,
    limits: Limits = Limits(),
    *,
    now: datetime | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> ReconciliationReport:
    """Check ``people`` in batches: fetch their source records concurrently, then one Delius query per batch."""
    started = monotonic()
    deadline = started + limits.time_budget_seconds
    settled_before = (now or london_now()) - timedelta(minutes=limits.grace_minutes)
    report = ReconciliationReport()
    people = list(people)
    size = max(1, limits.batch_size)
    with ThreadPoolExecutor(max_workers=max(1, limits.concurrency)) as pool:
        for start in range(0, len(people), size):
            if monotonic() >= deadline:
                report.stopped = "time budget spent"
                report.not_checked += len(people) - start
                break
            batch = people[start : start + size]
            fetched = list(pool.map(lambda noms: _fetch_person(source, noms), batch))
            stored = stored_contacts(engine, [noms for noms, got in zip(batch, fetched) if not isinstance(got, str)])
            for noms, got in zip(batch, fetched):
                if isinstance(got, str):
                    report.checks.append(PersonCheck(noms, error=got))
                else:
                    report.checks.append(
                        compare_person(noms, got[0], got[1], stored.get(noms, []), settled_before=settled_before)
                    )
            if len(batch) >= 5 and all(isinstance(got, str) for got in fetched):
                report.stopped = "every person of a batch failed: the APIs look unavailable"
                report.not_checked += len(people) - start - len(batch)
                break
    report.seconds = round(monotonic() - started, 3)
    return report


def _fetch_person(source: SourceApi, noms_number: str) -> tuple[list[dict], list[dict]] | str:
    try:
        return source.search_case_notes(noms_number, search_type_subtypes()), source.get_person_alerts(noms_number)
    except UpstreamError as exc:
        return exc.reason


# ----------------------------------------------------------------------------------------------- who to check


def people_in_event_bodies(bodies: Iterable[str]) -> set[str]:
    """NOMS numbers of the case-note and alert events in queue message bodies (unreadable ones are ignored)."""
    people = set()
    for body in bodies:
        try:
            event = parse_sqs_body(body)
        except PoisonMessage:
            continue
        if event.kind in (EventKind.CASE_NOTE, EventKind.ALERT) and event.noms_number:
            people.add(event.noms_number)
    return people


@dataclass
class Selection:
    people: list[str]  # to check, in priority order
    by_source: dict[str, int]  # linked people each source named (a person may be named by several)
    over_limit: int  # linked people left out by max_people


def choose_people(sources: Mapping[str, Iterable[str]], linked: set[str], max_people: int) -> Selection:
    """Linked people named by the sources, earlier sources first (put the most telling ones first), capped."""
    ordered: dict[str, None] = {}
    by_source: dict[str, int] = {}
    for name, people in sources.items():
        named = sorted({p.strip().upper() for p in people if p} & linked)
        by_source[name] = len(named)
        ordered.update(dict.fromkeys(named))
    people = list(ordered)
    cap = max(0, max_people)
    return Selection(people[:cap], by_source, max(0, len(people) - cap))
