"""Business rules of the reference service, as plain functions (reference-behaviour §3.2-§5.5).

Pure: no Dagster, AWS, HTTP or database. Source records (case notes, alerts) come in as parsed API JSON and go
out as :class:`ContactDraft` -- everything Delius needs to know about the source item, nothing about Delius.
Timestamps here are naive Europe/London wall-clock datetimes, as Delius stores them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LONDON = ZoneInfo("Europe/London")

CASE_NOTE_URN_PREFIX = "urn:uk:gov:hmpps:prison-case-note:"
ALERT_URN_PREFIX = "urn:uk:gov:hmpps:prisoner-alert:"
DEFAULT_CONTACT_TYPE_CODE = "NOMISD"      # unmapped case notes (§5.5)
DATA_CLEANSE_CONTACT_TYPE_CODE = "OTHER"  # design.md §2
OCG_ALERT_CODE = "DOCGM"
OCG_TEXT = "Do not share with offender and OCG Nominal"
UNKNOWN_ESTABLISHMENT = "UNK"
DESCRIPTION_MAX_BYTES = 200
STAFF_NAME_MAX_CHARS = 35                 # staff.forename / staff.surname are varchar(35)

# Ignore reasons (telemetry `CaseNoteIgnored.reason`), verbatim from the reference (§3.2)
REASON_BLANK_TEXT = "case note text is empty"
REASON_IN_TRANSIT = "Prisoner being transferred"
REASON_TEST_INSTITUTION = "Institution used for test purposes"
REASON_OCG = "Filtered due to data sharing restrictions"


class InvalidSourceRecord(ValueError):
    """A case note or alert from the API that cannot be mapped (missing required field, bad date...).

    The message names the field, never its value.
    """


class ContactKind(str, enum.Enum):
    CASE_NOTE = "CaseNote"
    ACTIVE_ALERT = "ActiveAlert"
    INACTIVE_ALERT = "InactiveAlert"


@dataclass(frozen=True)
class Amendment:
    created: datetime | None      # naive London
    author_name: str
    text: str


@dataclass(frozen=True)
class CaseNote:
    """The fields of the Case Notes API `CaseNote` the integration uses (upstream-apis §2.2)."""

    case_note_id: str             # UUID (`caseNoteId`, alias `id`)
    offender_identifier: str      # NOMS number, upper-cased
    type: str
    sub_type: str
    created: datetime             # `creationDateTime`, naive London
    occurred: datetime            # `occurrenceDateTime`, naive London
    author_name: str
    text: str
    location_id: str              # default "UNK"
    legacy_id: int | None         # `legacyId`, else `eventId`
    amendments: tuple[Amendment, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> "CaseNote":
        """Parse API JSON; date-times without offset are Europe/London, with offset are converted to it.

        Required: ``caseNoteId`` (alias ``id``), ``offenderIdentifier``, ``type``, ``subType``,
        ``creationDateTime``. ``occurrenceDateTime`` falls back to ``creationDateTime``; ``text`` null -> "";
        ``locationId`` absent/null/blank -> "UNK"; legacy id = ``legacyId`` else ``eventId`` (number or numeric
        string, may be negative). Amendments keep the API order (oldest first); their ``creationDateTime`` is
        optional. Unknown fields are ignored. Raises :class:`InvalidSourceRecord` naming the bad field.
        """
        what = "case note"
        if not isinstance(data, Mapping):
            raise InvalidSourceRecord("case note is not a JSON object")
        case_note_id = _identifier(data, ("caseNoteId", "id"), what)
        offender = _required_str(data, "offenderIdentifier", what).upper()
        created = _required_datetime(data, "creationDateTime", what)
        occurred = _optional_datetime(data, "occurrenceDateTime", what) or created
        text = data.get("text")
        if text is None:
            text = ""
        elif not isinstance(text, str):
            raise InvalidSourceRecord("case note text is not a string")
        location = data.get("locationId")
        if location is not None and not isinstance(location, str):
            raise InvalidSourceRecord("case note locationId is not a string")
        location = location.strip() if location and location.strip() else UNKNOWN_ESTABLISHMENT
        legacy_id = _legacy_id(data, "legacyId", what)
        if legacy_id is None:
            legacy_id = _legacy_id(data, "eventId", what)
        raw_amendments = data.get("amendments")
        if raw_amendments is None:
            raw_amendments = []
        if not isinstance(raw_amendments, list):
            raise InvalidSourceRecord("case note amendments is not a list")
        amendments = tuple(_amendment(item) for item in raw_amendments)
        return cls(
            case_note_id=case_note_id,
            offender_identifier=offender,
            type=_required_str(data, "type", what),
            sub_type=_required_str(data, "subType", what),
            created=created,
            occurred=occurred,
            author_name=_optional_str(data, "authorName", what) or "",
            text=text,
            location_id=location,
            legacy_id=legacy_id,
            amendments=amendments,
        )


@dataclass(frozen=True)
class Alert:
    """The fields of the Alerts API `Alert` the integration uses (upstream-apis §3.1)."""

    alert_uuid: str
    prison_number: str            # upper-cased
    alert_type_code: str
    alert_type_description: str
    code: str
    code_description: str
    description: str | None
    active_from: date
    active_to: date | None
    is_active: bool
    created_at: datetime          # naive London
    created_by_display_name: str | None
    last_modified_at: datetime | None
    last_modified_by_display_name: str | None
    active_to_last_set_at: datetime | None
    prison_code_when_created: str | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> "Alert":
        """Parse Alerts API JSON (upstream-apis §3.1). Unknown fields are ignored, optional ones may be missing.

        Required: ``alertUuid``, ``prisonNumber``, ``alertCode`` with ``alertTypeCode``, ``alertTypeDescription``,
        ``code`` and ``description``, ``activeFrom`` (``yyyy-MM-dd``), ``isActive`` (boolean), ``createdAt``.
        ``prisonCodeWhenCreated`` is optional here (a blank one counts as null); :func:`draft_from_alert` rejects
        a missing one. Raises :class:`InvalidSourceRecord` naming the bad field.
        """
        what = "alert"
        if not isinstance(data, Mapping):
            raise InvalidSourceRecord("alert is not a JSON object")
        alert_uuid = _identifier(data, ("alertUuid",), what)
        prison_number = _required_str(data, "prisonNumber", what).upper()
        code = data.get("alertCode")
        if not isinstance(code, Mapping):
            raise InvalidSourceRecord("alert has no alertCode")
        is_active = data.get("isActive")
        if not isinstance(is_active, bool):
            raise InvalidSourceRecord("alert has no isActive" if is_active is None else "alert isActive is not a boolean")
        prison_code = _optional_str(data, "prisonCodeWhenCreated", what)
        return cls(
            alert_uuid=alert_uuid,
            prison_number=prison_number,
            alert_type_code=_required_str(code, "alertTypeCode", "alert alertCode"),
            alert_type_description=_required_str(code, "alertTypeDescription", "alert alertCode", strip=False),
            code=_required_str(code, "code", "alert alertCode"),
            code_description=_required_str(code, "description", "alert alertCode", strip=False),
            description=_optional_str(data, "description", what, strip=False, blank_is_none=False),
            active_from=_required_date(data, "activeFrom", what),
            active_to=_optional_date(data, "activeTo", what),
            is_active=is_active,
            created_at=_required_datetime(data, "createdAt", what),
            created_by_display_name=_optional_str(data, "createdByDisplayName", what),
            last_modified_at=_optional_datetime(data, "lastModifiedAt", what),
            last_modified_by_display_name=_optional_str(data, "lastModifiedByDisplayName", what),
            active_to_last_set_at=_optional_datetime(data, "activeToLastSetAt", what),
            prison_code_when_created=prison_code,
        )


@dataclass(frozen=True)
class ContactDraft:
    """What one source item says a Delius contact should be (the reference's `DeliusCaseNote`, §5.1)."""

    urn: str
    kind: ContactKind
    noms_number: str
    source_id: str                # case-note UUID or alert UUID
    legacy_id: int | None         # NOMIS case-note id (case notes only): matches stage-2 rows
    type: str                     # e.g. "NEG" or "ALERT"
    sub_type: str                 # e.g. "IEP_WARN" or "ACTIVE"
    content: str
    contact_datetime: datetime    # naive London
    system_datetime: datetime     # naive London: the ordering guard
    staff_forename: str
    staff_surname: str
    establishment_code: str
    alert_description: str | None = None

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
    """§5.3. Raises InvalidSourceRecord("Unable to verify establishment for alert") without a prison code.

    Contact date = ``activeFrom`` when active, else ``activeTo`` -- or ``activeFrom`` when an inactive alert has
    no ``activeTo`` (the reference would fail; the start date is the only date the alert certainly has). Time of
    day = that of the latest of ``activeToLastSetAt``, ``lastModifiedAt`` and ``createdAt``. System time =
    ``lastModifiedAt`` else ``createdAt``. Staff = ``lastModifiedByDisplayName`` else ``createdByDisplayName``
    (blank counts as missing), split at the last space by :func:`parse_alert_staff_name`. Content = ``description``
    or ``""``.
    """
    if not alert.prison_code_when_created or not alert.prison_code_when_created.strip():
        raise InvalidSourceRecord("Unable to verify establishment for alert")
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
        establishment_code=alert.prison_code_when_created.strip(),
        alert_description=(
            f"Alert {alert.alert_type_description} and {alert.code_description} made {state}."
        ),
    )


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


