"""Source records as the upstream APIs serve them: the Case Notes API `CaseNote` and the Alerts API `Alert`.

Pure parsing of API JSON into typed records; anything unusable raises :class:`InvalidSourceRecord`, whose message
names the field and never its value (values may be personal data). Times become naive Europe/London datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .times import NotADateTime, to_london

UNKNOWN_ESTABLISHMENT = "UNK"
LEGACY_ID_MIN, LEGACY_ID_MAX = -(2**63), 2**63 - 1  # contact.nomis_case_note_id: a signed 64-bit integer
_LEGACY_ID_TEXT = re.compile(r"[+-]?[0-9]{1,19}")  # ASCII digits only: int() also reads other scripts' digits
# The person of a record: ASCII letters and digits that fit offender.noms_number (7), checked before upper-casing
# (str.upper turns some non-ASCII letters into ASCII ones). Real ones look like A1234BC; the APIs' own examples use
# AA0001A (docs/upstream-apis.md), so the record's is not held to the NOMS pattern that partitions are.
_PRISON_NUMBER = re.compile(r"[A-Za-z0-9]{1,7}")


class InvalidSourceRecord(ValueError):
    """A case note or alert from the API that cannot be mapped (missing required field, bad date...).

    The message names the field, never its value.
    """


@dataclass(frozen=True)
class Amendment:
    created: datetime | None  # naive London
    author_name: str
    text: str


@dataclass(frozen=True)
class CaseNote:
    """The fields of the Case Notes API `CaseNote` the integration uses (docs/upstream-apis.md §2.2)."""

    case_note_id: str  # UUID (`caseNoteId`, alias `id`)
    offender_identifier: str  # NOMS number, upper-cased
    type: str
    sub_type: str
    created: datetime  # `creationDateTime`, naive London
    occurred: datetime  # `occurrenceDateTime`, naive London
    author_name: str
    text: str
    location_id: str  # default "UNK"
    legacy_id: int | None  # `legacyId`, else `eventId`
    amendments: tuple[Amendment, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CaseNote:
        """Parse API JSON; date-times without offset are Europe/London, with offset are converted to it.

        Required: ``caseNoteId`` (alias ``id``), ``offenderIdentifier``, ``type``, ``subType``,
        ``creationDateTime``. ``occurrenceDateTime`` falls back to ``creationDateTime``; ``text`` null -> "";
        ``locationId`` absent/null/blank -> "UNK"; legacy id = ``legacyId`` else ``eventId`` (number or numeric
        string, may be negative, within the signed 64-bit range). The person is at most 7 ASCII letters and digits,
        upper-cased. Amendments keep the API order (oldest first); their ``creationDateTime`` is optional. Unknown
        fields are ignored. Raises :class:`InvalidSourceRecord` naming the bad field.
        """
        what = "case note"
        if not isinstance(data, Mapping):
            raise InvalidSourceRecord("case note is not a JSON object")
        case_note_id = _identifier(data, ("caseNoteId", "id"), what)
        offender = _noms_number(data, "offenderIdentifier", what)
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
    """The fields of the Alerts API `Alert` the integration uses (docs/upstream-apis.md §3.1)."""

    alert_uuid: str
    prison_number: str  # upper-cased
    alert_type_code: str
    alert_type_description: str
    code: str
    code_description: str
    description: str | None
    active_from: date
    active_to: date | None
    is_active: bool
    created_at: datetime  # naive London
    created_by_display_name: str | None
    last_modified_at: datetime | None
    last_modified_by_display_name: str | None
    active_to_last_set_at: datetime | None
    prison_code_when_created: str | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Alert:
        """Parse Alerts API JSON (docs/upstream-apis.md §3.1). Unknown fields are ignored, optional ones may be missing.

        Required: ``alertUuid``, ``prisonNumber`` (at most 7 ASCII letters and digits), ``alertCode`` with
        ``alertTypeCode``, ``alertTypeDescription``, ``code`` and ``description``, ``activeFrom`` (``yyyy-MM-dd``),
        ``isActive`` (boolean), ``createdAt``. ``prisonCodeWhenCreated`` is optional here (a blank one counts as
        null); :func:`draft_from_alert` rejects a missing one. Raises :class:`InvalidSourceRecord` naming the bad field.
        """
        what = "alert"
        if not isinstance(data, Mapping):
            raise InvalidSourceRecord("alert is not a JSON object")
        alert_uuid = _identifier(data, ("alertUuid",), what)
        prison_number = _noms_number(data, "prisonNumber", what)
        code = data.get("alertCode")
        if not isinstance(code, Mapping):
            raise InvalidSourceRecord("alert has no alertCode")
        is_active = data.get("isActive")
        if not isinstance(is_active, bool):
            raise InvalidSourceRecord(
                "alert has no isActive" if is_active is None else "alert isActive is not a boolean"
            )
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


# --- private helpers --------------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


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
    except NotADateTime:
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
    """A NOMIS id: an integer, an integral float or a string of ASCII digits, in the signed 64-bit range (what
    ``contact.nomis_case_note_id`` holds; SQLite cannot even bind a larger one). Anything else is invalid."""
    value = data.get(key)
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        if not value.strip():
            return None
        if _LEGACY_ID_TEXT.fullmatch(value.strip()):
            number = int(value.strip())
    if number is None or not LEGACY_ID_MIN <= number <= LEGACY_ID_MAX:
        raise InvalidSourceRecord(f"{what} has an invalid {key}")
    return number


def _noms_number(data: Mapping[str, Any], key: str, what: str) -> str:
    value = _required_str(data, key, what)
    if not _PRISON_NUMBER.fullmatch(value):
        raise InvalidSourceRecord(f"{what} has an invalid {key}")
    return value.upper()


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
