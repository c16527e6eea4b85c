"""Every Delius read of the backfill, the reconciliation and the backfill's asset check (the merge's own reads are in
``store.py``). Bulk: one statement per chunk of people, never one per contact; dialect-neutral SQLAlchemy Core.

The integration's contacts are the ones whose ``external_reference`` is one of its URNs (``URN_PREFIX``), plus, for
reconciliation, legacy rows without a URN that carry a NOMIS case-note id (the merge adopts those).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine

from integration.core.events import is_noms_number

from . import models as m

URN_PREFIX = "urn:uk:gov:hmpps:"
IN_CHUNK = 500  # bind parameters per IN (...) list (Oracle allows at most 1,000)


@dataclass(frozen=True)
class StoredContact:
    urn: str | None  # contact.external_reference
    legacy_id: int | None  # contact.nomis_case_note_id of a legacy row without URN
    last_updated: datetime
    soft_deleted: bool


def people_contacts(engine: Engine, noms_numbers: Iterable[str]) -> list[tuple[str, str, datetime]]:
    """(URN, NOMS number, last_updated_datetime) of the integration's contacts on the linked people (backfill
    planning)."""
    rows: list[tuple[str, str, datetime]] = []
    with engine.connect() as conn:
        for chunk in _chunks(sorted(set(noms_numbers))):
            rows += [
                tuple(row)
                for row in conn.execute(
                    select(m.contact.c.external_reference, m.offender.c.noms_number, m.contact.c.last_updated_datetime)
                    .join(m.offender, m.offender.c.offender_id == m.contact.c.offender_id)
                    .where(
                        m.offender.c.noms_number.in_(chunk),
                        m.offender.c.soft_deleted == 0,
                        m.contact.c.external_reference.like(URN_PREFIX + "%"),
                    )
                )
            ]
    return rows


def stored_contacts(engine: Engine, noms_numbers: Iterable[str]) -> dict[str, list[StoredContact]]:
    """The integration's contacts (URN, or a legacy NOMIS id without URN) of linked people, in bulk."""
    result: dict[str, list[StoredContact]] = {}
    with engine.connect() as conn:
        for chunk in _chunks(sorted(set(noms_numbers))):
            rows = conn.execute(
                select(
                    m.offender.c.noms_number,
                    m.contact.c.external_reference,
                    m.contact.c.nomis_case_note_id,
                    m.contact.c.last_updated_datetime,
                    m.contact.c.soft_deleted,
                )
                .join(m.offender, m.offender.c.offender_id == m.contact.c.offender_id)
                .where(
                    m.offender.c.noms_number.in_(chunk),
                    m.offender.c.soft_deleted == 0,
                    or_(
                        m.contact.c.external_reference.like(URN_PREFIX + "%"),
                        and_(m.contact.c.external_reference.is_(None), m.contact.c.nomis_case_note_id.is_not(None)),
                    ),
                )
            )
            for noms, urn, legacy_id, last_updated, soft_deleted in rows:
                result.setdefault(noms, []).append(
                    StoredContact(urn, None if urn else legacy_id, last_updated, bool(soft_deleted))
                )
    return result


def linked_people(engine: Engine, noms_numbers: Iterable[str]) -> set[str]:
    """Which of ``noms_numbers`` are on an offender in Delius that is not soft-deleted. Only NOMS numbers
    (``A1234BC``, ASCII) are looked up: anything else an event or an operator named is nobody's."""
    found: set[str] = set()
    wanted = {n.strip().upper() for n in noms_numbers if isinstance(n, str) and n.strip()}
    with engine.connect() as conn:
        for chunk in _chunks(sorted(n for n in wanted if is_noms_number(n))):
            found.update(
                conn.execute(
                    select(m.offender.c.noms_number)
                    .distinct()
                    .where(m.offender.c.noms_number.in_(chunk), m.offender.c.soft_deleted == 0)
                ).scalars()
            )
    return found


def people_with_recent_contacts(engine: Engine, since: datetime) -> set[str]:
    """Linked people with an integration contact whose source time (``last_updated_datetime``) is after ``since``.

    One query; without an index on ``contact.last_updated_datetime`` (the contract DDL has none) it scans the table.
    """
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(m.offender.c.noms_number)
                .distinct()
                .join(m.contact, m.contact.c.offender_id == m.offender.c.offender_id)
                .where(
                    m.contact.c.last_updated_datetime >= since,
                    m.contact.c.external_reference.like(URN_PREFIX + "%"),
                    m.offender.c.noms_number.is_not(None),
                    m.offender.c.soft_deleted == 0,
                )
            ).scalars()
        )


def people_in_sweep(engine: Engine, sweep_days: int, today: date) -> set[str]:
    """Today's share of every linked person (``offender_id mod sweep_days``): everyone once every ``sweep_days``."""
    if sweep_days <= 0:
        return set()
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(m.offender.c.noms_number)
                .distinct()
                .where(
                    m.offender.c.noms_number.is_not(None),
                    m.offender.c.soft_deleted == 0,
                    m.offender.c.offender_id % sweep_days == today.toordinal() % sweep_days,
                )
            ).scalars()
        )


def person_contact_urns(engine: Engine, noms_number: str) -> dict[str, int]:
    """URN -> number of contacts with that URN, for the integration's contacts of one person (asset check)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(m.contact.c.external_reference, func.count())
            .join(m.offender, m.offender.c.offender_id == m.contact.c.offender_id)
            .where(
                m.offender.c.noms_number == noms_number,
                m.offender.c.soft_deleted == 0,
                m.contact.c.external_reference.like(URN_PREFIX + "%"),
            )
            .group_by(m.contact.c.external_reference)
        ).all()
    return {urn: count for urn, count in rows}


def _chunks(items: Sequence, size: int = IN_CHUNK):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]
