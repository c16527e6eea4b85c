"""In-memory records of the stand-in Case Notes and Alerts APIs, and one-line builders for them.

Records are kept exactly as the APIs serialise them: camelCase JSON dicts with local date-times without an offset.
Case notes omit null fields and their times carry the database's fractional seconds (``2025-04-22T13:17:53.123456``,
trailing zeros dropped, none when the fraction is zero); alerts keep their nulls and are written to the second. An
alert is active when its ``activeTo`` is null or after today: ``activeFrom`` does not count.
Every read and write copies, so callers can never change stored state by accident.
"""

from __future__ import annotations

import copy
import itertools
import random
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")

# Type and sub-type descriptions for the codes the service cares about (plus a few others); anything else gets a
# generated description, which is all a stand-in needs.
CASE_NOTE_TYPES: dict[str, tuple[str, dict[str, str]]] = {
    "GEN": ("General", {"OSE": "Offender Supervisor Entry", "HIS": "History Sheet Entry"}),
    "PRISON": ("Prison", {"RELEASE": "Release"}),
    "TRANSFER": ("Transfer", {"FROMTOL": "Transfer from TOL", "TOL": "Transfer to TOL"}),
    "RESET": ("Resettlement", {"BCST": "Basic Custody Screening Tool"}),
    "ALERT": ("Alert", {"ACTIVE": "Made active", "INACTIVE": "Made inactive"}),
    "OMIC": ("OMiC", {"OPEN_COMM": "Open Case Note", "COMM": "Communication"}),
    "OMIC_OPD": ("OMiC OPD", {"OPD_SCREEN": "OPD Screening"}),
    "KA": ("Key Worker Activity", {"KS": "Key Worker Session", "KE": "Key Worker Entry"}),
    "NEG": ("Negative Behaviour", {"IEP_WARN": "IEP Warning"}),
    "CAB": ("Conduct & Behaviour", {"EDUCATION": "Education"}),
}

ALERT_CODES: dict[str, tuple[str, str, str]] = {
    # code: (alertTypeCode, alertTypeDescription, description)
    "VI": ("V", "Vulnerability", "Victim"),
    "PEEP": ("M", "Medical", "Personal Emergency Evacuation Plan"),
    "HA": ("H", "Self Harm", "ACCT Open (HMPS)"),
    "XA": ("X", "Security", "Arsonist"),
    "DOCGM": ("D", "Security. Do not share with offender", "OCG Nominal - Do not share with offender"),
    "OVI": ("O", "Other", "Violence"),
    "AST": ("AT", "Description of AT", "Description of AST"),
}

# Legacy (NOMIS) ids: unique within the process, starting somewhere random so separate runs do not collide.
_legacy_ids = itertools.count(random.randint(10_000_000, 90_000_000))


def london_now() -> datetime:
    """The current Europe/London wall-clock time, naive, to the second."""
    return datetime.now(LONDON).replace(tzinfo=None, microsecond=0)


def london_now_precise() -> datetime:
    """The current Europe/London wall-clock time, naive, to the microsecond (as the Case Notes API stores times)."""
    return datetime.now(LONDON).replace(tzinfo=None)


def format_local(value: datetime | date | str | None, *, fraction: bool = False) -> str | None:
    """A local date-time as the APIs send it: ``2025-04-22T13:17:53`` (no offset). Aware values go to London time.

    ``fraction``: keep the fractional seconds as Jackson writes a ``LocalDateTime`` (the Case Notes API does):
    ``13:17:53.12`` for 120 ms, nothing when the fraction is zero. Without it, cut to the second (the Alerts API)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(LONDON).replace(tzinfo=None)
        text = value.replace(microsecond=0).isoformat()
        if fraction and value.microsecond:
            text += "." + f"{value.microsecond:06d}".rstrip("0")
        return text
    return datetime(value.year, value.month, value.day).isoformat()


def is_active_on(alert: dict[str, Any], today: date) -> bool:
    """The Alerts API's rule: active when ``activeTo`` is null or after ``today`` (``activeFrom`` does not count)."""
    end = alert.get("activeTo")
    if end is None:
        return True
    try:
        return date.fromisoformat(str(end)[:10]) > today
    except ValueError:
        return True


