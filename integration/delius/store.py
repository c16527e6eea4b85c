"""The Delius store: the SQL of the merge. Every decision is made by ``plan.py``; this module reads, locks, writes.

One ``merge`` call merges many drafts with a handful of statements (bulk lookups, batched inserts), and each draft
still gets its own outcome, as if merged alone. How it stays correct with several runs merging at once (live
batches, backfills, reconciliation repairs), on PostgreSQL, Oracle (NDelius) and SQLite:

* **One contact per URN** without a unique index (Delius has none): a round first looks without locks at what
  exists, then, in the write transaction, locks the ``offender`` rows of every person it may touch -- the drafts'
  people and the current owners of their contacts -- with ``SELECT ... FOR UPDATE`` in ascending ``offender_id``
  order (so two runs never deadlock on PostgreSQL), and only then looks again and decides. Any other run merging
  the same URN locks the same person first, so it waits and then sees this run's contact. A draft whose person or
  contact owner changed between the look and the lock is merged again in the next round. SQLite needs no row
  locks: ``BEGIN IMMEDIATE`` (``engine.py``) makes write transactions take turns. The one race this cannot close is
  in ``docs/decisions.md`` ("One contact per URN").
* **Monotonic**: an update is applied only when the stored ``last_updated_datetime`` is older than the draft's
  system time, to the second; the ``row_version`` guard catches a concurrent edit made in Delius itself.
* **Ids** come from ``contact_id_seq`` / ``staff_id_seq`` (``dialect.next_ids``); nothing returns ids from inserts.
* **Staff** are found or created before the write transaction, each probation area in its own short transaction that
  first locks the area's ``probation_area`` row (``FOR UPDATE``: Oracle has it, unlike advisory locks), so
  concurrent runs never take the same officer code; only for drafts that will be written. Officer codes come from
  Delius's ``spgconfig.getnextstaffreference`` where the database has it, else from ``plan.officer_codes_after``.
* **Audit**: one ``audited_interaction`` row per write, each with its own ``date_time`` (the key has no surrogate
  id); a clash with a concurrent run's rows is retried with later times, inside a savepoint.
* **Data Cleanse**: the contact on the previous case of a move is written in the move's transaction. If it cannot be
  (no ``OTHER`` contact type) the move fails, retryably, unless the caller only wants a warning (backfills).
* **Failures** are per draft (``Action.FAILED`` with a reason and whether a retry may help). A draft no column can
  take is refused before the database (``plan.refusal``); a call the database refuses for its data is split until
  only the drafts it refuses fail (``merge``, ``_isolate``), named from the column sizes. A database that cannot be
  reached or does not settle raises ``StoreUnavailable``; missing configuration ``MergeConfigurationError``.
* **Staff names** are compared in Python by one Unicode caseless form (``plan.staff_key``), never by the database's
  ``lower()``, whose answer differs between SQLite, PostgreSQL and Oracle (``_find_staff``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from sqlalchemy import insert, inspect, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ..core import rules
from ..core.outcomes import (
    DATA_CLEANSE_FAILURE,
    REASON_NO_DATA_CLEANSE,
    REASON_NOT_SETTLED,
    REASON_URN_BACKFILLED,
    Action,
    MergeConfigurationError,
    MergeFailure,
    MergeOutcome,
    StoreUnavailable,
)
from ..core.rules import ContactDraft
from ..core.times import london_now
from . import dialect, plan
from . import models as m
from .plan import Decision, Existing, Kind, Person, Provider, Reference, StaffKey
from .reference_data import CASE_NOTES_MERGE_INTERACTION, SERVICE_USERNAME

log = logging.getLogger(__name__)

IN_CHUNK = 500  # bind parameters per IN (...) list (Oracle allows at most 1,000)
INSERT_CHUNK = 1000  # rows per executemany
MAX_ROUNDS = 4  # merge rounds when concurrent runs race on the same people
STAFF_ATTEMPTS = 3  # find-or-create staff, when a concurrent writer took an officer code first
AUDIT_ATTEMPTS = 5  # audit inserts, when a concurrent run used the same date_time keys

_audit_clock: weakref.WeakKeyDictionary[Engine, tuple[timedelta, datetime | None]] = weakref.WeakKeyDictionary()
_audit_clock_lock = threading.Lock()


@dataclass
class _Round:
    done: dict[int, MergeOutcome] = field(default_factory=dict)
    retry: list[int] = field(default_factory=list)


@dataclass
class _Write:
    """A create or move decided under the locks: the new column values (id and links still to come)."""

    idx: int
    values: dict
    existing: Existing | None = None  # a move: the contact it rewrites
    warning: str | None = None

    @property
    def previous(self) -> Existing:
        """The contact a move rewrites (its current owner is the previous person)."""
        assert self.existing is not None, "not a move"
        return self.existing


class DeliusStore:
    """The Delius side of the integration, over any SQLAlchemy engine holding the contract tables."""

    def __init__(self, engine: Engine, username: str = SERVICE_USERNAME, clock=london_now):
        self.engine = engine
        self.username = username
        self.clock = clock

    # ------------------------------------------------------------------ public API

    def merge(self, drafts: Sequence[ContactDraft], *, data_cleanse_required: bool = True) -> list[MergeOutcome]:
        """Merge every draft; returns one outcome per draft, in order.

        ``data_cleanse_required``: a move whose Data Cleanse contact cannot be written fails (retryable) and is not
        made -- the event flows; False: the move is made and the outcome carries a warning -- the backfill.

        A draft that no column can take (``plan.refusal``) fails at once. When the database refuses a call for a
        reason in the data (a value too long, out of range, not encodable), the drafts are split and merged again
        until only the ones it refuses fail, each with the reason (``_isolate``). Raises ``StoreUnavailable`` when
        the database cannot be reached or does not settle, before anything of this call was committed (later, the
        drafts not yet merged fail with that reason, retryably), and ``MergeConfigurationError``."""
        pending, outcomes = plan.pick_winners(drafts)
        writable = []
        for idx in pending:
            reason = plan.refusal(drafts[idx])
            if reason is None:
                writable.append(idx)
            else:
                outcomes[idx] = MergeOutcome(drafts[idx].urn, Action.FAILED, reason)
        if writable:
            for idx, outcome in zip(
                writable, self._isolate([drafts[i] for i in writable], data_cleanse_required, first=True)
            ):
                outcomes[idx] = outcome
        return [outcomes[idx] for idx in range(len(drafts))]

    def _isolate(self, drafts: list[ContactDraft], data_cleanse_required: bool, *, first: bool) -> list[MergeOutcome]:
        """Merge ``drafts``; if the database refuses them for a reason in the data, merge each half on its own (each
        in its own transactions), down to the single drafts it refuses. With k such drafts among n this takes about
        2k·log2(n) merge calls instead of one; nothing of a refused call is committed."""
        try:
            return self._merge_classified(drafts, data_cleanse_required)
        except _Refused as refused:
            if len(drafts) == 1:
                log.warning("merge refused for one draft: %s", refused.describe())
                return [
                    MergeOutcome(
                        drafts[0].urn, Action.FAILED, _explain(drafts[0], refused), retryable=refused.retryable
                    )
                ]
            log.info("merge of %d drafts refused (%s); merging each half on its own", len(drafts), refused.describe())
        except StoreUnavailable as exc:
            if first:
                raise
            return [MergeOutcome(d.urn, Action.FAILED, str(exc), retryable=True) for d in drafts]
        half = len(drafts) // 2
        return self._isolate(drafts[:half], data_cleanse_required, first=False) + self._isolate(
            drafts[half:], data_cleanse_required, first=False
        )

    def _merge_classified(self, drafts: list[ContactDraft], data_cleanse_required: bool) -> list[MergeOutcome]:
        """``_merge``, its errors sorted: unavailable or not settling (``StoreUnavailable``), configuration
        (``MergeConfigurationError``), or refused for the data (``_Refused``)."""
        try:
            return self._merge(drafts, data_cleanse_required)
        except (MergeConfigurationError, StoreUnavailable):
            raise
        except SQLAlchemyError as exc:
            kind = _error_kind(exc)
            if kind == "unavailable":
                raise StoreUnavailable(f"Delius database unavailable ({type(exc).__name__})") from exc
            if kind == "busy":
                raise StoreUnavailable(
                    f"Delius database busy: concurrent writes did not settle ({type(exc).__name__})"
                ) from exc
            raise _Refused(exc, retryable=kind != "data") from exc
        except (ValueError, TypeError, ArithmeticError) as exc:
            # Raised by the driver binding a value: psycopg2 refuses NUL (ValueError), UTF-8 a lone surrogate
            # (UnicodeEncodeError), sqlite3 an integer beyond 64 bits (OverflowError).
            raise _Refused(exc, retryable=False) from exc
        except Exception as exc:  # noqa: BLE001 - anything else a draft sets off: pinned to it, retried later
            raise _Refused(exc, retryable=True) from exc

    def _merge(self, drafts: Sequence[ContactDraft], data_cleanse_required: bool) -> list[MergeOutcome]:
        pending, outcomes = plan.pick_winners(drafts)  # one per URN already (merge), but callable on its own
        for round_number in range(MAX_ROUNDS):
            if not pending:
                break
            try:
                result = self._merge_round(drafts, pending, data_cleanse_required)
            except DBAPIError as exc:
                if not _is_concurrency_error(exc) or round_number == MAX_ROUNDS - 1:
                    raise
                log.info("merge round %d hit %s; retrying", round_number + 1, type(exc.orig).__name__)
                time.sleep(0.05 * (round_number + 1) ** 2 + random.random() * 0.05)
                continue
            outcomes.update(result.done)
            pending = result.retry
        for idx in pending:
            outcomes[idx] = MergeOutcome(drafts[idx].urn, Action.FAILED, REASON_NOT_SETTLED, retryable=True)
        return [outcomes[idx] for idx in range(len(drafts))]

    # ------------------------------------------------------------------ one round

    def _merge_round(self, drafts: Sequence[ContactDraft], idxs: list[int], data_cleanse_required: bool) -> _Round:
        subset = [drafts[i] for i in idxs]
        noms_numbers = {d.noms_number for d in subset}
        now = self.clock()
        # 1. Look, without locks, at what exists; find or create staff for what will be created or moved.
        with self.engine.connect() as conn:
            ref = self._load_reference(conn, subset, now)
            existing = self._find_existing(conn, subset)
            persons = self._find_persons(conn, noms_numbers)
        staff_ids = self._find_or_create_staff(ref, self._staff_needed(drafts, idxs, ref, existing, persons, now))
        lock_ids = {p.offender_id for people in persons.values() for p in people} | {
            row.offender_id for row in existing.values()
        }

        # 2. Lock the people, look again, decide and write.
        result = _Round()
        with self.engine.begin() as conn:
            locked = self._lock_offenders(conn, lock_ids)
            existing = self._find_existing(conn, subset)
            persons = self._find_persons(conn, noms_numbers)
            updates: list[tuple[int, Decision]] = []
            creates: list[_Write] = []
            moves: list[_Write] = []
            for idx in idxs:
                draft = drafts[idx]
                row = existing.get(draft.urn)
                touched = {p.offender_id for p in persons.get(draft.noms_number, ())}
                if row is not None:
                    touched.add(row.offender_id)
                if not touched <= locked:  # changed since step 1: look and lock again next round
                    result.retry.append(idx)
                    continue
                decision = plan.classify(draft, row, now)
                if decision.kind is Kind.UNCHANGED:
                    result.done[idx] = plan.unchanged_outcome(draft, decision)
                elif decision.kind in (Kind.UPDATE, Kind.URN_ONLY):
                    updates.append((idx, decision))
                else:
                    write = self._derive(draft, idx, decision, ref, persons, staff_ids, result)
                    if write is not None:
                        (creates if decision.kind is Kind.CREATE else moves).append(write)
            self._link_events_and_nsis(conn, creates + moves, drafts)
            moves, cleanse = self._plan_data_cleanse(conn, moves, drafts, ref, now, data_cleanse_required, result)
            audits: list[tuple[int, ContactDraft]] = []
            self._insert_creates(conn, creates, drafts, persons, result, audits)
            self._apply_updates(conn, updates, drafts, ref, result, audits)
            moved_from = self._apply_moves(conn, moves, drafts, persons, result, audits)
            self._insert_data_cleanse(
                conn, [values for offender_id, values in cleanse.items() if offender_id in moved_from]
            )
            self._insert_audits(conn, audits, ref, now)
        return result

    def _staff_needed(
        self,
        drafts: Sequence[ContactDraft],
        idxs: list[int],
        ref: Reference,
        existing: dict[str, Existing],
        persons: dict[str, list[Person]],
        now: datetime,
    ) -> dict[Provider, set[tuple[str, str]]]:
        """Staff for the drafts that step 1 expects to create or move, and only those that can be written: a person
        not in Delius (or on several offenders), or missing reference data, must leave no staff behind."""
        needed: dict[Provider, set[tuple[str, str]]] = defaultdict(set)
        for idx in idxs:
            draft = drafts[idx]
            if plan.classify(draft, existing.get(draft.urn), now).kind not in (Kind.CREATE, Kind.MOVE):
                continue
            try:
                target = plan.resolve_target(draft, ref, persons)
            except MergeFailure:
                continue
            needed[target.provider].add((draft.staff_forename, draft.staff_surname))
        return needed

    def _derive(
        self,
        draft: ContactDraft,
        idx: int,
        decision: Decision,
        ref: Reference,
        persons: dict[str, list[Person]],
        staff_ids: dict[StaffKey, int | str],
        result: _Round,
    ) -> _Write | None:
        try:
            target = plan.resolve_target(draft, ref, persons)
        except MergeFailure as failure:
            result.done[idx] = plan.failure_outcome(draft, failure, decision.existing)
            return None
        staff_id = staff_ids.get(plan.draft_staff_key(draft, target.provider))
        if staff_id is None:  # not foreseen in step 1 (the contact changed in between)
            result.retry.append(idx)
            return None
        if isinstance(staff_id, str):
            result.done[idx] = plan.failure_outcome(draft, MergeFailure(staff_id))
            return None
        return _Write(idx, plan.new_contact_values(draft, target, staff_id, ref), decision.existing)

    # ------------------------------------------------------------------ lookups

    def _load_reference(self, conn: Connection, drafts: Sequence[ContactDraft], now: datetime) -> Reference:
        user_id = conn.execute(select(m.user_.c.user_id).where(m.user_.c.distinguished_name == self.username)).scalar()
        if user_id is None:
            raise MergeConfigurationError(f"Delius user {self.username} not found")
        interaction = conn.execute(
            select(m.business_interaction.c.business_interaction_id, m.business_interaction.c.enabled_date).where(
                m.business_interaction.c.business_interaction_code == CASE_NOTES_MERGE_INTERACTION
            )
        ).first()
        interaction_id = plan.check_interaction(
            CASE_NOTES_MERGE_INTERACTION, tuple(interaction) if interaction else None, now
        )
        types = conn.execute(
            select(m.r_contact_type.c.contact_type_id, m.r_contact_type.c.code, m.r_contact_type.c.sensitive_contact)
        ).all()
        mapped: dict[str, int] = {}
        for chunk in _chunks(sorted({d.type_key for d in drafts if plan.fits(d.type_key, plan.NOMIS_TYPE_MAX)})):
            mapped.update(
                {
                    key: type_id
                    for key, type_id in conn.execute(
                        select(
                            m.r_contact_type_nomis_type.c.nomis_contact_type,
                            m.r_contact_type_nomis_type.c.contact_type_id,
                        ).where(m.r_contact_type_nomis_type.c.nomis_contact_type.in_(chunk))
                    )
                }
            )
        prisons = sorted({d.establishment_code[:3] for d in drafts if len(d.establishment_code) >= 3})
        areas: list[tuple[str, int, str]] = []
        teams: dict[str, int] = {}
        if prisons:
            areas = [
                tuple(row)
                for row in conn.execute(
                    select(
                        m.r_institution.c.nomis_cde_code, m.probation_area.c.probation_area_id, m.probation_area.c.code
                    )
                    .join(m.probation_area, m.probation_area.c.institution_id == m.r_institution.c.institution_id)
                    .where(m.r_institution.c.nomis_cde_code.in_(prisons))
                )
            ]
            team_codes = sorted({plan.csn_team_code(code) for _, _, code in areas})
            if team_codes:
                teams = {
                    code: team_id
                    for code, team_id in conn.execute(
                        select(m.team.c.code, m.team.c.team_id).where(m.team.c.code.in_(team_codes))
                    )
                }
        return Reference(
            user_id=user_id,
            interaction_id=interaction_id,
            contact_type_by_code={code: (tid, sens) for tid, code, sens in types},
            contact_type_by_id={tid: (code, sens) for tid, code, sens in types},
            mapped_type=mapped,
            provider_by_prison=plan.providers_by_prison(prisons, areas, teams),
        )

    def _find_existing(self, conn: Connection, drafts: Sequence[ContactDraft]) -> dict[str, Existing]:
        """Existing contacts by URN, else (case notes) by legacy NOMIS id on rows without URN; the lowest id wins
        if there are several (there should never be: a warning is logged)."""
        base = select(
            m.contact.c.contact_id,
            m.contact.c.offender_id,
            m.contact.c.external_reference,
            m.contact.c.nomis_case_note_id,
            m.contact.c.notes,
            m.contact.c.last_updated_datetime,
            m.contact.c.row_version,
            m.offender.c.noms_number,
            m.offender.c.crn,
        ).join(m.offender, m.offender.c.offender_id == m.contact.c.offender_id)
        found: dict[str, Existing] = {}
        duplicates: set[str] = set()

        def add(urn: str, row) -> None:
            if urn in found:
                duplicates.add(urn)
                return
            found[urn] = Existing(
                contact_id=row.contact_id,
                offender_id=row.offender_id,
                external_reference=row.external_reference,
                notes=row.notes,
                last_updated=row.last_updated_datetime,
                row_version=row.row_version,
                noms_number=row.noms_number,
                crn=row.crn,
            )

        for chunk in _chunks(sorted({d.urn for d in drafts})):
            for row in conn.execute(
                base.where(m.contact.c.external_reference.in_(chunk)).order_by(m.contact.c.contact_id)
            ):
                add(row.external_reference, row)
        legacy = plan.legacy_lookup(drafts, found)
        for chunk in _chunks(sorted(legacy)):
            for row in conn.execute(
                base.where(
                    m.contact.c.nomis_case_note_id.in_(chunk), m.contact.c.external_reference.is_(None)
                ).order_by(m.contact.c.contact_id)
            ):
                add(legacy[row.nomis_case_note_id], row)
        if duplicates:
            log.warning("%d URNs have more than one contact (merging into the lowest contact_id)", len(duplicates))
        return found

    def _find_persons(self, conn: Connection, noms_numbers: set[str]) -> dict[str, list[Person]]:
        persons: dict[str, list[Person]] = {noms: [] for noms in noms_numbers}
        for chunk in _chunks(sorted(n for n in noms_numbers if plan.fits(n, plan.NOMS_NUMBER_MAX))):
            for offender_id, crn, noms in conn.execute(
                select(m.offender.c.offender_id, m.offender.c.crn, m.offender.c.noms_number)
                .where(m.offender.c.noms_number.in_(chunk), m.offender.c.soft_deleted == 0)
                .order_by(m.offender.c.offender_id)
            ):
                persons[noms].append(Person(offender_id, crn))
        return persons

    def _lock_offenders(self, conn: Connection, offender_ids: set[int]) -> set[int]:
        """Lock the people's ``offender`` rows for this transaction, in ascending id order; returns the ids locked.

        ``key_share=True`` is PostgreSQL's ``FOR NO KEY UPDATE`` (it does not block Delius inserting rows that
        reference the offender); Oracle renders ``FOR UPDATE``; SQLite ignores it (its write lock is held already)."""
        locked: set[int] = set()
        for chunk in _chunks(sorted(offender_ids)):
            locked.update(
                conn.execute(
                    select(m.offender.c.offender_id)
                    .where(m.offender.c.offender_id.in_(chunk))
                    .order_by(m.offender.c.offender_id)
                    .with_for_update(key_share=True)
                ).scalars()
            )
        return locked

    def _link_events_and_nsis(self, conn: Connection, writes: list[_Write], drafts: Sequence[ContactDraft]) -> None:
        wanted = [w for w in writes if not drafts[w.idx].is_alert]
        if not wanted:
            return
        offender_ids = sorted({w.values["offender_id"] for w in wanted})
        keys = sorted({drafts[w.idx].type_key for w in wanted})
        nsis: dict[tuple[int, str], list[tuple[date, int, int | None]]] = defaultdict(list)
        custodial: dict[int, set[int]] = defaultdict(set)
        mapping = m.r_nomis_type_nsi_type
        for chunk in _chunks(offender_ids):
            for offender_id, nsi_id, event_id, referral, nomis_type in conn.execute(
                select(
                    m.nsi.c.offender_id,
                    m.nsi.c.nsi_id,
                    m.nsi.c.event_id,
                    m.nsi.c.referral_date,
                    mapping.c.nomis_contact_type,
                )
                .join(mapping, mapping.c.nsi_type_id == m.nsi.c.nsi_type_id)
                .where(
                    m.nsi.c.offender_id.in_(chunk),
                    m.nsi.c.active_flag == 1,
                    m.nsi.c.soft_deleted == 0,
                    mapping.c.nomis_contact_type.in_(keys),
                )
            ):
                nsis[(offender_id, nomis_type)].append((referral, nsi_id, event_id))
            for offender_id, event_id in conn.execute(
                select(m.event.c.offender_id, m.event.c.event_id)
                .join(m.disposal, m.disposal.c.event_id == m.event.c.event_id)
                .join(m.r_disposal_type, m.r_disposal_type.c.disposal_type_id == m.disposal.c.disposal_type_id)
                .where(
                    m.event.c.offender_id.in_(chunk),
                    m.event.c.active_flag == 1,
                    m.event.c.soft_deleted == 0,
                    m.disposal.c.active_flag == 1,
                    m.disposal.c.soft_deleted == 0,
                    m.r_disposal_type.c.sentence_type.in_(("NC", "SC")),
                )
            ):
                custodial[offender_id].add(event_id)
        for write in wanted:
            offender_id = write.values["offender_id"]
            draft = drafts[write.idx]
            write.values["event_id"], write.values["nsi_id"] = plan.choose_links(
                draft, nsis.get((offender_id, draft.type_key), ()), custodial.get(offender_id, ())
            )

    # ------------------------------------------------------------------ data cleanse

    def _plan_data_cleanse(
        self,
        conn: Connection,
        moves: list[_Write],
        drafts: Sequence[ContactDraft],
        ref: Reference,
        now: datetime,
        required: bool,
        result: _Round,
    ) -> tuple[list[_Write], dict[int, dict]]:
        """The Data Cleanse contact of each previous case with an active offender manager, checked before anything
        is written. Returns the moves to make and the cleanse rows by previous offender_id."""
        if not moves:
            return moves, {}
        previous = sorted({w.previous.offender_id for w in moves})
        managers: dict[int, tuple[int, int, int]] = {}
        for chunk in _chunks(previous):
            for offender_id, staff_id, team_id, area_id in conn.execute(
                select(
                    m.offender_manager.c.offender_id,
                    m.offender_manager.c.allocation_staff_id,
                    m.offender_manager.c.team_id,
                    m.offender_manager.c.probation_area_id,
                )
                .where(
                    m.offender_manager.c.offender_id.in_(chunk),
                    m.offender_manager.c.active_flag == 1,
                    m.offender_manager.c.soft_deleted == 0,
                )
                .order_by(m.offender_manager.c.offender_manager_id.desc())
            ):
                managers.setdefault(offender_id, (staff_id, team_id, area_id))
        other = ref.contact_type_by_code.get(rules.DATA_CLEANSE_CONTACT_TYPE_CODE)
        reason = REASON_NO_DATA_CLEANSE
        kept: list[_Write] = []
        cleanse: dict[int, dict] = {}
        for write in moves:
            offender_id = write.previous.offender_id
            manager = managers.get(offender_id)
            if manager is None:  # no active offender manager: no Data Cleanse contact
                kept.append(write)
            elif other is None:
                if required:
                    result.done[write.idx] = MergeOutcome(drafts[write.idx].urn, Action.FAILED, reason, retryable=True)
                else:
                    kept.append(replace(write, warning=f"{DATA_CLEANSE_FAILURE}: {reason}"))
                    log.warning("data cleanse contact for %s not written: %s", write.previous.crn, reason)
            else:
                kept.append(write)
                staff_id, team_id, area_id = manager
                cleanse.setdefault(
                    offender_id,
                    plan.data_cleanse_values(
                        offender_id=offender_id,
                        staff_id=staff_id,
                        team_id=team_id,
                        area_id=area_id,
                        contact_type_id=other[0],
                        sensitive=other[1],
                        user_id=ref.user_id,
                        now=now,
                    ),
                )
        return kept, cleanse

    def _insert_data_cleanse(self, conn: Connection, rows: list[dict]) -> None:
        if rows:
            ids = dialect.next_ids(conn, "contact", len(rows))
            conn.execute(insert(m.contact), [dict(row, contact_id=i) for row, i in zip(rows, ids)])

    # ------------------------------------------------------------------ writes

    def _insert_creates(
        self,
        conn: Connection,
        creates: list[_Write],
        drafts: Sequence[ContactDraft],
        persons: dict[str, list[Person]],
        result: _Round,
        audits: list,
    ) -> None:
        if not creates:
            return
        ids = dialect.next_ids(conn, "contact", len(creates))
        rows = [dict(write.values, contact_id=contact_id) for write, contact_id in zip(creates, ids)]
        for start in range(0, len(rows), INSERT_CHUNK):
            conn.execute(insert(m.contact), rows[start : start + INSERT_CHUNK])
        for write, contact_id in zip(creates, ids):
            draft = drafts[write.idx]
            result.done[write.idx] = MergeOutcome(
                draft.urn, Action.CREATED, contact_id=contact_id, crn=persons[draft.noms_number][0].crn
            )
            audits.append((contact_id, draft))

    def _apply_updates(
        self,
        conn: Connection,
        updates: list[tuple[int, Decision]],
        drafts: Sequence[ContactDraft],
        ref: Reference,
        result: _Round,
        audits: list,
    ) -> None:
        for idx, decision in updates:
            draft, row = drafts[idx], decision.existing
            assert row is not None, "an update has a contact"
            urn_only = decision.kind is Kind.URN_ONLY
            if not self._update_row(conn, row, plan.update_values(draft, row, ref.user_id, urn_only=urn_only)):
                result.retry.append(idx)
                continue
            result.done[idx] = MergeOutcome(
                draft.urn,
                Action.UPDATED,
                REASON_URN_BACKFILLED if urn_only else None,
                contact_id=row.contact_id,
                crn=row.crn,
            )
            audits.append((row.contact_id, draft))

    def _apply_moves(
        self,
        conn: Connection,
        moves: list[_Write],
        drafts: Sequence[ContactDraft],
        persons: dict[str, list[Person]],
        result: _Round,
        audits: list,
    ) -> set[int]:
        """Rewrite moved contacts in place; returns the previous offender ids of the moves made."""
        moved_from: set[int] = set()
        for write in moves:
            draft, row = drafts[write.idx], write.previous
            if not self._update_row(conn, row, plan.move_values(write.values, row)):
                result.retry.append(write.idx)
                continue
            moved_from.add(row.offender_id)
            result.done[write.idx] = MergeOutcome(
                draft.urn,
                Action.MOVED,
                contact_id=row.contact_id,
                crn=persons[draft.noms_number][0].crn,
                previous_crn=row.crn,
                warning=write.warning,
            )
            audits.append((row.contact_id, draft))
        return moved_from

    @staticmethod
    def _update_row(conn: Connection, row: Existing, values: dict) -> bool:
        """False when the row changed since it was read (an edit in Delius itself bumped ``row_version``)."""
        return (
            conn.execute(
                update(m.contact)
                .where(m.contact.c.contact_id == row.contact_id, m.contact.c.row_version == row.row_version)
                .values(**values)
            ).rowcount
            == 1
        )

    def _insert_audits(
        self, conn: Connection, audits: list[tuple[int, ContactDraft]], ref: Reference, now: datetime
    ) -> None:
        """One audit row per write, each with its own ``date_time``; on a key clash with another run's rows, again
        with later times (the savepoint keeps the rest of the transaction)."""
        if not audits:
            return
        step = self._audit_step()
        for attempt in range(AUDIT_ATTEMPTS):
            start = self._audit_start(now if attempt == 0 else self.clock(), step, jitter=attempt)
            times = plan.audit_times(start, len(audits), step)
            rows = plan.audit_rows(audits, times, interaction_id=ref.interaction_id, user_id=ref.user_id)
            try:
                with conn.begin_nested():
                    for chunk in range(0, len(rows), INSERT_CHUNK):
                        conn.execute(insert(m.audited_interaction), rows[chunk : chunk + INSERT_CHUNK])
            except IntegrityError:
                if attempt == AUDIT_ATTEMPTS - 1:
                    raise
                log.info("audit times clashed with another run's (attempt %d); taking later ones", attempt + 1)
                continue
            self._audit_used(times[-1])
            return

    def _audit_step(self) -> timedelta:
        """The resolution of ``audited_interaction.date_time``: a microsecond, or a second where it is an Oracle
        ``DATE`` (read once per engine; unreadable counts as ``DATE``)."""
        with _audit_clock_lock:
            known = _audit_clock.get(self.engine)
        if known is not None:
            return known[0]
        step = timedelta(microseconds=1)
        if self.engine.dialect.name == "oracle":
            step = timedelta(seconds=1)
            try:
                columns = inspect(self.engine).get_columns("audited_interaction", oracle_resolve_synonyms=True)
                kind = next(type(c["type"]).__name__ for c in columns if c["name"].lower() == "date_time")
                if kind.upper().startswith("TIMESTAMP"):
                    step = timedelta(microseconds=1)
            except (SQLAlchemyError, StopIteration):
                log.warning("could not read the type of audited_interaction.date_time: assuming DATE (seconds)")
        with _audit_clock_lock:
            _audit_clock.setdefault(self.engine, (step, None))
        return step

    def _audit_start(self, now: datetime, step: timedelta, *, jitter: int) -> datetime:
        with _audit_clock_lock:
            last = _audit_clock.get(self.engine, (step, None))[1]
        start = plan.next_audit_start(now, last, step)
        if jitter:  # after a clash: well clear of the other run's block
            start += step * random.randint(1000, 5000) * jitter
        return start

    def _audit_used(self, last: datetime) -> None:
        with _audit_clock_lock:
            step, previous = _audit_clock.get(self.engine, (timedelta(microseconds=1), None))
            _audit_clock[self.engine] = (step, max(last, previous) if previous else last)

    # ------------------------------------------------------------------ staff

    def _find_or_create_staff(
        self, ref: Reference, needed: dict[Provider, set[tuple[str, str]]]
    ) -> dict[StaffKey, int | str]:
        """Staff key -> staff id (or the reason it could not be created), creating prison staff that do not exist."""
        found: dict[StaffKey, int | str] = {}
        for provider, names in sorted(needed.items(), key=lambda item: item[0].area_id):
            for attempt in range(STAFF_ATTEMPTS):
                try:
                    found.update(self._staff_for_area(ref, provider, names))
                    break
                except MergeFailure as failure:
                    for forename, surname in names:
                        found.setdefault(plan.staff_key(provider.area_id, forename, surname), failure.reason)
                    break
                except IntegrityError:
                    if attempt == STAFF_ATTEMPTS - 1:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        return found

    def _staff_for_area(self, ref: Reference, provider: Provider, names: set[tuple[str, str]]) -> dict[StaffKey, int]:
        wanted: dict[StaffKey, tuple[str, str]] = {}
        for forename, surname in sorted(names):  # one spelling per person: the first in order is written
            wanted.setdefault(plan.staff_key(provider.area_id, forename, surname), (forename, surname))
        result: dict[StaffKey, int] = {}
        with self.engine.begin() as conn:
            conn.execute(
                select(m.probation_area.c.probation_area_id)
                .where(m.probation_area.c.probation_area_id == provider.area_id)
                .with_for_update(key_share=True)
            ).all()
            self._find_staff(conn, provider.area_id, wanted, result)
            missing = [key for key in sorted(wanted) if key not in result]
            if not missing:
                return result
            prefix = plan.officer_prefix(provider.area_code)
            now = self.clock()
            ids = dialect.next_ids(conn, "staff", len(missing))
            staff_rows = [
                plan.staff_values(
                    staff_id=staff_id,
                    officer_code="",
                    forename=wanted[key][0],
                    surname=wanted[key][1],
                    area_id=provider.area_id,
                    user_id=ref.user_id,
                    now=now,
                )
                for key, staff_id in zip(missing, ids)
            ]
            self._insert_staff_with_codes(conn, prefix, staff_rows)
            conn.execute(
                insert(m.staff_team),
                [
                    plan.staff_team_values(staff_id=staff_id, team_id=provider.team_id, user_id=ref.user_id, now=now)
                    for staff_id in ids
                ],
            )
            result.update(zip(missing, ids))
            log.info(
                "created %d prison staff in area %s (%s)",
                len(missing),
                provider.area_code,
                ", ".join(row["officer_code"] for row in staff_rows),
            )
        return result

    @staticmethod
    def _find_staff(
        conn: Connection, area_id: int, wanted: dict[StaffKey, tuple[str, str]], result: dict[StaffKey, int]
    ) -> None:
        """The first staff row (lowest id) of the area for each wanted name, matched by ``plan.staff_key`` in Python.

        A database's own case-insensitive comparison differs (SQLite's ``lower()`` folds ASCII only, PostgreSQL's
        follows its collation, Oracle's its NLS settings), so candidates are fetched by exact comparison, which all
        make alike: the surnames in the forms they are likely stored in (``plan.name_spellings``). A name still not
        found is about to be created, so the area's staff are read once more, all of them, to be sure no stored
        form was missed. Runs under the area's lock (``_staff_for_area``)."""

        def consider(rows) -> None:
            for staff_id, forename, surname in rows:
                key = plan.staff_key(area_id, forename, surname)
                if key in wanted and (key not in result or staff_id < result[key]):
                    result[key] = staff_id

        columns = (m.staff.c.staff_id, m.staff.c.forename, m.staff.c.surname)
        spellings = sorted({form for _, surname in wanted.values() for form in plan.name_spellings(surname)})
        for chunk in _chunks(spellings):
            consider(
                conn.execute(
                    select(*columns).where(m.staff.c.probation_area_id == area_id, m.staff.c.surname.in_(chunk))
                )
            )
        if any(key not in result for key in wanted):
            consider(conn.execute(select(*columns).where(m.staff.c.probation_area_id == area_id)))

    def _insert_staff_with_codes(self, conn: Connection, prefix: str, rows: list[dict]) -> None:
        """Give each new staff row its officer code and insert it, under the area lock.

        Delius's ``spgconfig.getnextstaffreference`` answers one code at a time from the rows it can see (this
        transaction's included), so each row is inserted before the next code is asked for; a null answer means
        ``{prefix}A000``. Without the function the same rule is applied here, for all rows at once."""
        taken = set(
            conn.execute(select(m.staff.c.officer_code).where(m.staff.c.officer_code.like(f"{prefix}%"))).scalars()
        )
        if not dialect.has_officer_code_function(conn):
            for row, code in zip(rows, plan.officer_codes_after(prefix, taken, len(rows))):
                row["officer_code"] = code
            conn.execute(insert(m.staff), rows)
            return
        for row in rows:
            code = plan.officer_code_from_function(
                prefix, conn.execute(dialect.next_officer_code_statement(prefix)).scalar()
            )
            if code in taken:
                raise MergeFailure(f"officer code {code} from Delius is already in use")
            row["officer_code"] = code
            taken.add(code)
            conn.execute(insert(m.staff), row)


