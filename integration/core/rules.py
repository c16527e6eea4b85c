"""The business rules of the service we replace, as plain functions (docs/rules.md §3-§5).

Source records (``records.CaseNote``, ``records.Alert``) go in; a :class:`ContactDraft` -- everything Delius needs to
know about the source item, nothing about Delius -- or the reason the item is not written comes out
(:func:`map_case_note`, :func:`map_alert`: the one place that decides). Timestamps are naive Europe/London
wall-clock datetimes, as Delius stores them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .records import UNKNOWN_ESTABLISHMENT, Alert, CaseNote, InvalidSourceRecord
from .text import clean
from .times import format_delius_datetime

CASE_NOTE_URN_PREFIX = "urn:uk:gov:hmpps:prison-case-note:"
ALERT_URN_PREFIX = "urn:uk:gov:hmpps:prisoner-alert:"
DEFAULT_CONTACT_TYPE_CODE = "NOMISD"  # unmapped case notes (§5.5)
DATA_CLEANSE_CONTACT_TYPE_CODE = "OTHER"  # docs/delius-contract.md
OCG_ALERT_CODE = "DOCGM"
OCG_TEXT = "Do not share with offender and OCG Nominal"
DESCRIPTION_MAX_BYTES = 200
STAFF_NAME_MAX_CHARS = 35  # staff.forename / staff.surname are varchar(35)

# Ignore reasons (telemetry `CaseNoteIgnored.reason`), verbatim from the reference (§3.2)
REASON_BLANK_TEXT = "case note text is empty"
REASON_IN_TRANSIT = "Prisoner being transferred"
REASON_TEST_INSTITUTION = "Institution used for test purposes"
REASON_OCG = "Filtered due to data sharing restrictions"
# An alert without a prison code, when Delius has no institution for UNK either (docs/rules.md §5.3, §5.6)
REASON_ALERT_ESTABLISHMENT = "Unable to verify establishment for alert"


class ContactKind(str, enum.Enum):
    CASE_NOTE = "CaseNote"
    ACTIVE_ALERT = "ActiveAlert"
    INACTIVE_ALERT = "InactiveAlert"


@dataclass(frozen=True)
class ContactDraft:
    """What one source item says a Delius contact should be (the reference's `DeliusCaseNote`, §5.1)."""

    urn: str
    kind: ContactKind
    noms_number: str
    source_id: str  # case-note UUID or alert UUID
    legacy_id: int | None  # NOMIS case-note id (case notes only): matches stage-2 rows
    type: str  # e.g. "NEG" or "ALERT"
    sub_type: str  # e.g. "IEP_WARN" or "ACTIVE"
    content: str
    contact_datetime: datetime  # naive London
    system_datetime: datetime  # naive London: the ordering guard
    staff_forename: str
    staff_surname: str
    establishment_code: str
    alert_description: str | None = None
    replaced_characters: int = 0  # NUL and lone surrogates replaced by U+FFFD (text.clean) before Delius sees them

    @property
    def type_key(self) -> str:
        """The contact-type lookup key, e.g. ``"NEG IEP_WARN"`` or ``"ALERT ACTIVE"``."""
        return f"{self.type} {self.sub_type}"

    @property
    def is_alert(self) -> bool:
        return self.kind is not ContactKind.CASE_NOTE

    @property
    def notes(self) -> str:
        return notes_text(self)


def case_note_urn(case_note_id: str) -> str:
    return f"{CASE_NOTE_URN_PREFIX}{case_note_id}"


def alert_urn(alert_uuid: str, active: bool) -> str:
    return f"{ALERT_URN_PREFIX}{'active' if active else 'inactive'}:{alert_uuid}"


def case_note_ignore_reason(note: CaseNote) -> str | None:
    """First matching content filter (§3.2): blank text, TRN, test institution (ZZG*), OCG text; else None."""
    if not note.text or not note.text.strip():
        return REASON_BLANK_TEXT
    if note.location_id == "TRN":
        return REASON_IN_TRANSIT
    if note.location_id.startswith("ZZG"):
        return REASON_TEST_INSTITUTION
    if OCG_TEXT in note.text:
        return REASON_OCG
    return None


def alert_ignore_reason(alert: Alert) -> str | None:
    """``"OCG nominal alert (DOCGM)"`` for DOCGM alerts (§3.3), else None."""
    if alert.code == OCG_ALERT_CODE:
        return f"OCG nominal alert ({OCG_ALERT_CODE})"
    return None


def draft_from_case_note(note: CaseNote) -> ContactDraft:
    """§5.2: content with amendments, contact time = occurrence, system time = latest amendment or creation.

    Each amendment appends ``"\\n[{author} updated the case notes on {dd/MM/yyyy HH:mm:ss}]\\n{text}"``; an
    amendment without ``creationDateTime`` renders an empty date (``"... updated the case notes on ]"``) and does not
    take part in the system-time choice. For a stage-3 ``ALERT`` case note, the contact time is the occurrence
    date at the creation time of day, and the alert description is the first line of the text.
    """
    content = note.text + "".join(
        f"\n[{a.author_name} updated the case notes on "
        f"{format_delius_datetime(a.created) if a.created is not None else ''}]\n{a.text}"
        for a in note.amendments
    )
    amendment_times = [a.created for a in note.amendments if a.created is not None]
    system_datetime = max(amendment_times) if amendment_times else note.created
    alert_description = None
    contact_datetime = note.occurred
    if note.type == "ALERT":
        contact_datetime = datetime.combine(note.occurred.date(), note.created.time())
        alert_description = _LINE_BREAK.split(note.text, maxsplit=1)[0]
    forename, surname = parse_staff_name(note.author_name)
    return ContactDraft(
        urn=case_note_urn(note.case_note_id),
        kind=ContactKind.CASE_NOTE,
        noms_number=note.offender_identifier,
        source_id=note.case_note_id,
        legacy_id=note.legacy_id,
        type=note.type,
        sub_type=note.sub_type,
        content=content,
        contact_datetime=contact_datetime,
        system_datetime=system_datetime,
        staff_forename=forename,
        staff_surname=surname,
        establishment_code=note.location_id,
        alert_description=alert_description,
    )


def draft_from_alert(alert: Alert) -> ContactDraft:
    """§5.3. Establishment = ``prisonCodeWhenCreated``, else ``UNK``: alerts rebuilt by a NOMIS resync have no prison
    code, and go through the ``UNK`` path of §5.4 and §5.6 (the notes say the establishment was not available; the
    merge needs an institution for ``UNK`` in Delius, else fails with :data:`REASON_ALERT_ESTABLISHMENT`).

    Contact date = ``activeFrom`` when active, else ``activeTo`` -- or ``activeFrom`` when an inactive alert has
    no ``activeTo`` (the reference would fail; the start date is the only date the alert certainly has). Time of
    day = that of the latest of ``activeToLastSetAt``, ``lastModifiedAt`` and ``createdAt``. System time =
    ``lastModifiedAt`` else ``createdAt``. Staff = ``lastModifiedByDisplayName`` else ``createdByDisplayName``
    (blank counts as missing), split at the last space by :func:`parse_alert_staff_name`. Content = ``description``
    or ``""``.
    """
    prison_code = (alert.prison_code_when_created or "").strip() or UNKNOWN_ESTABLISHMENT
    active = alert.is_active
    contact_date = alert.active_from if active else (alert.active_to or alert.active_from)
    times = [t for t in (alert.active_to_last_set_at, alert.last_modified_at, alert.created_at) if t is not None]
    contact_datetime = datetime.combine(contact_date, max(times).time())
    staff_name = alert.last_modified_by_display_name
    if not staff_name or not staff_name.strip():
        staff_name = alert.created_by_display_name
    forename, surname = parse_alert_staff_name(staff_name)
    state = "active" if active else "inactive"
    return ContactDraft(
        urn=alert_urn(alert.alert_uuid, active),
        kind=ContactKind.ACTIVE_ALERT if active else ContactKind.INACTIVE_ALERT,
        noms_number=alert.prison_number,
        source_id=alert.alert_uuid,
        legacy_id=None,
        type="ALERT",
        sub_type="ACTIVE" if active else "INACTIVE",
        content=alert.description or "",
        contact_datetime=contact_datetime,
        system_datetime=alert.last_modified_at or alert.created_at,
        staff_forename=forename,
        staff_surname=surname,
        establishment_code=prison_code,
        alert_description=(f"Alert {alert.alert_type_description} and {alert.code_description} made {state}."),
    )


_TEXT_FIELDS = (
    "source_id",
    "type",
    "sub_type",
    "content",
    "staff_forename",
    "staff_surname",
    "establishment_code",
    "alert_description",
)


def storable(draft: ContactDraft) -> ContactDraft:
    """The draft with NUL and lone surrogates replaced in every text it carries (docs/decisions.md, "Text"): no
    database stores them (PostgreSQL refuses NUL, UTF-8 cannot encode a surrogate). The URN follows the cleaned id;
    ``replaced_characters`` counts what was replaced."""
    changes: dict[str, Any] = {}
    replaced = 0
    for name in _TEXT_FIELDS:
        value = getattr(draft, name)
        if value is None:
            continue
        cleaned, count = clean(value)
        if count:
            changes[name] = cleaned
            replaced += count
    if not replaced:
        return draft
    if "source_id" in changes:
        changes["urn"] = clean(draft.urn)[0]
    return replace(draft, **changes, replaced_characters=draft.replaced_characters + replaced)


def notes_text(draft: ContactDraft) -> str:
    """§5.4: ``"{type} {subType}"`` + UNK line + alert description line + ``"\\n"`` + content. Never truncated."""
    extra = ""
    if draft.establishment_code == UNKNOWN_ESTABLISHMENT:
        extra += "\n" + _UNKNOWN_ESTABLISHMENT_NOTE
    if draft.alert_description and draft.alert_description.strip():
        extra += "\n" + draft.alert_description
    return f"{draft.type_key}{extra}\n{draft.content}"


def pad_notes(new_notes: str, existing_notes: str | None) -> str:
    """Right-pad with spaces to at least the existing length, so stored notes never get shorter (§5.4)."""
    if not existing_notes:
        return new_notes
    return new_notes.ljust(len(existing_notes))


def contact_description(draft: ContactDraft, contact_type_code: str) -> str | None:
    """§5.5: alerts -> "NOMIS " + alert description (200-byte truncation with " ~"); RESET BCST -> pathway text;
    NOMISD -> "NOMIS Case Note - {type} - {subType}"; otherwise None. Always <= 200 UTF-8 bytes.

    The checks run in the reference's order: alert type key first, then RESET BCST (no pathway -> None, even when
    the contact type is NOMISD), then NOMISD. The BCST pathway is the first ``"Case note summary from <Word>"`` in
    the content, matched case-insensitively (phrase and word).
    """
    if draft.type_key in _ALERT_TYPE_KEYS:
        return truncate_utf8(f"NOMIS {draft.alert_description or ''}")
    if draft.type == "RESET" and draft.sub_type == "BCST":
        pathway = _bcst_pathway(draft.content)
        return truncate_utf8(f"BCST case note for {pathway}") if pathway else None
    if contact_type_code == DEFAULT_CONTACT_TYPE_CODE:
        return truncate_utf8(f"NOMIS Case Note - {draft.type} - {draft.sub_type}")
    return None


def truncate_utf8(text: str, max_bytes: int = DESCRIPTION_MAX_BYTES) -> str:
    """Unchanged if it fits in ``max_bytes``; else keep characters while the byte count stays below
    ``max_bytes - 1`` and append ``" ~"``."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    kept: list[str] = []
    count = 0
    for char in text:
        count += len(char.encode("utf-8", "surrogatepass"))
        if count >= max_bytes - 1:
            break
        kept.append(char)
    return "".join(kept) + " ~"


def parse_staff_name(author_name: str | None) -> tuple[str, str]:
    """Case-note author (§5.2): (forename, surname): "Surname, Forename" comma rule first, else first and last
    whitespace tokens; one word -> both the same. Each part trimmed and cut to 35 characters. Blank ->
    ("Unknown", "Unknown").

    With a comma, the forename is the text after the last comma and the surname the text before it; if one side
    is blank the other is used for both (``"Smith,"`` -> ``("Smith", "Smith")``).
    """
    if author_name is None or not author_name.strip():
        return (_UNKNOWN_NAME, _UNKNOWN_NAME)
    if "," in author_name:
        return _comma_name(author_name)
    tokens = author_name.split()
    return _cut_name(tokens[0], tokens[-1])


def parse_alert_staff_name(display_name: str | None) -> tuple[str, str]:
    """Alert author (§5.3): (forename, surname) split at the last space: ``"Mary Ann Smith"`` ->
    ``("Mary Ann", "Smith")``; one word -> both the same. Blank -> ("Unknown", "Unknown").

    Runs of whitespace (spaces, tabs) count as one space and the ends are trimmed, so the forename keeps every word
    but the last, single-spaced. A comma form ``"Smith, Mary"`` is read as "Surname, Forename" exactly as for case
    notes (:func:`parse_staff_name`): both reference parsers handle it first. Each part is cut to 35 characters.
    """
    if display_name is None or not display_name.strip():
        return (_UNKNOWN_NAME, _UNKNOWN_NAME)
    if "," in display_name:
        return _comma_name(display_name)
    forename, _, surname = " ".join(display_name.split()).rpartition(" ")
    return _cut_name(forename or surname, surname)


def _comma_name(name: str) -> tuple[str, str]:
    surname, _, forename = name.rpartition(",")
    forename, surname = forename.strip(), surname.strip()
    if not forename and not surname:
        return (_UNKNOWN_NAME, _UNKNOWN_NAME)
    return _cut_name(forename or surname, surname or forename)


def _cut_name(forename: str, surname: str) -> tuple[str, str]:
    return (forename[:STAFF_NAME_MAX_CHARS].strip(), surname[:STAFF_NAME_MAX_CHARS].strip())


def data_cleanse_notes(now: datetime) -> str:
    """Notes of the Data Cleanse contact (§6.3)."""
    return (
        f"On {format_delius_datetime(now)} case notes from Prison associated with a NOMS number that had been "
        "mistakenly associated with this case record were removed."
    )


# --- private helpers ------------------------------------------------------------------------------------------

_UNKNOWN_NAME = "Unknown"
_UNKNOWN_ESTABLISHMENT_NOTE = (
    "Establishment details were not available when this contact was created. "
    "Please refer to throughcare history for location details if required."
)
_ALERT_TYPE_KEYS = frozenset({"ALERT ACTIVE", "ALERT INACTIVE"})
_LINE_BREAK = re.compile(r"\r\n|\n|\r")
_BCST_PATHWAY = re.compile(r"Case note summary from (\w+)", re.IGNORECASE | re.ASCII)
_BCST_PATHWAYS = {
    "accommodation": "Accommodation",
    "attitudes": "Attitudes, thinking and behaviour",
    "children": "Children, families and community",
    "drugs": "Drugs and alcohol",
    "education": "Education, skills and work",
    "finance": "Finance and ID",
    "health": "Health",
}


def _bcst_pathway(content: str) -> str | None:
    """Pathway label from the first ``Case note summary from <Word>`` in ``content`` (reference ``BcstPathway``)."""
    match = _BCST_PATHWAY.search(content)
    if match is None:
        return None
    return _BCST_PATHWAYS.get(match.group(1).lower())


# --- one source record -> a draft, or why not -----------------------------------------------------------------


@dataclass(frozen=True)
class Mapped:
    """What one source record from an API becomes: a draft to merge, or the reason it is not written.

    Exactly one of ``draft``, ``ignored`` (a content filter matched: deliberately never written) and ``invalid`` (the
    record cannot be mapped: the field is named, never its value) is set. ``urn`` is known whenever the record has an
    id, so that an invalid record can still be reported and reconciled by its URN. ``record`` is the parsed record
    whenever it could be parsed (its ids, codes and dates make the telemetry properties, ``core/telemetry.py``).
    """

    urn: str | None
    source_id: str
    draft: ContactDraft | None = None
    ignored: str | None = None
    invalid: str | None = None
    record: CaseNote | Alert | None = None


def map_case_note(raw: Mapping[str, Any]) -> Mapped:
    """A Case Notes API record: parsed, content-filtered (§3.2) and mapped (§5.2)."""
    raw_id = _record_id(raw.get("caseNoteId") or raw.get("id")) if isinstance(raw, Mapping) else None
    source_id = raw_id if raw_id is not None else "unknown"
    urn = case_note_urn(source_id) if raw_id is not None else None
    note: CaseNote | None = None
    try:
        note = CaseNote.from_api(raw)
        reason = case_note_ignore_reason(note)
        if reason:
            note_id = clean(note.case_note_id)[0]
            return Mapped(case_note_urn(note_id), note_id, ignored=reason, record=note)
        draft = storable(draft_from_case_note(note))
    except InvalidSourceRecord as exc:
        return Mapped(urn, source_id, invalid=str(exc), record=note)
    return Mapped(draft.urn, draft.source_id, draft=draft, record=note)


def map_alert(raw: Mapping[str, Any]) -> Mapped:
    """An Alerts API record: parsed, filtered (§3.3) and mapped (§5.3)."""
    raw_id = _record_id(raw.get("alertUuid")) if isinstance(raw, Mapping) else None
    source_id = raw_id if raw_id is not None else "unknown"
    active = bool(raw.get("isActive")) if isinstance(raw, Mapping) else False
    urn = alert_urn(source_id, active) if raw_id is not None else None
    alert: Alert | None = None
    try:
        alert = Alert.from_api(raw)
        reason = alert_ignore_reason(alert)
        if reason:
            alert_uuid = clean(alert.alert_uuid)[0]
            return Mapped(alert_urn(alert_uuid, alert.is_active), alert_uuid, ignored=reason, record=alert)
        draft = storable(draft_from_alert(alert))
    except InvalidSourceRecord as exc:
        return Mapped(urn, source_id, invalid=str(exc), record=alert)
    return Mapped(draft.urn, draft.source_id, draft=draft, record=alert)


def _record_id(value: Any) -> str | None:
    """The id of a record as far as it can be read, for reporting one that is invalid: a string (cleaned) or an
    integer; anything else (an object, a list, a boolean) is no id."""
    if isinstance(value, str):
        return clean(value)[0]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # more digits than int -> str allows
            return None
    return None