def format_date(value: date | datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat()


def parse_local(value: str | None) -> datetime | None:
    """Parse an API local date-time (fractions and an offset tolerated; an offset is converted to London time)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(LONDON).replace(tzinfo=None)
    return parsed


def _drop_nulls(record: dict[str, Any]) -> dict[str, Any]:
    cleaned = {k: v for k, v in record.items() if v is not None}
    if isinstance(cleaned.get("amendments"), list):
        cleaned["amendments"] = [
            {k: v for k, v in a.items() if v is not None} if isinstance(a, dict) else a for a in cleaned["amendments"]
        ]
    return cleaned


def make_amendment(
    text: str = "Additional details added.",
    *,
    created_at: datetime | str | None = None,
    author_name: str = "Jane Smith",
    author_username: str = "JSMITH_GEN",
    author_user_id: str | None = "23456",
) -> dict[str, Any]:
    """One case-note amendment as the Case Notes API sends it."""
    return _drop_nulls(
        {
            "creationDateTime": format_local(created_at or london_now_precise(), fraction=True),
            "authorUserName": author_username,
            "authorName": author_name,
            "authorUserId": author_user_id,
            "additionalNoteText": text,
            "id": str(uuid.uuid4()),
        }
    )


def make_case_note(
    noms_number: str = "A1234BC",
    *,
    type: str = "GEN",  # noqa: A002 - the API's field name
    sub_type: str = "OSE",
    text: str = "Case note text written for a test.",
    case_note_id: str | None = None,
    legacy_id: int | None = None,
    occurred_at: datetime | str | None = None,
    created_at: datetime | str | None = None,
    author_name: str = "John Smith",
    author_username: str = "JSMITH_GEN",
    author_user_id: str = "12345",
    location_id: str | None = "LEI",
    sensitive: bool = False,
    system_generated: bool = False,
    amendments: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A ``CaseNote`` JSON dict with sensible defaults (random UUID, unique legacy id, "now" in London time, to the
    microsecond as the API sends it).

    ``fields`` are camelCase overrides applied last; an override of ``None`` removes the field (nulls are omitted).
    """
    type_description, sub_types = CASE_NOTE_TYPES.get(type, (type.replace("_", " ").title(), {}))
    legacy = next(_legacy_ids) if legacy_id is None else legacy_id
    created = created_at or london_now_precise()
    note: dict[str, Any] = {
        "caseNoteId": case_note_id or str(uuid.uuid4()),
        "offenderIdentifier": noms_number.upper(),
        "type": type,
        "typeDescription": type_description,
        "subType": sub_type,
        "subTypeDescription": sub_types.get(sub_type, sub_type.replace("_", " ").title()),
        "source": "INST",
        "creationDateTime": format_local(created, fraction=True),
        "occurrenceDateTime": format_local(occurred_at or created, fraction=True),
        "authorName": author_name,
        "authorUserId": author_user_id,
        "authorUsername": author_username,
        "text": text,
        "locationId": location_id,
        "eventId": legacy,
        "sensitive": sensitive,
        "amendments": list(amendments or []),
        "systemGenerated": system_generated,
        "legacyId": legacy,
    }
    note.update(fields)
    return _drop_nulls(note)


def make_alert(
    prison_number: str = "A1234BC",
    *,
    code: str = "VI",
    description: str | None = "Alert description written for a test.",
    alert_uuid: str | None = None,
    active_from: date | str | None = None,
    active_to: date | str | None = None,
    is_active: bool | None = None,
    created_at: datetime | str | None = None,
    created_by: str = "JSMITH_GEN",
    created_by_display_name: str = "John Smith",
    last_modified_at: datetime | str | None = None,
    last_modified_by: str | None = None,
    last_modified_by_display_name: str | None = None,
    authorised_by: str | None = None,
    prison_code: str | None = "LEI",
    **fields: Any,
) -> dict[str, Any]:
    """An ``Alert`` JSON dict with sensible defaults. ``isActive`` follows the API's rule (``activeTo`` null or after
    today; ``activeFrom`` does not count) unless given.

    ``fields`` are camelCase overrides applied last (nulls are kept, as the Alerts API sends them).
    """
    type_code, type_description, code_description = ALERT_CODES.get(
        code, (code[:1], f"Description of {code[:1]}", f"Description of {code}")
    )
    today = london_now().date()
    start = active_from if active_from is not None else today
    start_date = date.fromisoformat(start) if isinstance(start, str) else start
    end_date = date.fromisoformat(active_to) if isinstance(active_to, str) else active_to
    if is_active is None:
        is_active = end_date is None or end_date > today
    alert: dict[str, Any] = {
        "alertUuid": alert_uuid or str(uuid.uuid4()),
        "prisonNumber": prison_number.upper(),
        "alertCode": {
            "alertTypeCode": type_code,
            "alertTypeDescription": type_description,
            "code": code,
            "description": code_description,
            "canBeAdministered": True,
        },
        "description": description,
        "authorisedBy": authorised_by,
        "activeFrom": format_date(start_date),
        "activeTo": format_date(end_date),
        "isActive": is_active,
        "createdAt": format_local(created_at or london_now()),
        "createdBy": created_by,
        "createdByDisplayName": created_by_display_name,
        "lastModifiedAt": format_local(last_modified_at),
        "lastModifiedBy": last_modified_by,
        "lastModifiedByDisplayName": last_modified_by_display_name,
        "activeToLastSetAt": None,
        "activeToLastSetBy": None,
        "activeToLastSetByDisplayName": None,
        "madeInactiveAt": None,
        "madeInactiveBy": None,
        "madeInactiveByDisplayName": None,
        "prisonCodeWhenCreated": prison_code,
    }
    alert.update(fields)
    return alert


def deactivate_alert(
    alert: dict[str, Any], *, by: str = "JSMITH_GEN", by_display_name: str = "John Smith", when: datetime | None = None
) -> dict[str, Any]:
    """A copy of ``alert`` made inactive today, as the Alerts API records it.

    (activeTo, madeInactive*, lastModified*)
    """
    when = when or london_now()
    updated = copy.deepcopy(alert)
    stamp = format_local(when)
    updated.update(
        {
            "activeTo": format_date(when),
            "isActive": False,
            "lastModifiedAt": stamp,
            "lastModifiedBy": by,
            "lastModifiedByDisplayName": by_display_name,
            "activeToLastSetAt": stamp,
            "activeToLastSetBy": by,
            "activeToLastSetByDisplayName": by_display_name,
            "madeInactiveAt": stamp,
            "madeInactiveBy": by,
            "madeInactiveByDisplayName": by_display_name,
        }
    )
    return updated


class RecordError(ValueError):
    """A record handed to the store lacks its identifiers."""


class SourceStore:
    """Thread-safe in-memory case notes (by UUID, findable by legacy id) and alerts (by UUID)."""

    def __init__(self, today: Callable[[], date] | None = None) -> None:
        # "Today" for the Alerts API's isActive filter (Europe/London); tests may pin it.
        self.today: Callable[[], date] = today or (lambda: london_now().date())
        self._lock = threading.RLock()
        self._case_notes: dict[str, dict[str, Any]] = {}
        self._legacy_index: dict[int, str] = {}
        self._alerts: dict[str, dict[str, Any]] = {}

    # --- case notes -------------------------------------------------------------------------------------------
    def put_case_note(self, note: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace a case note (keyed by ``caseNoteId``). Null fields are dropped. Returns the stored copy."""
        if not isinstance(note, dict):
            raise RecordError("a case note must be a JSON object")
        stored = _drop_nulls(copy.deepcopy(note))
        note_id, person = stored.get("caseNoteId"), stored.get("offenderIdentifier")
        if not isinstance(note_id, str) or not note_id:
            raise RecordError("a case note needs a caseNoteId")
        if not isinstance(person, str) or not person:
            raise RecordError("a case note needs an offenderIdentifier")
        try:
            note_id = str(uuid.UUID(note_id))
        except ValueError:
            raise RecordError("caseNoteId must be a UUID") from None
        stored["caseNoteId"] = note_id
        stored["offenderIdentifier"] = person.upper()
        with self._lock:
            previous = self._case_notes.get(note_id)
            if previous is not None and "legacyId" in previous:
                self._legacy_index.pop(previous["legacyId"], None)
            self._case_notes[note_id] = stored
            legacy = stored.get("legacyId")
            if isinstance(legacy, int) and not isinstance(legacy, bool):
                self._legacy_index[legacy] = note_id
        return copy.deepcopy(stored)

    def put_case_notes(self, notes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.put_case_note(note) for note in notes]

    def get_case_note(self, identifier: str | int, person: str | None = None) -> dict[str, Any] | None:
        """A case note by UUID or legacy id; with ``person``, only if it belongs to that person."""
        with self._lock:
            note_id: str | None
            if isinstance(identifier, int) or (isinstance(identifier, str) and identifier.lstrip("-").isdigit()):
                note_id = self._legacy_index.get(int(identifier))
            else:
                try:
                    note_id = str(uuid.UUID(str(identifier)))
                except ValueError:
                    note_id = None
            note = self._case_notes.get(note_id) if note_id else None
            if note is None or (person is not None and note["offenderIdentifier"] != person.upper()):
                return None
            return copy.deepcopy(note)

    def delete_case_note(self, case_note_id: str) -> bool:
        with self._lock:
            note = self._case_notes.pop(str(case_note_id), None)
            if note is not None and "legacyId" in note:
                self._legacy_index.pop(note["legacyId"], None)
            return note is not None

    def move_case_notes(
        self, from_person: str, to_person: str, case_note_ids: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Move case notes of ``from_person`` (all of them, or those of ``case_note_ids``) to ``to_person``, as the
        Case Notes API does on a move or a merge of prison records: same id, legacy id, creation time, text and
        amendments; only ``offenderIdentifier`` changes, so the note is served under the new NOMS number (and 404
        under the old one). Returns the moved notes."""
        source, target = from_person.upper(), to_person.upper()
        wanted = None if case_note_ids is None else {str(i) for i in case_note_ids}
        moved = []
        with self._lock:
            for note_id, note in self._case_notes.items():
                if note["offenderIdentifier"] == source and (wanted is None or note_id in wanted):
                    note["offenderIdentifier"] = target
                    moved.append(copy.deepcopy(note))
        return moved

    def case_notes(self, person: str | None = None) -> list[dict[str, Any]]:
        """All case notes (of ``person`` if given), in insertion order."""
        with self._lock:
            return [
                copy.deepcopy(n)
                for n in self._case_notes.values()
                if person is None or n["offenderIdentifier"] == person.upper()
            ]

    # --- alerts -----------------------------------------------------------------------------------------------
    def put_alert(self, alert: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace an alert (keyed by ``alertUuid``). Returns the stored copy."""
        if not isinstance(alert, dict):
            raise RecordError("an alert must be a JSON object")
        stored = copy.deepcopy(alert)
        alert_id, person = stored.get("alertUuid"), stored.get("prisonNumber")
        if not isinstance(alert_id, str) or not alert_id:
            raise RecordError("an alert needs an alertUuid")
        if not isinstance(person, str) or not person:
            raise RecordError("an alert needs a prisonNumber")
        try:
            alert_id = str(uuid.UUID(alert_id))
        except ValueError:
            raise RecordError("alertUuid must be a UUID") from None
        stored["alertUuid"] = alert_id
        stored["prisonNumber"] = person.upper()
        with self._lock:
            self._alerts[alert_id] = stored
        return copy.deepcopy(stored)

    def put_alerts(self, alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.put_alert(alert) for alert in alerts]

    def resync_alerts(self, prison_number: str, alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace every alert of ``prison_number`` by copies of ``alerts`` under it, as the Alerts API's resync
        from NOMIS does (after a merge of prison records, for instance): each copy has a new ``alertUuid`` and no
        ``prisonCodeWhenCreated``; dates, codes, descriptions and authors are kept. Returns the new alerts."""
        person = prison_number.upper()
        copies = []
        for alert in alerts:
            resynced = copy.deepcopy(alert)
            resynced.update(alertUuid=str(uuid.uuid4()), prisonNumber=person)
            resynced.pop("prisonCodeWhenCreated", None)
            copies.append(resynced)
        with self._lock:
            for alert_id in [k for k, a in self._alerts.items() if a["prisonNumber"] == person]:
                del self._alerts[alert_id]
        return [self.put_alert(alert) for alert in copies]

    def get_alert(self, alert_uuid: str) -> dict[str, Any] | None:
        try:
            key = str(uuid.UUID(str(alert_uuid)))
        except ValueError:
            return None
        with self._lock:
            alert = self._alerts.get(key)
            return copy.deepcopy(alert) if alert is not None else None

    def delete_alert(self, alert_uuid: str) -> bool:
        with self._lock:
            return self._alerts.pop(str(alert_uuid), None) is not None

    def alerts(self, prison_number: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(a)
                for a in self._alerts.values()
                if prison_number is None or a["prisonNumber"] == prison_number.upper()
            ]

    # --- whole store ------------------------------------------------------------------------------------------
    def clear(self) -> None:
        with self._lock:
            self._case_notes.clear()
            self._legacy_index.clear()
            self._alerts.clear()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"caseNotes": len(self._case_notes), "alerts": len(self._alerts)}


__all__ = [
    "ALERT_CODES",
    "CASE_NOTE_TYPES",
    "RecordError",
    "SourceStore",
    "deactivate_alert",
    "format_date",
    "format_local",
    "is_active_on",
    "london_now",
    "london_now_precise",
    "make_alert",
    "make_amendment",
    "make_case_note",
    "parse_local",
]