class _Refused(Exception):
    """A merge call the database (or its driver) refused for a reason that may lie in one draft's data."""

    def __init__(self, cause: BaseException, *, retryable: bool):
        super().__init__(type(cause).__name__)
        self.cause = cause
        self.retryable = retryable

    @property
    def code(self) -> str | None:
        return _db_code(self.cause)

    def describe(self) -> str:
        """The error's class and code: never its message, which may quote a value."""
        orig = getattr(self.cause, "orig", None)
        name = type(orig).__name__ if orig is not None else type(self.cause).__name__
        return f"{name} {self.code}" if self.code else name


# What a database's code means, for a reason (PostgreSQL SQLSTATE, Oracle ORA- numbers).
_REFUSALS = {
    "22001": "value too long",
    "ORA-12899": "value too long",
    "ORA-01401": "value too long",
    "22003": "number out of range",
    "ORA-01438": "number out of range",
    "ORA-01426": "number out of range",
    "22008": "date-time out of range",
    "22007": "invalid date-time",
    "ORA-01841": "date-time out of range",
    "22021": "character not in the database's encoding",
    "22P05": "character not in the database's encoding",
    "ORA-29275": "character not in the database's encoding",
    "ORA-01461": "value too long",
}
_DATA_CODES = frozenset(_REFUSALS) | {"ORA-01840", "ORA-01847", "ORA-01722"}


