"""The reference's telemetry events (``integration/core/telemetry.py``): names, property keys and values, per outcome;
and the adapter (``integration/clients/telemetry.py``): a logfmt line each, and OpenTelemetry log records."""

from __future__ import annotations

import logging

import pytest

from integration.clients import telemetry as adapter
from integration.core import telemetry
from integration.core.logfmt import kv
from integration.core.records import Alert, CaseNote
from integration.core.telemetry import Stage, TelemetryRecord

CASE_NOTE = CaseNote.from_api(
    {
        "caseNoteId": "0ec15f8b-6b57-471f-b02a-c89169a6a3e5",
        "offenderIdentifier": "AA0001A",
        "type": "KA",
        "subType": "KS",
        "creationDateTime": "2022-07-20T11:22:35",
        "occurrenceDateTime": "2022-07-19T09:00:00",
        "authorName": "Some Name",
        "text": "private words",
        "locationId": "LEI",
        "legacyId": 11111,
    }
)
ALERT = Alert.from_api(
    {
        "alertUuid": "01954cfe-9f5a-7ea3-837b-a1770b389c5b",
        "prisonNumber": "AA0001A",
        "alertCode": {
            "alertTypeCode": "V",
            "alertTypeDescription": "Vulnerability",
            "code": "VI",
            "description": "Victim",
        },
        "description": "private words",
        "activeFrom": "2025-02-27",
        "activeTo": "2025-03-01",
        "isActive": False,
        "createdAt": "2025-02-28T14:38:30",
        "createdByDisplayName": "John Smith",
    }
)
CASE_NOTE_KEYS = ["caseNoteId", "type", "subType", "eventId", "created", "occurrence", "location"]
ALERT_KEYS = ["alertUuid", "type", "subType", "created", "activeFrom", "activeTo"]


def records(**kwargs) -> list[tuple[str, dict[str, str]]]:
    return [(r.name, dict(r.properties)) for r in telemetry.event_records(**kwargs)]


def test_the_event_names_are_the_references():
    assert telemetry.EVENT_NAMES == (
        "CaseNoteMerged",
        "CaseNoteIgnored",
        "CaseNoteMergeFailed",
        "CaseNoteNotFound",
        "AlertMerged",
        "AlertMergeFailed",
        "AlertNotFound",
        "CaseNotesMigrated",
        "DataCleanseNotificationFailure",
    )


def test_case_note_properties_are_ids_codes_and_delius_date_times():
    assert telemetry.case_note_properties(CASE_NOTE) == {
        "caseNoteId": "0ec15f8b-6b57-471f-b02a-c89169a6a3e5",
        "type": "KA",
        "subType": "KS",
        "eventId": "11111",
        "created": "20/07/2022 11:22:35",
        "occurrence": "19/07/2022 09:00:00",
        "location": "LEI",
    }
    assert list(telemetry.case_note_properties(CASE_NOTE)) == CASE_NOTE_KEYS


def test_alert_properties_name_the_type_and_code_and_leave_out_an_unset_active_to():
    assert telemetry.alert_properties(ALERT) == {
        "alertUuid": "01954cfe-9f5a-7ea3-837b-a1770b389c5b",
        "type": "V",
        "subType": "VI",
        "created": "28/02/2025 14:38:30",
        "activeFrom": "27/02/2025",
        "activeTo": "01/03/2025",
    }
    active = Alert.from_api(
        {
            "alertUuid": "u-1",
            "prisonNumber": "AA0001A",
            "isActive": True,
            "alertCode": {"alertTypeCode": "V", "alertTypeDescription": "x", "code": "VI", "description": "y"},
            "activeFrom": "2025-02-27",
            "createdAt": "2025-02-28T14:38:30",
        }
    )
    assert "activeTo" not in telemetry.alert_properties(active)


@pytest.mark.parametrize(
    "action, reference_action", [("created", "Created"), ("updated", "Updated"), ("moved", "Moved")]
)
def test_a_written_case_note_is_merged_with_crn_noms_and_action(action, reference_action):
    [(name, properties)] = records(
        is_case_note=True, stage=Stage.MERGED, action=action, record=CASE_NOTE, crn="X123456", noms="AA0001A"
    )
    assert name == "CaseNoteMerged"
    assert list(properties) == CASE_NOTE_KEYS + ["crn", "noms", "action"]
    assert (properties["crn"], properties["noms"], properties["action"]) == ("X123456", "AA0001A", reference_action)


def test_an_unchanged_case_note_is_merged_without_crn_noms_or_action_as_the_references_out_of_sequence():
    [(name, properties)] = records(
        is_case_note=True,
        stage=Stage.MERGED,
        action="unchanged",
        record=CASE_NOTE,
        reason="already up to date",
        crn="X123456",
        noms="AA0001A",
    )
    assert name == "CaseNoteMerged" and list(properties) == CASE_NOTE_KEYS


