"""HMPPS domain events as SNS delivers them to SQS (docs/upstream-apis.md §1.3), for tests, the simulator and
benchmarks.

The outer ``eventType`` attribute always agrees with the inner ``eventType``; case-note events carry the ``type`` and
``subType`` attributes the real publisher sets (and the SNS filter policy uses). The shapes of the moved case note and
of the updated prison identifier are their publishers' (docs/upstream-apis.md §1.2, §1.5).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

TOPIC_ARN = "arn:aws:sns:eu-west-2:000000000000:hmpps-domain-events-local"


def sns_body(
    event: Mapping[str, Any], attributes: Mapping[str, str] | None = None, message_id: str | None = None
) -> str:
    attrs = {"eventType": event["eventType"], **(attributes or {})}
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": TOPIC_ARN,
            "Message": json.dumps(event),
            "Timestamp": _now(),
            "MessageAttributes": {name: {"Type": "String", "Value": value} for name, value in attrs.items()},
        }
    )


CASE_NOTE_MOVED = "person.case-note.moved"
IDENTIFIER_UPDATED = "probation-case.prison-identifier.updated"


def case_note_event(
    noms: str,
    case_note_id: str,
    case_note_type: str,
    sub_type: str,
    *,
    case_notes_url: str,
    event_type: str = "person.case-note.created",
    legacy_id: int | None = None,
    message_id: str | None = None,
    previous_noms: str | None = None,
    source: str = "DPS",
) -> str:
    """A ``person.case-note.*`` event: ``detailUrl`` and ``personReference`` name the note's (current) holder;
    ``legacyId`` is a number, as the Case Notes API sends it; a ``moved`` event adds ``previousNomsNumber``."""
    information: dict[str, Any] = {
        "id": case_note_id,
        "legacyId": _event_legacy_id(legacy_id),
        "type": case_note_type,
        "subType": sub_type,
        "source": source,
        "syncToNomis": True,
        "systemGenerated": False,
    }
    if previous_noms is not None:
        information["previousNomsNumber"] = previous_noms
    event = {
        "eventType": event_type,
        "version": 1,
        "description": "A case note has been " + event_type.rsplit(".", 1)[-1],
        "occurredAt": _now(),
        "detailUrl": f"{case_notes_url}/case-notes/{noms}/{case_note_id}",
        "additionalInformation": information,
        "personReference": {"identifiers": [{"type": "NOMS", "value": noms}]},
    }
    return sns_body(event, {"type": case_note_type, "subType": sub_type}, message_id)


def _event_legacy_id(legacy_id: Any) -> int:
    """The event's ``legacyId``: a number, as the Case Notes API publishes it (0 when the note's own is none, or is
    no 64-bit number: hostile test records; the integration never reads it from the event)."""
    try:
        value = int(legacy_id or 0) if len(str(legacy_id)) <= 19 else 0
    except (TypeError, ValueError):
        return 0
    return value if -(2**63) <= value < 2**63 else 0


def case_note_moved_event(
    note: Mapping[str, Any], previous_noms: str, *, case_notes_url: str, message_id: str | None = None
) -> str:
    """The ``person.case-note.moved`` event the Case Notes API publishes for ``note`` (already moved: its
    ``offenderIdentifier`` is the new holder) when it moves a note off ``previous_noms`` (a correction in NOMIS, or a
    merge of two prison records). ``source`` is NOMIS: moves come from NOMIS."""
    return case_note_event(
        note["offenderIdentifier"],
        note["caseNoteId"],
        note["type"],
        note["subType"],
        case_notes_url=case_notes_url,
        event_type=CASE_NOTE_MOVED,
        legacy_id=note.get("legacyId"),
        message_id=message_id,
        previous_noms=previous_noms,
        source="NOMIS",
    )


def alert_event(
    noms: str,
    alert_uuid: str,
    alert_code: str,
    *,
    alerts_url: str,
    event_type: str = "person.alert.created",
    message_id: str | None = None,
) -> str:
    description = {
        "person.alert.created": "An alert has been created in the alerts service",
        "person.alert.updated": "An alert has been updated in the alerts service",
        "person.alert.inactive": "An alert has been made inactive in the alerts service",
    }
    event = {
        "eventType": event_type,
        "additionalInformation": {"alertUuid": alert_uuid, "alertCode": alert_code, "source": "DPS"},
        "version": 1,
        "description": description.get(event_type, "An alert has changed"),
        "occurredAt": _now(),
        "detailUrl": f"{alerts_url}/alerts/{alert_uuid}",
        "personReference": {"identifiers": [{"type": "NOMS", "value": noms}]},
    }
    return sns_body(event, message_id=message_id)


def linkage_event(noms: str, crn: str, *, booking_number: str = "51132A", message_id: str | None = None) -> str:
    event = {
        "eventType": "probation-case.prison-identifier.added",
        "version": 1,
        "occurredAt": _now(),
        "description": "A probation case has been matched with a booking in the prison system. The prisoner and "
        "booking identifiers have been added to the probation case.",
        "additionalInformation": {"bookingNumber": booking_number},
        "personReference": {"identifiers": [{"type": "CRN", "value": crn}, {"type": "NOMS", "value": noms}]},
    }
    return sns_body(event, message_id=message_id)


def identifier_updated_event(noms: str, crn: str, previous_noms: str, *, message_id: str | None = None) -> str:
    """``probation-case.prison-identifier.updated``: Delius replaced the case's NOMS number ``previous_noms`` by
    ``noms`` after NOMIS merged two prison records. Only the ``eventType`` attribute; no ``detailUrl``."""
    event = {
        "version": 1,
        "eventType": IDENTIFIER_UPDATED,
        "description": "A prisoner identifier has been updated following a merge. This been reflected on the probation "
        "case.",
        "personReference": {"identifiers": [{"type": "CRN", "value": crn}, {"type": "NOMS", "value": noms}]},
        "additionalInformation": {"previousNomsNumber": previous_noms},
        "occurredAt": _now(),
    }
    return sns_body(event, message_id=message_id)


def case_note_event_for(
    note: Mapping[str, Any],
    *,
    case_notes_url: str,
    event_type: str = "person.case-note.created",
    message_id: str | None = None,
) -> str:
    """The event the Case Notes API publishes for ``note`` (a stand-in/API case-note dict)."""
    return case_note_event(
        note["offenderIdentifier"],
        note["caseNoteId"],
        note["type"],
        note["subType"],
        case_notes_url=case_notes_url,
        event_type=event_type,
        legacy_id=note.get("legacyId"),
        message_id=message_id,
    )


def alert_event_for(
    alert: Mapping[str, Any],
    *,
    alerts_url: str,
    event_type: str = "person.alert.created",
    message_id: str | None = None,
) -> str:
    """The event the Alerts API publishes for ``alert`` (a stand-in/API alert dict)."""
    return alert_event(
        alert["prisonNumber"],
        alert["alertUuid"],
        alert["alertCode"]["code"],
        alerts_url=alerts_url,
        event_type=event_type,
        message_id=message_id,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
