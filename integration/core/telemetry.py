"""The reference service's telemetry events, decided (pure): which event an outcome is, with which properties.

The service we replace reports each outcome as an Application Insights custom event; operators' dashboards and alerts
are built on their names and property keys (docs/rules.md §9.3), so the same records are made here, from the same
facts, and emitted by an adapter (``integration/clients/telemetry.py``: a logfmt line, and OpenTelemetry when an
exporter is configured). Properties hold ids, codes, dates and reasons only, never note text or alert descriptions,
and every value is a string (as the reference sends them).

* ``CaseNoteMerged`` / ``AlertMerged``: written (plus ``crn``, ``noms``, ``action``: Created, Updated, Moved), or
  already there (unchanged: without ``crn``/``noms``/``action``, as the reference's out-of-sequence merge);
* ``CaseNoteIgnored``: a content filter matched (plus ``reason``, docs/rules.md §3.2);
* ``CaseNoteMergeFailed`` / ``AlertMergeFailed``: fetched but not written -- the person is not in Delius (also a move
  whose new holder is not), or a failure in the data or in Delius (plus ``exception``: our reason);
* ``CaseNoteNotFound`` / ``AlertNotFound``: the source answered 404 (``detailUrl``);
* ``CaseNotesMigrated``: one person backfilled (docs/rules.md §8 step 6);
* ``DataCleanseNotificationFailure``: the Data Cleanse contact of a move could not be written (``reason``).

Outcomes the reference reports with no event are not reported here either: events of a type not handled or not of
interest (they are never fetched), ``DOCGM`` alerts, and failures to fetch (HTTP 5xx, timeouts, the allow-list).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from .outcomes import DATA_CLEANSE_FAILURE, REASON_NO_DATA_CLEANSE, Action
from .records import Alert, CaseNote
from .times import format_delius_datetime

CASE_NOTE_MERGED = "CaseNoteMerged"
CASE_NOTE_IGNORED = "CaseNoteIgnored"
CASE_NOTE_MERGE_FAILED = "CaseNoteMergeFailed"
CASE_NOTE_NOT_FOUND = "CaseNoteNotFound"
ALERT_MERGED = "AlertMerged"
ALERT_MERGE_FAILED = "AlertMergeFailed"
ALERT_NOT_FOUND = "AlertNotFound"
CASE_NOTES_MIGRATED = "CaseNotesMigrated"
DATA_CLEANSE_NOTIFICATION_FAILURE = DATA_CLEANSE_FAILURE
EVENT_NAMES = (
    CASE_NOTE_MERGED,
    CASE_NOTE_IGNORED,
    CASE_NOTE_MERGE_FAILED,
    CASE_NOTE_NOT_FOUND,
    ALERT_MERGED,
    ALERT_MERGE_FAILED,
    ALERT_NOT_FOUND,
    CASE_NOTES_MIGRATED,
    DATA_CLEANSE_NOTIFICATION_FAILURE,
)

# The reference's action names (its MergeResult.Action), for ours
ACTION_NAMES = {Action.CREATED.value: "Created", Action.UPDATED.value: "Updated", Action.MOVED.value: "Moved"}
# CaseNotesMigrated: (our count key, the reference's property), sent only when not zero
MIGRATED_COUNTS = (
    ("case_notes_created", "caseNotesCreated"),
    ("case_notes_updated", "caseNotesUpdated"),
    ("case_notes_moved", "caseNotesMoved"),
    ("alerts_created", "alertsCreated"),
    ("alerts_updated", "alertsUpdated"),
    ("alerts_moved", "alertsMoved"),
)
_MAX_VALUE = 200  # reasons are short already; a cap keeps a surprise from flooding a log pipeline


@dataclass(frozen=True)
class TelemetryRecord:
    """One event: its name and its properties (string values, in the reference's key order)."""

    name: str
    properties: Mapping[str, str] = field(default_factory=dict)


class Stage(str, enum.Enum):
    """How far an event's record got before its outcome was decided."""

    NOT_FETCHED = "not fetched"  # not handled, not of interest, unreadable, no detailUrl: no telemetry
    FETCH_FAILED = "fetch failed"  # upstream error or off the allow-list: no telemetry (the reference's fetch throws)
    NOT_FOUND = "not found"  # 404 after the re-asks
    IGNORED = "ignored"  # a content filter (or DOCGM) matched
    INVALID = "invalid"  # fetched but cannot be mapped
    MERGED = "merged"  # went to the store: the outcome's action says what happened


def case_note_properties(note: CaseNote) -> dict[str, str]:
    """``caseNoteId``, ``type``, ``subType``, ``eventId`` (the legacy id, when known), ``created``, ``occurrence``
    (Delius date-times, ``dd/MM/yyyy HH:mm:ss``), ``location``."""
    properties = {"caseNoteId": note.case_note_id, "type": note.type, "subType": note.sub_type}
    if note.legacy_id is not None:
        properties["eventId"] = str(note.legacy_id)
    properties.update(
        created=format_delius_datetime(note.created),
        occurrence=format_delius_datetime(note.occurred),
        location=note.location_id,
    )
    return properties


def alert_properties(alert: Alert) -> dict[str, str]:
    """``alertUuid``, ``type`` (alert type code), ``subType`` (alert code), ``created`` (a Delius date-time),
    ``activeFrom`` and, when set, ``activeTo`` (``dd/MM/yyyy``)."""
    properties = {
        "alertUuid": alert.alert_uuid,
        "type": alert.alert_type_code,
        "subType": alert.code,
        "created": format_delius_datetime(alert.created_at),
        "activeFrom": _delius_date(alert.active_from),
    }
    if alert.active_to is not None:
        properties["activeTo"] = _delius_date(alert.active_to)
    return properties


def event_records(
    *,
    is_case_note: bool,
    stage: Stage,
    action: str,
    reason: str | None = None,
    record: CaseNote | Alert | None = None,
    source_id: str | None = None,
    detail_url: str | None = None,
    crn: str | None = None,
    noms: str | None = None,
    warning: str | None = None,
) -> list[TelemetryRecord]:
    """The records of one event-flow outcome (a case-note or alert event), after its merge was committed.

    ``action``/``reason``/``crn`` are the outcome's, ``noms`` the person the record names (the draft's NOMS number),
    ``warning`` the store's (a Data Cleanse failure of a move made anyway). ``record`` is the parsed source record
    (None when it could not be parsed: then only its id is known)."""
    if stage in (Stage.NOT_FETCHED, Stage.FETCH_FAILED):
        return []
    if stage is Stage.NOT_FOUND:
        return [
            TelemetryRecord(
                CASE_NOTE_NOT_FOUND if is_case_note else ALERT_NOT_FOUND, {"detailUrl": _cap(detail_url or "")}
            )
        ]
    properties = _record_properties(is_case_note, record, source_id)
    merged, failed = (CASE_NOTE_MERGED, CASE_NOTE_MERGE_FAILED) if is_case_note else (ALERT_MERGED, ALERT_MERGE_FAILED)
    if stage is Stage.IGNORED:
        # DOCGM alerts: the reference drops them without telemetry
        return (
            [TelemetryRecord(CASE_NOTE_IGNORED, {**properties, "reason": _cap(reason or "")})] if is_case_note else []
        )
    if stage is Stage.INVALID:
        return [TelemetryRecord(failed, {**properties, "exception": _cap(reason or "")})]
    records: list[TelemetryRecord] = []
    if action in ACTION_NAMES:
        merge = {key: value for key, value in (("crn", crn), ("noms", noms)) if value}
        records.append(TelemetryRecord(merged, {**properties, **merge, "action": ACTION_NAMES[action]}))
    elif action == Action.UNCHANGED.value:
        records.append(TelemetryRecord(merged, properties))
    else:  # skipped (the person is not in Delius) or failed: the reference's exception is our reason
        records.append(TelemetryRecord(failed, {**properties, "exception": _cap(warning or reason or "")}))
    cleanse = data_cleanse_failure(action=action, reason=reason, warning=warning)
    if cleanse is not None:
        records.append(cleanse)
    return records


def data_cleanse_failure(*, action: str, reason: str | None, warning: str | None) -> TelemetryRecord | None:
    """``DataCleanseNotificationFailure`` for an outcome whose Data Cleanse contact was not written: a move made with
    the store's warning (backfills), or a move not made for want of it (the event flows: failed, retryable)."""
    prefix = f"{DATA_CLEANSE_FAILURE}: "
    if action == Action.MOVED.value and warning and warning.startswith(prefix):
        return TelemetryRecord(DATA_CLEANSE_NOTIFICATION_FAILURE, {"reason": _cap(warning[len(prefix) :])})
    if action == Action.FAILED.value and reason == REASON_NO_DATA_CLEANSE:
        return TelemetryRecord(DATA_CLEANSE_NOTIFICATION_FAILURE, {"reason": reason})
    return None


def case_notes_migrated(*, noms_number: str, crn: str | None, cause: str, counts: Mapping[str, int]) -> TelemetryRecord:
    """One person's backfill: ``nomsId``, ``crn`` (when any item reached their record), ``cause`` and the counts of
    created, updated and moved case notes and alerts, as strings, each only when it is not zero."""
    properties = {"nomsId": noms_number}
    if crn:
        properties["crn"] = crn
    properties["cause"] = cause
    for ours, theirs in MIGRATED_COUNTS:
        if counts.get(ours):
            properties[theirs] = str(counts[ours])
    return TelemetryRecord(CASE_NOTES_MIGRATED, properties)


def _record_properties(is_case_note: bool, record: CaseNote | Alert | None, source_id: str | None) -> dict[str, str]:
    if isinstance(record, CaseNote):
        return case_note_properties(record)
    if isinstance(record, Alert):
        return alert_properties(record)
    return {"caseNoteId" if is_case_note else "alertUuid": source_id or "unknown"}


def _delius_date(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def _cap(value: str) -> str:
    return value if len(value) <= _MAX_VALUE else value[:_MAX_VALUE] + "..."
