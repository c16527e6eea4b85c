"""HMPPS domain events: parse the SNS envelope (or a raw event), route by event type, pre-fetch filter.

Pure: no Dagster, AWS or HTTP. Bodies of unknown shape raise :class:`PoisonMessage` with a readable reason.
Never put message bodies in an exception message or a log line: they are untrusted and may hold personal data.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

from .times import LONDON, NotADateTime, parse_iso

# ``moved``: the Case Notes API moved the note to another prisoner (a correction, or a merge of two prison records);
# the event names the new holder and ``additionalInformation.previousNomsNumber`` the old (docs/rules.md §2.3, §6.3).
CASE_NOTE_MOVED_EVENT_TYPE = "person.case-note.moved"
CASE_NOTE_EVENT_TYPES = frozenset({"person.case-note.created", "person.case-note.updated", CASE_NOTE_MOVED_EVENT_TYPE})
ALERT_EVENT_TYPES = frozenset({"person.alert.created", "person.alert.updated", "person.alert.inactive"})
# Linkage: Delius linked a NOMS number to a probation case (``added``), or replaced it after two prison records were
# merged (``updated``, with ``additionalInformation.previousNomsNumber``). Both backfill the person under the NOMS
# number of ``personReference`` (docs/rules.md §8).
LINKAGE_EVENT_TYPE = "probation-case.prison-identifier.added"
LINKAGE_UPDATED_EVENT_TYPE = "probation-case.prison-identifier.updated"
LINKAGE_EVENT_TYPES = frozenset({LINKAGE_EVENT_TYPE, LINKAGE_UPDATED_EVENT_TYPE})
NOMS_NUMBER = re.compile(r"[A-Z][0-9]{4}[A-Z]{2}")  # ASCII only: str.isdigit and \d accept other scripts' digits

# type -> accepted subtypes (None = any subtype). docs/rules.md §3.1, newest version (ALERT removed).
CASE_NOTE_TYPES_OF_INTEREST: Mapping[str, frozenset[str] | None] = {
    "PRISON": frozenset({"RELEASE"}),
    "TRANSFER": frozenset({"FROMTOL"}),
    "GEN": frozenset({"OSE"}),
    "RESET": frozenset({"BCST", "GUIDINT"}),
    "OMIC": None,
    "OMIC_OPD": None,
    "KA": None,
}


class EventKind(str, enum.Enum):
    CASE_NOTE = "case_note"
    ALERT = "alert"
    LINKAGE = "linkage"
    IGNORED = "ignored"


class PoisonMessage(ValueError):
    """The message can never be processed (unparseable, not an object, no usable event type...).

    ``reason`` is short, readable and free of message content.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DomainEvent:
    message_id: str  # SNS MessageId (or the SQS message id when absent)
    event_type: str  # routing key: MessageAttributes.eventType, else the inner eventType
    inner_event_type: str | None  # Message.eventType as published
    occurred_at: datetime | None  # aware datetime, None when absent/unparseable
    detail_url: str | None
    noms_number: str | None  # first NOMS identifier, upper-cased
    crn: str | None  # first CRN identifier, upper-cased
    case_note_type: str | None  # attribute `type`, else additionalInformation.type
    case_note_subtype: str | None  # attribute `subType`, else additionalInformation.subType
    additional_information: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""  # the inner domain-event JSON exactly as received (re-sent on dead-letter)
    attributes: Mapping[str, str] = field(default_factory=dict)  # flattened SNS MessageAttributes name -> Value

    @property
    def kind(self) -> EventKind:
        """Which flow handles this event (docs/rules.md §2.3)."""
        if self.event_type in CASE_NOTE_EVENT_TYPES:
            return EventKind.CASE_NOTE
        if self.event_type in ALERT_EVENT_TYPES:
            return EventKind.ALERT
        if self.event_type in LINKAGE_EVENT_TYPES:
            return EventKind.LINKAGE
        return EventKind.IGNORED

    @property
    def previous_noms_number(self) -> str | None:
        """``additionalInformation.previousNomsNumber`` (moved case notes, updated prison identifiers), upper-cased;
        None when absent or not a string. Informational: a moved note's contact is found by its URN."""
        value = self.additional_information.get("previousNomsNumber")
        return value.strip().upper() if isinstance(value, str) and value.strip() else None

    def ignore_reason(self) -> str | None:
        """Why this event is deliberately not processed (not handled / not of interest), or None.

        Case-note events whose type/subtype are missing or not of interest are ignored, not failed (§3.1, §13.4).
        Alert and linkage events are never ignored here (the DOCGM filter needs the fetched alert; a linkage
        event without a NOMS number is an error, not an ignore).
        """
        kind = self.kind
        if kind is EventKind.IGNORED:
            return f"event type not handled: {_clip(self.event_type)}"
        if kind is EventKind.CASE_NOTE:
            if not self.case_note_type or not self.case_note_subtype:
                return "case note type/subtype missing"
            if not case_note_of_interest(self.case_note_type, self.case_note_subtype):
                return f"case note type not of interest: {_clip(self.case_note_type)} {_clip(self.case_note_subtype)}"
        return None