def to_london(value: str | datetime) -> datetime:
    """ISO date-time -> naive Europe/London. No offset = already London wall clock; with offset/Z = converted.

    Accepts ``YYYY-MM-DDTHH:MM[:SS[.f{1,9}]]`` with an optional ``Z`` or ``+HH:MM`` offset and an optional trailing
    ``[Region/City]`` zone id (ignored when there is an offset; used as the zone when there is none). Fractions
    beyond microseconds are truncated. Aware datetimes are converted, naive ones returned as they are. Plain dates
    and anything else raise :class:`InvalidSourceRecord` (the message never holds the value).
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=None)
        return value.astimezone(LONDON).replace(tzinfo=None)
    if not isinstance(value, str):
        raise InvalidSourceRecord("not an ISO date-time")
    match = _ISO_DATETIME.fullmatch(value.strip())
    if match is None:
        raise InvalidSourceRecord("not an ISO date-time")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m, off_s, zone_id = match.groups()
    try:
        naive = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
            int((fraction or "").ljust(6, "0")[:6]),
        )
        if zulu:
            tz: Any = timezone.utc
        elif sign:
            offset = timedelta(hours=int(off_h), minutes=int(off_m), seconds=int(off_s or 0))
            tz = timezone(-offset if sign == "-" else offset)
        elif zone_id:
            tz = ZoneInfo(zone_id)
        else:
            return naive
    except (ValueError, ZoneInfoNotFoundError):
        raise InvalidSourceRecord("not a valid date-time") from None
    return naive.replace(tzinfo=tz).astimezone(LONDON).replace(tzinfo=None)


def format_delius_datetime(value: datetime) -> str:
    """``dd/MM/yyyy HH:mm:ss`` (the newest reference format, §13.3). Aware values are converted to London first."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(LONDON)
    return (
        f"{value.day:02d}/{value.month:02d}/{value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )


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
_ISO_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2})(?::?(\d{2}))?)?(?:\[([^\]]+)\])?"
)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
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


