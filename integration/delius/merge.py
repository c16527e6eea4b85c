"""Merge contact drafts into Delius: person match, create / update / move, staff and team resolution, audit.

One call merges many drafts with a handful of queries (bulk lookups, batched inserts), and each draft still gets its
own outcome, as if merged alone (reference-behaviour §6-§7):

* idempotent: the URN (``contact.external_reference``, unique) identifies the contact; inserts use
  ``ON CONFLICT DO NOTHING`` and a draft that lost a race to a concurrent run is merged again as an update;
* monotonic: an update is applied only when the stored ``last_updated_datetime`` is older than the draft's system
  time, compared to the second; the contact rows are locked (``FOR UPDATE``) between the check and the write;
* failures are per draft (``Action.FAILED`` with a reason and whether a retry may help); only infrastructure errors
  (database unreachable, repeated deadlocks) raise.

Staff are found or created before the write transaction, each area in its own short transaction under a
PostgreSQL advisory lock, so concurrent runs never create the same officer code twice -- and only for drafts that
will be written (one offender with the NOMS number, reference data present): a skipped or failed draft creates none.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Iterable, Sequence

from sqlalchemy import func, insert, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..core import rules
from ..core.rules import ContactDraft, ContactKind
from ..core.times import london_now
from . import models as m
from .reference_data import CASE_NOTES_MERGE_INTERACTION, SERVICE_USERNAME

log = logging.getLogger(__name__)

IN_CHUNK = 500                 # bind parameters per IN (...) list
MAX_ROUNDS = 4                 # merge rounds when concurrent runs race on the same URNs
STAFF_LOCK_NAMESPACE = 0x5C5E  # advisory-lock key space for "staff of probation area N"


class Action(str, enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    MOVED = "moved"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"


# Reasons (ids and codes only: they end up in run metadata and logs)
REASON_OFFENDER_NOT_FOUND = "offender not found in Delius"
REASON_OUT_OF_SEQUENCE = "out of sequence: Delius holds a newer version"
REASON_UP_TO_DATE = "already up to date"
REASON_SUPERSEDED = "superseded by a newer version in the same batch"
REASON_URN_BACKFILLED = "external reference added to a legacy contact"


@dataclass(frozen=True)
class MergeOutcome:
    urn: str
    action: Action
    reason: str | None = None
    retryable: bool = False
    contact_id: int | None = None
    crn: str | None = None
    previous_crn: str | None = None
    warning: str | None = None

    @property
    def failed(self) -> bool:
        return self.action is Action.FAILED


class MergeFailure(Exception):
    """A draft that cannot be merged for a reason in the data (missing reference data, duplicate offender...)."""

    def __init__(self, reason: str, retryable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass
class _Existing:
    contact_id: int
    external_reference: str | None
    notes: str | None
    last_updated: datetime
    row_version: int
    noms_number: str | None
    crn: str


@dataclass(frozen=True)
class _Person:
    offender_id: int
    crn: str


@dataclass(frozen=True)
class _Provider:
    area_id: int
    area_code: str
    team_id: int


@dataclass
class _Reference:
    user_id: int
    interaction_id: int
    contact_type_by_code: dict[str, tuple[int, str]]          # code -> (id, sensitive Y/N)
    contact_type_by_id: dict[int, tuple[str, str]]            # id -> (code, sensitive)
    mapped_type: dict[str, int]                               # "TYPE SUBTYPE" -> contact_type_id
    provider_by_prison: dict[str, _Provider | str]            # first 3 chars of establishment -> provider or error


@dataclass
class _Plan:
    creates: list[int] = field(default_factory=list)
    updates: list[tuple[int, _Existing, bool]] = field(default_factory=list)   # (idx, existing, urn_only)
    moves: list[tuple[int, _Existing]] = field(default_factory=list)
    done: dict[int, MergeOutcome] = field(default_factory=dict)
    retry: list[int] = field(default_factory=list)


def _seconds(value: datetime) -> datetime:
    return value.replace(microsecond=0)


class DeliusStore:
    """The Delius side of the integration, over any SQLAlchemy engine holding the contract tables."""

    def __init__(self, engine: Engine, username: str = SERVICE_USERNAME, clock=london_now):
        self.engine = engine
        self.username = username
        self.clock = clock
        self._postgres = engine.dialect.name == "postgresql"

    # ------------------------------------------------------------------ public API

    def merge(self, drafts: Sequence[ContactDraft]) -> list[MergeOutcome]:
        """Merge every draft; returns one outcome per draft, in order. Raises only for infrastructure errors."""
        outcomes: dict[int, MergeOutcome] = {}
        winner: dict[str, int] = {}
        for idx, draft in enumerate(drafts):
            best = winner.get(draft.urn)
            if best is None or draft.system_datetime >= drafts[best].system_datetime:
                winner[draft.urn] = idx
        for idx, draft in enumerate(drafts):
            if winner[draft.urn] != idx:
                outcomes[idx] = MergeOutcome(draft.urn, Action.UNCHANGED, REASON_SUPERSEDED)
        pending = sorted(winner.values())
        for round_number in range(MAX_ROUNDS):
            if not pending:
                break
            try:
                plan = self._merge_round(drafts, pending)
            except DBAPIError as exc:
                if not _is_concurrency_error(exc) or round_number == MAX_ROUNDS - 1:
                    raise
                log.info("merge round %d hit %s; retrying", round_number + 1, type(exc.orig).__name__)
                time.sleep(0.05 * (round_number + 1) ** 2)
                continue
            outcomes.update(plan.done)
            pending = plan.retry
        for idx in pending:
            outcomes[idx] = MergeOutcome(drafts[idx].urn, Action.FAILED,
                                         "concurrent writes to the same contact did not settle", retryable=True)
        moved = [idx for idx, o in outcomes.items() if o.action is Action.MOVED and o.previous_crn]
        if moved:
            warnings = self._data_cleanse({outcomes[idx].previous_crn for idx in moved})
            for idx in moved:
                warning = warnings.get(outcomes[idx].previous_crn)
                if warning:
                    outcomes[idx] = replace(outcomes[idx], warning=warning)
        return [outcomes[idx] for idx in range(len(drafts))]

    def contacts_by_urn(self, urns: Iterable[str]) -> dict[str, dict]:
        """Current contact rows (with the offender's CRN and NOMS number) for the given URNs."""
        result: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(urns))):
                rows = conn.execute(
                    select(m.contact, m.offender.c.crn, m.offender.c.noms_number)
                    .join(m.offender, m.offender.c.offender_id == m.contact.c.offender_id)
                    .where(m.contact.c.external_reference.in_(chunk))
                ).mappings()
                for row in rows:
                    result[row["external_reference"]] = dict(row)
        return result

    def person_contact_urns(self, noms_number: str) -> dict[str, int]:
        """URN -> number of contacts with that URN, for integration-made contacts of the person (asset check)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(m.contact.c.external_reference, func.count())
                .join(m.offender, m.offender.c.offender_id == m.contact.c.offender_id)
                .where(m.offender.c.noms_number == noms_number, m.offender.c.soft_deleted == 0,
                       m.contact.c.external_reference.like("urn:uk:gov:hmpps:%"))
                .group_by(m.contact.c.external_reference)
            ).all()
        return {urn: count for urn, count in rows}

    # ------------------------------------------------------------------ one round

    def _merge_round(self, drafts: Sequence[ContactDraft], idxs: list[int]) -> _Plan:
        subset = [drafts[i] for i in idxs]
        # 1. Look, without locks, at what exists, and resolve providers and staff for what will be created or moved.
        with self.engine.connect() as conn:
            ref = self._load_reference(conn, subset)
            existing = self._find_existing(conn, subset, lock=False)
            persons = self._find_persons(conn, {d.noms_number for d in subset})
        # Staff only for drafts that can be written: a person not in Delius (or on several offenders), or missing
        # reference data, fails in step 2 before staff are needed, and must leave no STAFF/STAFF_TEAM rows behind.
        staff_needed: dict[_Provider, set[tuple[str, str]]] = defaultdict(set)
        for idx in idxs:
            draft = drafts[idx]
            row = existing.get(idx_key(draft))
            if row is None or row.noms_number != draft.noms_number:
                try:
                    _, _, provider = _resolve_target(draft, ref, persons)
                except MergeFailure:
                    continue
                staff_needed[provider].add((draft.staff_forename, draft.staff_surname))
        staff_ids = self._find_or_create_staff(ref, staff_needed)

        # 2. Write under row locks, re-planning from what is there now.
        plan = _Plan()
        now = self.clock()
        with self.engine.begin() as conn:
            existing = self._find_existing(conn, subset, lock=True)
            persons.update(self._find_persons(conn, {d.noms_number for d in subset} - set(persons)))
            for idx in idxs:
                draft = drafts[idx]
                row = existing.get(idx_key(draft))
                if row is None:
                    plan.creates.append(idx)
                elif row.noms_number == draft.noms_number:
                    self._plan_update(plan, idx, draft, row, now)
                else:
                    plan.moves.append((idx, row))
            new_rows: dict[int, dict] = {}
            for idx in plan.creates + [idx for idx, _ in plan.moves]:
                draft = drafts[idx]
                try:
                    new_rows[idx] = self._derive(conn, draft, ref, persons, staff_ids)
                except MergeFailure as failure:
                    action = Action.SKIPPED if failure.reason == REASON_OFFENDER_NOT_FOUND else Action.FAILED
                    plan.done[idx] = MergeOutcome(draft.urn, action, failure.reason,
                                                  retryable=failure.retryable and action is Action.FAILED)
                except _NeedsAnotherRound:
                    plan.retry.append(idx)
            self._link_events_and_nsis(conn, {idx: new_rows[idx] for idx in new_rows}, drafts)
            audits: list[tuple[int, ContactDraft]] = []
            self._insert_creates(conn, plan, drafts, new_rows, persons, audits)
            self._apply_updates(conn, plan, drafts, ref, now, audits)
            self._apply_moves(conn, plan, drafts, new_rows, persons, ref, audits)
            if audits:
                conn.execute(insert(m.audited_interaction), [
                    {"date_time": now, "outcome": "S", "business_interaction_id": ref.interaction_id,
                     "user_id": ref.user_id,
                     "interaction_parameters": f"dpsId={draft.source_id}, contactId={contact_id}"}
                    for contact_id, draft in audits])
        return plan

    def _plan_update(self, plan: _Plan, idx: int, draft: ContactDraft, row: _Existing, now: datetime) -> None:
        stored, incoming = _seconds(row.last_updated), _seconds(draft.system_datetime)
        if stored < incoming:
            plan.updates.append((idx, row, False))
        elif row.external_reference is None and _of_interest_for_external_reference(draft, now):
            plan.updates.append((idx, row, True))
        else:
            reason = REASON_OUT_OF_SEQUENCE if stored > incoming else REASON_UP_TO_DATE
            plan.done[idx] = MergeOutcome(draft.urn, Action.UNCHANGED, reason, contact_id=row.contact_id,
                                          crn=row.crn)

    # ------------------------------------------------------------------ lookups

    def _load_reference(self, conn: Connection, drafts: Sequence[ContactDraft]) -> _Reference:
        user_id = conn.execute(select(m.user_.c.user_id)
                               .where(m.user_.c.distinguished_name == self.username)).scalar()
        if user_id is None:
            raise MergeConfigurationError(f"Delius user {self.username} not found")
        interaction_id = conn.execute(
            select(m.business_interaction.c.business_interaction_id)
            .where(m.business_interaction.c.business_interaction_code == CASE_NOTES_MERGE_INTERACTION)).scalar()
        if interaction_id is None:
            raise MergeConfigurationError(f"business interaction {CASE_NOTES_MERGE_INTERACTION} not found")
        types = conn.execute(select(m.r_contact_type.c.contact_type_id, m.r_contact_type.c.code,
                                    m.r_contact_type.c.sensitive_contact)).all()
        keys = sorted({d.type_key for d in drafts})
        mapped: dict[str, int] = {}
        for chunk in _chunks(keys):
            mapped.update(conn.execute(select(m.r_contact_type_nomis_type.c.nomis_contact_type,
                                              m.r_contact_type_nomis_type.c.contact_type_id)
                                       .where(m.r_contact_type_nomis_type.c.nomis_contact_type.in_(chunk))).all())
        prisons = sorted({d.establishment_code[:3] for d in drafts if len(d.establishment_code) >= 3})
        providers: dict[str, _Provider | str] = {}
        if prisons:
            rows = conn.execute(
                select(m.r_institution.c.nomis_cde_code, m.probation_area.c.probation_area_id,
                       m.probation_area.c.code)
                .join(m.probation_area, m.probation_area.c.institution_id == m.r_institution.c.institution_id)
                .where(m.r_institution.c.nomis_cde_code.in_(prisons))
                .order_by(m.probation_area.c.probation_area_id)).all()
            areas: dict[str, tuple[int, str]] = {}
            for prison, area_id, area_code in rows:
                areas.setdefault(prison, (area_id, area_code))
            team_codes = [f"{code}CSN" for _, code in areas.values()]
            teams = dict(conn.execute(select(m.team.c.code, m.team.c.team_id)
                                      .where(m.team.c.code.in_(team_codes))).all()) if team_codes else {}
            for prison in prisons:
                if prison not in areas:
                    providers[prison] = f"Probation Area not found for NOMIS institution: {prison}"
                    continue
                area_id, area_code = areas[prison]
                team_id = teams.get(f"{area_code}CSN")
                providers[prison] = (_Provider(area_id, area_code, team_id) if team_id is not None
                                     else f"Team with code of {area_code}CSN not found")
        return _Reference(
            user_id=user_id, interaction_id=interaction_id,
            contact_type_by_code={code: (tid, sens) for tid, code, sens in types},
            contact_type_by_id={tid: (code, sens) for tid, code, sens in types},
            mapped_type=mapped, provider_by_prison=providers)

    def _find_existing(self, conn: Connection, drafts: Sequence[ContactDraft], *, lock: bool) -> dict[str, _Existing]:
        """Existing contacts keyed by ``idx_key``: by URN, else (case notes) by legacy NOMIS id on URN-less rows."""
        columns = (m.contact.c.contact_id, m.contact.c.external_reference, m.contact.c.nomis_case_note_id,
                   m.contact.c.notes, m.contact.c.last_updated_datetime, m.contact.c.row_version,
                   m.offender.c.noms_number, m.offender.c.crn)
        base = select(*columns).join(m.offender, m.offender.c.offender_id == m.contact.c.offender_id)
        if lock and self._postgres:
            base = base.with_for_update(of=m.contact)
        found: dict[str, _Existing] = {}
        for chunk in _chunks(sorted({d.urn for d in drafts})):
            for row in conn.execute(base.where(m.contact.c.external_reference.in_(chunk))
                                    .order_by(m.contact.c.contact_id)):
                found.setdefault(row.external_reference, _existing(row))
        legacy = {d.legacy_id: d.urn for d in drafts
                  if d.kind is ContactKind.CASE_NOTE and d.legacy_id is not None and d.urn not in found}
        for chunk in _chunks(sorted(legacy)):
            for row in conn.execute(base.where(m.contact.c.nomis_case_note_id.in_(chunk),
                                               m.contact.c.external_reference.is_(None))
                                    .order_by(m.contact.c.contact_id)):
                found.setdefault(legacy[row.nomis_case_note_id], _existing(row))
        return found

    def _find_persons(self, conn: Connection, noms_numbers: set[str]) -> dict[str, list[_Person]]:
        persons: dict[str, list[_Person]] = {noms: [] for noms in noms_numbers}
        for chunk in _chunks(sorted(noms_numbers)):
            for offender_id, crn, noms in conn.execute(
                    select(m.offender.c.offender_id, m.offender.c.crn, m.offender.c.noms_number)
                    .where(m.offender.c.noms_number.in_(chunk), m.offender.c.soft_deleted == 0)
                    .order_by(m.offender.c.offender_id)):
                persons[noms].append(_Person(offender_id, crn))
        return persons

    # ------------------------------------------------------------------ derivation of a full contact

    def _derive(self, conn: Connection, draft: ContactDraft, ref: _Reference, persons: dict[str, list[_Person]],
                staff_ids: dict[tuple[int, str, str], int | str]) -> dict:
        """Every column of a new contact for ``draft`` (create or move), event/NSI still to be linked."""
        person, type_id, provider = _resolve_target(draft, ref, persons)
        type_code, sensitive = ref.contact_type_by_id[type_id]
        staff_id = staff_ids.get((provider.area_id, draft.staff_forename.lower(), draft.staff_surname.lower()))
        if staff_id is None:
            raise _NeedsAnotherRound()
        if isinstance(staff_id, str):
            raise MergeFailure(staff_id)
        contact_dt = draft.contact_datetime
        return {
            "offender_id": person.offender_id,
            "event_id": None,
            "nsi_id": None,
            "contact_type_id": type_id,
            "description": rules.contact_description(draft, type_code),
            "notes": draft.notes,
            "contact_date": contact_dt.date(),
            "contact_start_time": contact_dt.time().replace(microsecond=0),
            "staff_id": staff_id,
            "staff_employee_id": staff_id,
            "team_id": provider.team_id,
            "probation_area_id": provider.area_id,
            "trust_provider_team_id": provider.team_id,
            "trust_provider_flag": 0,
            "partition_area_id": 0,
            "soft_deleted": 0,
            "sensitive": "Y" if sensitive == "Y" else "N",
            "external_reference": draft.urn,
            "nomis_case_note_id": None,
            "created_datetime": draft.system_datetime,
            "last_updated_datetime": draft.system_datetime,
            "created_by_user_id": ref.user_id,
            "last_updated_user_id": ref.user_id,
            "row_version": 0,
        }

    def _link_events_and_nsis(self, conn: Connection, rows: dict[int, dict], drafts: Sequence[ContactDraft]) -> None:
        """§5.7: alerts link to nothing; case notes to the latest active mapped NSI, else the only custodial event."""
        wanted = {idx: row for idx, row in rows.items() if not drafts[idx].is_alert}
        if not wanted:
            return
        offender_ids = sorted({row["offender_id"] for row in wanted.values()})
        keys = sorted({drafts[idx].type_key for idx in wanted})
        nsis: dict[tuple[int, str], tuple[date, int, int | None]] = {}
        custodial: dict[int, set[int]] = defaultdict(set)
        for chunk in _chunks(offender_ids):
            for offender_id, nsi_id, event_id, referral, nomis_type in conn.execute(
                    select(m.nsi.c.offender_id, m.nsi.c.nsi_id, m.nsi.c.event_id, m.nsi.c.referral_date,
                           m.nomis_type_nsi_type.c.nomis_type)
                    .join(m.nomis_type_nsi_type, m.nomis_type_nsi_type.c.nsi_type_id == m.nsi.c.nsi_type_id)
                    .where(m.nsi.c.offender_id.in_(chunk), m.nsi.c.active_flag == 1, m.nsi.c.soft_deleted == 0,
                           m.nomis_type_nsi_type.c.nomis_type.in_(keys))):
                best = nsis.get((offender_id, nomis_type))
                if best is None or (referral, nsi_id) > (best[0], best[1]):
                    nsis[(offender_id, nomis_type)] = (referral, nsi_id, event_id)
            for offender_id, event_id in conn.execute(
                    select(m.event.c.offender_id, m.event.c.event_id)
                    .join(m.disposal, m.disposal.c.event_id == m.event.c.event_id)
                    .join(m.r_disposal_type, m.r_disposal_type.c.disposal_type_id == m.disposal.c.disposal_type_id)
                    .where(m.event.c.offender_id.in_(chunk), m.event.c.active_flag == 1,
                           m.event.c.soft_deleted == 0, m.disposal.c.active_flag == 1,
                           m.disposal.c.soft_deleted == 0, m.r_disposal_type.c.sentence_type.in_(("NC", "SC")))):
                custodial[offender_id].add(event_id)
        for idx, row in wanted.items():
            nsi_match = nsis.get((row["offender_id"], drafts[idx].type_key))
            if nsi_match:
                row["nsi_id"], row["event_id"] = nsi_match[1], nsi_match[2]
            elif len(custodial[row["offender_id"]]) == 1:
                row["event_id"] = next(iter(custodial[row["offender_id"]]))

    # ------------------------------------------------------------------ writes

    def _insert_creates(self, conn: Connection, plan: _Plan, drafts: Sequence[ContactDraft], rows: dict[int, dict],
                        persons: dict[str, list[_Person]], audits: list) -> None:
        creates = [idx for idx in plan.creates if idx in rows]
        if not creates:
            return
        inserted: dict[str, int] = {}
        stmt = self._insert_ignoring_duplicates()
        for chunk in _chunks(creates, 1000):
            result = conn.execute(stmt.returning(m.contact.c.contact_id, m.contact.c.external_reference),
                                  [rows[idx] for idx in chunk])
            inserted.update({urn: contact_id for contact_id, urn in result})
        for idx in creates:
            draft = drafts[idx]
            contact_id = inserted.get(draft.urn)
            if contact_id is None:      # a concurrent run created it first: merge again as an update
                plan.retry.append(idx)
                continue
            plan.done[idx] = MergeOutcome(draft.urn, Action.CREATED, contact_id=contact_id,
                                          crn=persons[draft.noms_number][0].crn)
            audits.append((contact_id, draft))

    def _insert_ignoring_duplicates(self):
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(m.contact).on_conflict_do_nothing(index_elements=["external_reference"])
        if self.engine.dialect.name == "sqlite":
            return sqlite.insert(m.contact).on_conflict_do_nothing(index_elements=["external_reference"])
        return insert(m.contact)  # other databases: a duplicate raises IntegrityError and the round is retried

    def _apply_updates(self, conn: Connection, plan: _Plan, drafts: Sequence[ContactDraft], ref: _Reference,
                       now: datetime, audits: list) -> None:
        for idx, row, urn_only in plan.updates:
            draft = drafts[idx]
            values: dict = {"external_reference": draft.urn, "last_updated_user_id": ref.user_id,
                            "row_version": row.row_version + 1}
            if not urn_only:
                values.update(
                    notes=rules.pad_notes(draft.notes, row.notes),
                    contact_date=draft.contact_datetime.date(),
                    contact_start_time=draft.contact_datetime.time().replace(microsecond=0),
                    last_updated_datetime=draft.system_datetime)
            changed = conn.execute(update(m.contact).where(m.contact.c.contact_id == row.contact_id,
                                                           m.contact.c.row_version == row.row_version)
                                   .values(**values)).rowcount
            if changed != 1:   # only possible without row locks (SQLite serialises writers; other databases)
                plan.retry.append(idx)
                continue
            plan.done[idx] = MergeOutcome(draft.urn, Action.UPDATED, REASON_URN_BACKFILLED if urn_only else None,
                                          contact_id=row.contact_id, crn=row.crn)
            audits.append((row.contact_id, draft))

    def _apply_moves(self, conn: Connection, plan: _Plan, drafts: Sequence[ContactDraft], rows: dict[int, dict],
                     persons: dict[str, list[_Person]], ref: _Reference, audits: list) -> None:
        for idx, row in plan.moves:
            if idx not in rows:
                continue
            draft = drafts[idx]
            values = dict(rows[idx])
            values["row_version"] = row.row_version + 1
            changed = conn.execute(update(m.contact).where(m.contact.c.contact_id == row.contact_id,
                                                           m.contact.c.row_version == row.row_version)
                                   .values(**values)).rowcount
            if changed != 1:
                plan.retry.append(idx)
                continue
            plan.done[idx] = MergeOutcome(draft.urn, Action.MOVED, contact_id=row.contact_id,
                                          crn=persons[draft.noms_number][0].crn, previous_crn=row.crn)
            audits.append((row.contact_id, draft))

    # ------------------------------------------------------------------ staff

    def _find_or_create_staff(self, ref: _Reference,
                              needed: dict[_Provider, set[tuple[str, str]]]) -> dict[tuple[int, str, str], int | str]:
        """(area id, lower forename, lower surname) -> staff id (or the reason it could not be created), creating
        prison staff that do not exist yet."""
        found: dict[tuple[int, str, str], int | str] = {}
        for provider, names in sorted(needed.items(), key=lambda item: item[0].area_id):
            for attempt in range(3):
                try:
                    found.update(self._staff_for_area(ref, provider, names))
                    break
                except MergeFailure as failure:
                    for forename, surname in names:
                        found[(provider.area_id, forename.lower(), surname.lower())] = failure.reason
                    break
                except IntegrityError:
                    if attempt == 2:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        return found

    def _staff_for_area(self, ref: _Reference, provider: _Provider,
                        names: set[tuple[str, str]]) -> dict[tuple[int, str, str], int]:
        wanted = {(forename.lower(), surname.lower()): (forename, surname) for forename, surname in names}
        result: dict[tuple[int, str, str], int] = {}
        with self.engine.begin() as conn:
            if self._postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                             {"ns": STAFF_LOCK_NAMESPACE, "key": provider.area_id})
            for chunk in _chunks(sorted(wanted)):
                for staff_id, forename, surname in conn.execute(
                        select(m.staff.c.staff_id, func.lower(m.staff.c.forename), func.lower(m.staff.c.surname))
                        .where(m.staff.c.probation_area_id == provider.area_id,
                               tuple_(func.lower(m.staff.c.forename), func.lower(m.staff.c.surname)).in_(chunk))
                        .order_by(m.staff.c.staff_id)):
                    result.setdefault((provider.area_id, forename, surname), staff_id)
            missing = [key for key in sorted(wanted) if (provider.area_id, *key) not in result]
            if not missing:
                return result
            prefix = provider.area_code[:3].upper()
            codes = conn.execute(select(m.staff.c.officer_code)
                                 .where(m.staff.c.officer_code.like(f"{prefix}%"))).scalars().all()
            next_codes = officer_codes_after(prefix, codes, len(missing))
            now = self.clock()
            for key, code in zip(missing, next_codes):
                forename, surname = wanted[key]
                staff_id = conn.execute(insert(m.staff).values(
                    officer_code=code, forename=forename, surname=surname, probation_area_id=provider.area_id,
                    start_date=now.date(), private=0, created_by_user_id=ref.user_id, created_datetime=now,
                    last_updated_user_id=ref.user_id, last_updated_datetime=now, row_version=0,
                ).returning(m.staff.c.staff_id)).scalar_one()
                conn.execute(insert(m.staff_team).values(staff_id=staff_id, team_id=provider.team_id))
                result[(provider.area_id, *key)] = staff_id
                log.info("created prison staff %s (staff_id=%s) in area %s", code, staff_id, provider.area_code)
        return result

    # ------------------------------------------------------------------ data cleanse

    def _data_cleanse(self, previous_crns: set[str]) -> dict[str, str]:
        """One "Data Cleanse" contact per previous CRN with an active offender manager (§6.3).

        Returns CRN -> warning for the ones that failed (telemetry ``DataCleanseNotificationFailure``)."""
        warnings: dict[str, str] = {}
        for crn in sorted(previous_crns):
            try:
                with self.engine.begin() as conn:
                    manager = conn.execute(
                        select(m.offender_manager.c.offender_id, m.offender_manager.c.allocation_staff_id,
                               m.offender_manager.c.team_id, m.offender_manager.c.probation_area_id)
                        .join(m.offender, m.offender.c.offender_id == m.offender_manager.c.offender_id)
                        .where(m.offender.c.crn == crn, m.offender_manager.c.active_flag == 1,
                               m.offender_manager.c.soft_deleted == 0)
                        .order_by(m.offender_manager.c.offender_manager_id.desc())).first()
                    if manager is None:
                        continue
                    contact_type = conn.execute(
                        select(m.r_contact_type.c.contact_type_id, m.r_contact_type.c.sensitive_contact)
                        .where(m.r_contact_type.c.code == rules.DATA_CLEANSE_CONTACT_TYPE_CODE)).first()
                    if contact_type is None:
                        raise MergeFailure(f"contact type {rules.DATA_CLEANSE_CONTACT_TYPE_CODE} not found")
                    user_id = conn.execute(select(m.user_.c.user_id)
                                           .where(m.user_.c.distinguished_name == self.username)).scalar_one()
                    now = self.clock()
                    conn.execute(insert(m.contact).values(
                        offender_id=manager.offender_id, contact_type_id=contact_type.contact_type_id,
                        description="Data Cleanse", notes=rules.data_cleanse_notes(now),
                        contact_date=now.date(), contact_start_time=now.time().replace(microsecond=0),
                        staff_id=manager.allocation_staff_id, staff_employee_id=manager.allocation_staff_id,
                        team_id=manager.team_id, probation_area_id=manager.probation_area_id,
                        trust_provider_team_id=manager.team_id, trust_provider_flag=0, partition_area_id=0,
                        soft_deleted=0, sensitive="Y" if contact_type.sensitive_contact == "Y" else "N",
                        external_reference=None, created_datetime=now, last_updated_datetime=now,
                        created_by_user_id=user_id, last_updated_user_id=user_id, row_version=0))
            except (MergeFailure, DBAPIError) as exc:
                reason = exc.reason if isinstance(exc, MergeFailure) else type(exc).__name__
                warnings[crn] = f"DataCleanseNotificationFailure: {reason}"
                log.warning("data cleanse contact for %s failed: %s", crn, reason)
        return warnings


class MergeConfigurationError(RuntimeError):
    """Delius lacks what every merge needs (service user, business interaction): nothing can be merged."""


class _NeedsAnotherRound(Exception):
    """The draft needs staff that step 1 did not foresee (the contact changed in between): merge it again."""


def idx_key(draft: ContactDraft) -> str:
    return draft.urn


def _resolve_target(draft: ContactDraft, ref: _Reference,
                    persons: dict[str, list[_Person]]) -> tuple[_Person, int, _Provider]:
    """(person, contact type id, provider) of a create or move, or MergeFailure -- everything but the staff.

    The person comes first (§7): exactly one non-soft-deleted offender with the NOMS number, else
    REASON_OFFENDER_NOT_FOUND (skipped) or a failure for several offenders. Checked before staff are found or created,
    so a draft that cannot be written creates no staff (§9.2: "offender not found" writes nothing).
    """
    matches = persons.get(draft.noms_number, [])
    if not matches:
        raise MergeFailure(REASON_OFFENDER_NOT_FOUND)
    if len(matches) > 1:
        raise MergeFailure(f"{len(matches)} offenders have NOMS number {draft.noms_number}")
    type_id = ref.mapped_type.get(draft.type_key)
    if type_id is None:
        default = ref.contact_type_by_code.get(rules.DEFAULT_CONTACT_TYPE_CODE)
        if default is None:
            raise MergeFailure(f"contact type {rules.DEFAULT_CONTACT_TYPE_CODE} not found", retryable=True)
        type_id = default[0]
    if len(draft.establishment_code) < 3:
        raise MergeFailure(f"Invalid establishment code: {draft.establishment_code!r}")
    provider = ref.provider_by_prison.get(draft.establishment_code[:3])
    if not isinstance(provider, _Provider):
        raise MergeFailure(provider or "establishment not resolved")
    return matches[0], type_id, provider


def _existing(row) -> _Existing:
    return _Existing(contact_id=row.contact_id, external_reference=row.external_reference, notes=row.notes,
                     last_updated=row.last_updated_datetime, row_version=row.row_version,
                     noms_number=row.noms_number, crn=row.crn)


def _of_interest_for_external_reference(draft: ContactDraft, now: datetime) -> bool:
    """§6.2: active alerts always; case notes and inactive alerts dated within the last year."""
    if draft.kind is ContactKind.ACTIVE_ALERT:
        return True
    return draft.contact_datetime >= now - timedelta(days=365)


def _is_concurrency_error(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "pgcode", None)
    if code in {"40001", "40P01", "23505"}:          # serialization failure, deadlock, unique violation
        return True
    return isinstance(exc, IntegrityError) or "database is locked" in str(exc.orig)


_OFFICER_CODE = re.compile(r"^([A-Z])(\d{3})$")


def officer_codes_after(prefix: str, existing: Iterable[str], count: int) -> list[str]:
    """The next ``count`` free officer codes ``{prefix}{letter}{3 digits}`` after the highest existing one.

    ``A001`` first; after ``A999`` comes ``B000``; ``Z999`` is the last (design.md §2).
    """
    numbers = [(ord(match.group(1)) - ord("A")) * 1000 + int(match.group(2))
               for code in existing
               if code.startswith(prefix) and (match := _OFFICER_CODE.match(code[len(prefix):]))]
    start = max(numbers, default=0) + 1
    if start + count > 26 * 1000:
        raise MergeFailure(f"officer codes exhausted for prefix {prefix}")
    return [f"{prefix}{chr(ord('A') + n // 1000)}{n % 1000:03d}" for n in range(start, start + count)]


def _chunks(items: Sequence, size: int = IN_CHUNK):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]