def parse_sqs_body(body: str, sqs_message_id: str | None = None) -> DomainEvent:
    """Parse an SQS body holding an SNS notification (``Message`` is a JSON string) or a raw domain event.

    Tolerant of: missing SNS fields (TopicArn, Signature...), missing/null ``additionalInformation``,
    unknown fields, ``legacyId`` as number or string, ``occurredAt`` with offset or ``Z`` and up to 9 fractional
    digits (or absent/unparseable -> None). Raises :class:`PoisonMessage` for anything that is not JSON, not an
    object, or has no event type at all.

    An SNS notification is recognised by a ``Message`` or ``Type`` key; otherwise a body with an ``eventType`` is
    taken as a raw-delivered domain event (``message`` is then the whole body). An ``occurredAt`` without an offset
    is read as Europe/London wall-clock time.
    """
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise PoisonMessage("body is not valid UTF-8") from None
    if not isinstance(body, str):
        raise PoisonMessage("body is not a string")
    try:
        outer = json.loads(body)
    except (ValueError, RecursionError):
        raise PoisonMessage("body is not valid JSON") from None
    if not isinstance(outer, dict):
        raise PoisonMessage("body is not a JSON object")

    if "Message" in outer or "Type" in outer:
        raw = outer.get("Message")
        if raw is None:
            raise PoisonMessage("Message is missing")
        if isinstance(raw, str):
            try:
                inner = json.loads(raw)
            except (ValueError, RecursionError):
                raise PoisonMessage("Message is not valid JSON") from None
            message = raw
        elif isinstance(raw, dict):
            inner = raw
            message = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
        else:
            raise PoisonMessage("Message is neither a string nor a JSON object")
        if not isinstance(inner, dict):
            raise PoisonMessage("Message is not a JSON object")
        attributes = _flatten_attributes(outer.get("MessageAttributes"))
        message_id = outer.get("MessageId")
    elif "eventType" in outer:
        inner = outer
        message = body
        attributes = {}
        message_id = None
    else:
        raise PoisonMessage("no event type")

    inner_event_type = inner.get("eventType")
    if inner_event_type is not None and not isinstance(inner_event_type, str):
        inner_event_type = None
        inner_type_invalid = True
    else:
        inner_type_invalid = False

    event_type = attributes.get("eventType")
    if not _present(event_type):
        if inner_type_invalid:
            raise PoisonMessage("eventType is not a string")
        event_type = inner_event_type
    if not _present(event_type):
        raise PoisonMessage("no event type")
    event_type = event_type.strip()

    if not (isinstance(message_id, str) and message_id.strip()):
        message_id = sqs_message_id if (isinstance(sqs_message_id, str) and sqs_message_id.strip()) else None
    if message_id is None:
        message_id = str(uuid.uuid4())

    additional = inner.get("additionalInformation")
    if not isinstance(additional, dict):
        additional = {}

    detail_url = inner.get("detailUrl")
    if not (isinstance(detail_url, str) and detail_url.strip()):
        detail_url = None

    identifiers = _identifiers(inner.get("personReference"))

    return DomainEvent(
        message_id=message_id,
        event_type=event_type,
        inner_event_type=inner_event_type,
        occurred_at=_parse_occurred_at(inner.get("occurredAt")),
        detail_url=detail_url,
        noms_number=_first_identifier(identifiers, "NOMS"),
        crn=_first_identifier(identifiers, "CRN"),
        case_note_type=_type_value(attributes.get("type"), additional.get("type")),
        case_note_subtype=_type_value(attributes.get("subType"), additional.get("subType")),
        additional_information=additional,
        message=message,
        attributes=attributes,
    )


def envelope_body(event: DomainEvent) -> str:
    """A canonical SNS-notification body for ``event`` that ``parse_sqs_body`` parses back to an equal event.

    Used when the pipeline re-sends an event (dead-letter queue, redrive). The body carries ``Type``,
    ``MessageId``, ``Message`` (``event.message`` unchanged) and ``MessageAttributes`` (``event.attributes`` as
    ``{"Type": "String", "Value": ...}``); no ``eventType`` attribute is invented, so an event that had none
    (raw delivery) is still routed on its inner ``eventType`` after the round trip.
    """
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": event.message_id,
            "Message": event.message,
            "MessageAttributes": {name: {"Type": "String", "Value": value} for name, value in event.attributes.items()},
        },
        ensure_ascii=False,
    )