def _identifier(data: Mapping[str, Any], keys: tuple[str, ...], what: str) -> str:
    for key in keys:
        value = data.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise InvalidSourceRecord(f"{what} has no {keys[0]}")


def _required_str(data: Mapping[str, Any], key: str, what: str, strip: bool = True) -> str:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidSourceRecord(f"{what} has no {key}")
    if not isinstance(value, str):
        raise InvalidSourceRecord(f"{what} {key} is not a string")
    return value.strip() if strip else value


def _optional_str(
    data: Mapping[str, Any], key: str, what: str, strip: bool = True, blank_is_none: bool = True
) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSourceRecord(f"{what} {key} is not a string")
    if blank_is_none and not value.strip():
        return None
    return value.strip() if strip else value


def _optional_datetime(data: Mapping[str, Any], key: str, what: str) -> datetime | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return to_london(value)
    except InvalidSourceRecord:
        raise InvalidSourceRecord(f"{what} has an invalid {key}") from None


def _required_datetime(data: Mapping[str, Any], key: str, what: str) -> datetime:
    value = _optional_datetime(data, key, what)
    if value is None:
        raise InvalidSourceRecord(f"{what} has no {key}")
    return value


def _optional_date(data: Mapping[str, Any], key: str, what: str) -> date | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidSourceRecord(f"{what} has an invalid {key}")


def _required_date(data: Mapping[str, Any], key: str, what: str) -> date:
    value = _optional_date(data, key, what)
    if value is None:
        raise InvalidSourceRecord(f"{what} has no {key}")
    return value


def _legacy_id(data: Mapping[str, Any], key: str, what: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidSourceRecord(f"{what} has an invalid {key}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        if not value.strip():
            return None
        if re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value.strip())
    raise InvalidSourceRecord(f"{what} has an invalid {key}")


def _amendment(item: Any) -> Amendment:
    what = "case note amendment"
    if not isinstance(item, Mapping):
        raise InvalidSourceRecord("case note amendment is not a JSON object")
    text = item.get("additionalNoteText")
    if text is None:
        text = ""
    elif not isinstance(text, str):
        raise InvalidSourceRecord("case note amendment additionalNoteText is not a string")
    return Amendment(
        created=_optional_datetime(item, "creationDateTime", what),
        author_name=_optional_str(item, "authorName", what, strip=False, blank_is_none=False) or "",
        text=text,
    )