def test_a_filtered_case_note_is_ignored_with_the_reason_and_a_docgm_alert_reports_nothing():
    [(name, properties)] = records(
        is_case_note=True, stage=Stage.IGNORED, action="skipped", reason="Prisoner being transferred", record=CASE_NOTE
    )
    assert name == "CaseNoteIgnored" and properties["reason"] == "Prisoner being transferred"
    assert list(properties) == CASE_NOTE_KEYS + ["reason"]
    assert (
        records(
            is_case_note=False, stage=Stage.IGNORED, action="skipped", reason="OCG nominal alert (DOCGM)", record=ALERT
        )
        == []
    )


def test_a_person_not_in_delius_and_a_failure_are_merge_failed_with_the_reason_as_exception():
    [(name, properties)] = records(
        is_case_note=True, stage=Stage.MERGED, action="skipped", reason="offender not found in Delius", record=CASE_NOTE
    )
    assert (name, properties["exception"]) == ("CaseNoteMergeFailed", "offender not found in Delius")
    assert list(properties) == CASE_NOTE_KEYS + ["exception"]
    # a move whose new holder is not in Delius: the exception names the contact and where it stays
    warning = "offender not found in Delius: contact 5000001 not moved, remains on X123456"
    [(name, properties)] = records(
        is_case_note=True, stage=Stage.MERGED, action="skipped", reason=warning, warning=warning, record=CASE_NOTE
    )
    assert properties["exception"] == warning
    [(name, properties)] = records(
        is_case_note=False,
        stage=Stage.MERGED,
        action="failed",
        reason="Unable to verify establishment for alert",
        record=ALERT,
    )
    assert name == "AlertMergeFailed" and list(properties) == ALERT_KEYS + ["exception"]


def test_an_unmappable_record_fails_with_its_id_only():
    assert records(
        is_case_note=True, stage=Stage.INVALID, action="failed", reason="case note has no type", source_id="abc"
    ) == [("CaseNoteMergeFailed", {"caseNoteId": "abc", "exception": "case note has no type"})]


def test_not_found_names_the_detail_url_and_what_was_never_fetched_reports_nothing():
    assert records(is_case_note=False, stage=Stage.NOT_FOUND, action="skipped", detail_url="https://a/alerts/u") == [
        ("AlertNotFound", {"detailUrl": "https://a/alerts/u"})
    ]
    assert records(is_case_note=True, stage=Stage.NOT_FOUND, action="skipped", detail_url="https://c/n") == [
        ("CaseNoteNotFound", {"detailUrl": "https://c/n"})
    ]
    for stage in (Stage.NOT_FETCHED, Stage.FETCH_FAILED):
        assert records(is_case_note=True, stage=stage, action="failed", reason="case notes API answered HTTP 503") == []


def test_a_data_cleanse_failure_is_reported_for_a_move_made_anyway_and_for_a_move_not_made():
    moved = records(
        is_case_note=True,
        stage=Stage.MERGED,
        action="moved",
        record=CASE_NOTE,
        crn="X2",
        noms="B2",
        warning="DataCleanseNotificationFailure: contact type OTHER not found: no Data Cleanse contact",
    )
    assert [name for name, _ in moved] == ["CaseNoteMerged", "DataCleanseNotificationFailure"]
    assert moved[1][1] == {"reason": "contact type OTHER not found: no Data Cleanse contact"}
    failed = records(
        is_case_note=True,
        stage=Stage.MERGED,
        action="failed",
        record=CASE_NOTE,
        reason="contact type OTHER not found: no Data Cleanse contact",
    )
    assert [name for name, _ in failed] == ["CaseNoteMergeFailed", "DataCleanseNotificationFailure"]


def test_case_notes_migrated_sends_only_the_counts_that_are_not_zero_as_strings():
    counts = {
        "case_notes_created": 4,
        "case_notes_updated": 0,
        "case_notes_moved": 1,
        "alerts_created": 1,
        "alerts_updated": 0,
        "alerts_moved": 0,
        "case_notes_unchanged": 7,
        "case_notes_skipped": 2,
    }
    record = telemetry.case_notes_migrated(
        noms_number="A4578BX", crn="N123456", cause="probation-case.prison-identifier.added", counts=counts
    )
    assert record == TelemetryRecord(
        "CaseNotesMigrated",
        {
            "nomsId": "A4578BX",
            "crn": "N123456",
            "cause": "probation-case.prison-identifier.added",
            "caseNotesCreated": "4",
            "caseNotesMoved": "1",
            "alertsCreated": "1",
        },
    )
    nothing = telemetry.case_notes_migrated(noms_number="A4578BX", crn=None, cause="linkage", counts={})
    assert dict(nothing.properties) == {"nomsId": "A4578BX", "cause": "linkage"}