def unreadable_reason(body: str, sqs_message_id: str | None = None) -> str | None:
    """Why a message can never be processed, however often it is delivered or redriven, or None when it can be
    read: not parseable or no event type (:class:`PoisonMessage`), or a linkage event without a valid NOMS number.
    The same reasons the queue sensor dead-letters such messages with (``core/intake.py``)."""
    try:
        event = parse_sqs_body(body, sqs_message_id)
    except PoisonMessage as poison:
        return f"unreadable message: {poison.reason}"
    if event.kind is EventKind.LINKAGE:
        if not event.noms_number:
            return "linkage event has no NOMS identifier"
        if not is_noms_number(event.noms_number):
            return "linkage event has an invalid NOMS number"
    return None


def is_noms_number(value: object) -> bool:
    """A prison number as NOMIS issues it: a letter, four digits, two letters (``A1234BC``), ASCII only."""
    return isinstance(value, str) and NOMS_NUMBER.fullmatch(value) is not None


def case_note_of_interest(case_note_type: str | None, subtype: str | None) -> bool:
    """Exact match of type, then subtype, against :data:`CASE_NOTE_TYPES_OF_INTEREST`; missing values -> False."""
    if not case_note_type or not subtype:
        return False
    if case_note_type not in CASE_NOTE_TYPES_OF_INTEREST:
        return False
    accepted = CASE_NOTE_TYPES_OF_INTEREST[case_note_type]
    return accepted is None or subtype in accepted


def search_type_subtypes() -> list[dict[str, Any]]:
    """``typeSubTypes`` for the case-note search request: ``[{"type": "PRISON", "subTypes": ["RELEASE"]}, ...]``,
    an empty list meaning every subtype. Sorted deterministically (by type, subtypes alphabetically)."""
    return [
        {"type": case_note_type, "subTypes": sorted(subtypes) if subtypes is not None else []}
        for case_note_type, subtypes in sorted(CASE_NOTE_TYPES_OF_INTEREST.items())
    ]


# --- private helpers ------------------------------------------------------------------------------------------

_MAX_REASON_TOKEN = 100


def _clip(value: str) -> str:
    """Event and case-note type codes in reasons are safe, but cap their length anyway."""
    return value if len(value) <= _MAX_REASON_TOKEN else value[:_MAX_REASON_TOKEN] + "..."


def _present(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def _flatten_attributes(raw: Any) -> dict[str, str]:
    """SNS ``MessageAttributes`` -> {name: Value}. Entries without a string value are dropped, except that a
    non-string ``eventType`` is a poison message (it is the routing key)."""
    if not isinstance(raw, dict):
        return {}
    flat: dict[str, str] = {}
    for name, entry in raw.items():
        if not isinstance(name, str):
            continue
        value = entry.get("Value") if isinstance(entry, dict) else entry
        if isinstance(value, str):
            flat[name] = value
        elif name == "eventType" and value is not None:
            raise PoisonMessage("eventType attribute is not a string")
    return flat


def _identifiers(person_reference: Any) -> list[Mapping[str, Any]]:
    if not isinstance(person_reference, dict):
        return []
    identifiers = person_reference.get("identifiers")
    if not isinstance(identifiers, list):
        return []
    return [i for i in identifiers if isinstance(i, dict)]


def _first_identifier(identifiers: list[Mapping[str, Any]], identifier_type: str) -> str | None:
    """Value of the first identifier of ``identifier_type`` that has a usable value, upper-cased and stripped."""
    for identifier in identifiers:
        kind = identifier.get("type")
        if isinstance(kind, str) and kind.strip().upper() == identifier_type:
            value = identifier.get("value")
            if isinstance(value, str) and value.strip():
                return value.strip().upper()
    return None


def _type_value(attribute: Any, additional: Any) -> str | None:
    """Case-note type/subtype: the message attribute, else ``additionalInformation``; blank counts as missing."""
    for candidate in (attribute, additional):
        if _present(candidate):
            return candidate.strip()
    return None


def _parse_occurred_at(value: Any) -> datetime | None:
    """ISO-8601 date-time with up to 9 fractional digits, ``Z`` or an offset -> aware datetime (no offset: London
    wall-clock time), else None."""
    if not isinstance(value, str):
        return None
    try:
        naive, zone = parse_iso(value, zone_ids=False)
    except NotADateTime:
        return None
    return naive.replace(tzinfo=zone or LONDON)