def _db_code(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE or Oracle's ORA- number of a driver error, when the database said one."""
    orig = getattr(exc, "orig", None)
    pgcode = getattr(orig, "pgcode", None)
    if pgcode:
        return str(pgcode)
    error = (getattr(orig, "args", None) or (None,))[0]
    number = getattr(error, "code", None)
    return f"ORA-{number:05d}" if isinstance(number, int) else None


def _error_kind(exc: SQLAlchemyError) -> str:
    """'unavailable' (not reachable, connection lost), 'busy' (concurrent writes that did not settle), 'data' (a
    value the database refuses) or 'other' (anything else: split and pinned to the draft that sets it off)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "unavailable"
    if isinstance(exc, (DisconnectionError, PoolTimeout)):
        return "unavailable"
    if isinstance(exc, DBAPIError) and _is_concurrency_error(exc):
        return "busy"
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "unavailable"
    if isinstance(exc, DataError) or _db_code(exc) in _DATA_CODES:
        return "data"
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return "data"  # a value SQLAlchemy could not bind (the driver was never called)
    return "other"


def _explain(draft: ContactDraft, refused: _Refused) -> str:
    """The reason a refused draft fails: the column its value does not fit (from the column sizes), else what the
    database's code means; never a value."""
    oversized = plan.oversized(draft)
    if oversized:
        return f"value too long for {oversized[0]}"
    cause = refused.cause
    meaning = _REFUSALS.get(refused.code or "")
    if meaning is None and isinstance(cause, UnicodeError):
        meaning = "text not encodable as UTF-8"
    elif meaning is None and isinstance(cause, OverflowError):
        meaning = "number out of range"
    elif meaning is None and isinstance(cause, ValueError) and "NUL" in str(cause):
        meaning = "text holds a NUL character"
    return f"Delius refused the contact: {meaning or 'database error'} ({refused.describe()})"


def _is_concurrency_error(exc: DBAPIError) -> bool:
    """Deadlocks, serialisation failures, lock timeouts and key clashes: another round may succeed."""
    code = getattr(exc.orig, "pgcode", None)
    if code in {"40001", "40P01", "23505", "55P03"}:
        return True
    args = getattr(exc.orig, "args", None) or (None,)
    error = args[0]
    if getattr(error, "code", None) in {1, 60, 8177}:  # Oracle: ORA-00001, ORA-00060, ORA-08177
        return True
    return isinstance(exc, IntegrityError) or "database is locked" in str(exc.orig)


def _chunks(items: Sequence, size: int = IN_CHUNK):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]