def test_no_property_ever_holds_note_text_or_an_alert_description():
    every = records(
        is_case_note=True, stage=Stage.MERGED, action="created", record=CASE_NOTE, crn="X", noms="A"
    ) + records(is_case_note=False, stage=Stage.MERGED, action="created", record=ALERT, crn="X", noms="A")
    assert not any("private words" in value for _, properties in every for value in properties.values())


# --- the adapter ----------------------------------------------------------------------------------------------


def test_each_record_is_a_logfmt_line_on_the_integration_telemetry_logger(caplog, monkeypatch):
    monkeypatch.setenv("TELEMETRY_LOG", "run")
    record = TelemetryRecord(
        "CaseNoteMerged", {"caseNoteId": "abc", "created": "20/07/2022 11:22:35", "action": "Created"}
    )
    with caplog.at_level(logging.INFO, logger="integration.telemetry"):
        adapter.emit([record])
    [line] = [r for r in caplog.records if r.name == "integration.telemetry"]
    assert line.levelno == logging.INFO
    assert line.getMessage() == 'CaseNoteMerged caseNoteId=abc created="20/07/2022 11:22:35" action=Created'
    assert line.getMessage() == kv("CaseNoteMerged", **record.properties)


SETUP_CALLS: list[str] = []


def setup_for_tests() -> None:
    """What ``TELEMETRY_SETUP`` names in these tests (an operator's would install an SDK provider)."""
    SETUP_CALLS.append("called")


@pytest.fixture
def otel_logs(monkeypatch):
    """An OpenTelemetry SDK logger provider with an in-memory exporter (the SDK is a test dependency only), and
    ``TELEMETRY_SETUP`` naming a setup function, as an operator would."""
    sdk_logs = pytest.importorskip("opentelemetry.sdk._logs")
    export = pytest.importorskip("opentelemetry.sdk._logs.export")
    in_memory = getattr(export, "InMemoryLogRecordExporter", None) or export.InMemoryLogExporter
    exporter = in_memory()
    provider = sdk_logs.LoggerProvider()
    provider.add_log_record_processor(export.SimpleLogRecordProcessor(exporter))
    monkeypatch.setattr(adapter, "_logger_provider", lambda: provider)
    monkeypatch.setenv("TELEMETRY_SETUP", f"{__name__}:setup_for_tests")
    SETUP_CALLS.clear()
    adapter.reset_for_tests()
    yield exporter
    adapter.reset_for_tests()


def test_with_an_exporter_each_record_is_an_opentelemetry_event_azure_monitor_reads_as_a_custom_event(otel_logs):
    adapter.emit([TelemetryRecord("AlertMerged", {"alertUuid": "u-1", "action": "Created"})])
    adapter.emit([TelemetryRecord("AlertNotFound", {"detailUrl": "https://a/alerts/u-2"})])
    assert SETUP_CALLS == ["called"]  # the operator's setup runs once per process
    exported = [getattr(item, "log_record", item) for item in otel_logs.get_finished_logs()]
    assert [r.event_name for r in exported] == ["AlertMerged", "AlertNotFound"]
    assert [r.body for r in exported] == ["AlertMerged", "AlertNotFound"]
    assert dict(exported[0].attributes) == {
        "alertUuid": "u-1",
        "action": "Created",
        "microsoft.custom_event.name": "AlertMerged",
    }


def test_a_setup_that_fails_is_logged_and_the_lines_still_go_out(monkeypatch, caplog):
    monkeypatch.setenv("TELEMETRY_LOG", "run")
    monkeypatch.setenv("TELEMETRY_SETUP", "no_such_module_here:configure")
    adapter.reset_for_tests()
    with caplog.at_level(logging.INFO, logger="integration.telemetry"):
        adapter.emit([TelemetryRecord("CaseNoteNotFound", {"detailUrl": "https://c/n"})])
    messages = [r.getMessage() for r in caplog.records if r.name == "integration.telemetry"]
    assert messages[0].startswith("telemetry_setup_failed setting=TELEMETRY_SETUP target=no_such_module_here:configure")
    assert messages[-1] == "CaseNoteNotFound detailUrl=https://c/n"
    adapter.reset_for_tests()


def test_telemetry_log_stdout_writes_the_lines_to_standard_output_instead_of_the_logger(monkeypatch, capsys, caplog):
    monkeypatch.delenv("TELEMETRY_LOG", raising=False)  # the default
    with caplog.at_level(logging.INFO, logger="integration.telemetry"):
        adapter.emit([TelemetryRecord("CaseNoteNotFound", {"detailUrl": "https://c/n"})])
    assert capsys.readouterr().out == "CaseNoteNotFound detailUrl=https://c/n\n"
    assert [r for r in caplog.records if r.name == "integration.telemetry"] == []
    monkeypatch.setenv("TELEMETRY_LOG", "off")
    adapter.emit([TelemetryRecord("CaseNoteNotFound", {"detailUrl": "https://c/n"})])
    assert capsys.readouterr().out == ""
