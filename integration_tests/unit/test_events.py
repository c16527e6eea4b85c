"""Unit tests of ``integration.events``: SNS envelope parsing, routing and the pre-fetch filter (reference §2-§3.1)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from integration.core.events import (
    ALERT_EVENT_TYPES,
    CASE_NOTE_EVENT_TYPES,
    CASE_NOTE_TYPES_OF_INTEREST,
    LINKAGE_EVENT_TYPE,
    LINKAGE_EVENT_TYPES,
    DomainEvent,
    EventKind,
    PoisonMessage,
    case_note_of_interest,
    envelope_body,
    parse_sqs_body,
    search_type_subtypes,
)
from integration.core.intake import plan_intake
from integration.core.messages import QueueMessage

# --- payloads (docs/upstream-apis.md §1.3, §1.5) ----------------------------------------------------------------------

ALERT_CREATED_MESSAGE = (
    '{"eventType":"person.alert.created","additionalInformation":{"alertUuid":"01954cfe-9f5a-7ea3-837b-a1770b389c5b",'
    '"alertCode":"OVI","source":"DPS"},"version":1,"description":"An alert has been created in the alerts service",'
    '"occurredAt":"2025-02-28T14:38:30.224174387Z","detailUrl":"http://localhost:8080/alerts/'
    '01954cfe-9f5a-7ea3-837b-a1770b389c5b","personReference":{"identifiers":[{"type":"NOMS","value":"AA0001A"}]}}'
)

ALERT_CREATED_BODY = json.dumps(
    {
        "Type": "Notification",
        "MessageId": "18a5bc34-ee67-5107-b772-dc0f22c1da7b",
        "TopicArn": "arn:aws:sns:eu-west-2:754256621582:cloud-platform-Digital-Prison-Services-f221e27fcfcf78f6ab4f4c3cc165eee7",  # noqa: E501
        "Message": ALERT_CREATED_MESSAGE,
        "Timestamp": "2025-02-28T14:38:30.300Z",
        "SignatureVersion": "1",
        "Signature": "kyuV8tDW...==",
        "SigningCertURL": "https://sns.eu-west-2.amazonaws.com/SimpleNotificationService-60eadc.pem",
        "UnsubscribeURL": "https://sns.eu-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:e5c3",
        "MessageAttributes": {
            "eventType": {"Type": "String", "Value": "person.alert.created"},
            "publishedAt": {"Type": "String", "Value": "2025-02-28T14:38:30.29+00:00"},
            "traceparent": {"Type": "String", "Value": "00-b525e7a9b05de2c11a64ff93a0ef292b-f8f18e48747b11fd-01"},
        },
    }
)

CASE_NOTE_CREATED_EVENT = {
    "eventType": "person.case-note.created",
    "version": 1,
    "description": "A case note has been created",
    "occurredAt": "2022-10-18T08:19:19.451579+01:00",
    "detailUrl": "https://offender-case-notes.service.justice.gov.uk/case-notes/AA0001A/2cf4f9e1-df22-49a1-a2a7-5968a96529e3",
    "additionalInformation": {
        "id": "2cf4f9e1-df22-49a1-a2a7-5968a96529e3",
        "legacyId": 2222,
        "type": "NEG",
        "subType": "IEP_WARN",
        "source": "DPS",
        "syncToNomis": True,
        "systemGenerated": False,
    },
    "personReference": {"identifiers": [{"type": "NOMS", "value": "AA0001A"}]},
}

ALERT_INACTIVE_MESSAGE = (
    '{"eventType":"person.alert.inactive","additionalInformation":{"alertUuid":"62c811b1-f3f2-432f-abbd-ca06b9190d4d",'
    '"alertCode":"OVI","source":"DPS"},"version":1,"description":"An alert has been made inactive in the alerts service",'  # noqa: E501
    '"occurredAt":"2025-02-28T14:38:30.224174387Z","detailUrl":"http://localhost:8080/alerts/'
    '62c811b1-f3f2-432f-abbd-ca06b9190d4d","personReference":{"identifiers":[{"type":"NOMS","value":"AA0001A"}]}}'
)

LINKAGE_EVENT = {
    "eventType": "probation-case.prison-identifier.added",
    "version": 1,
    "occurredAt": "2024-06-11T17:36:56.241562485+01:00",
    "description": "A probation case has been matched with a booking in the prison system.",
    "additionalInformation": {"bookingNumber": "51132A"},
    "personReference": {"identifiers": [{"type": "CRN", "value": "X757129"}, {"type": "NOMS", "value": "A1036EA"}]},
}


def sns_body(message, attributes=None, message_id="11111111-2222-3333-4444-555555555555", **extra) -> str:
    """An SNS notification body; ``message`` is JSON-encoded unless it already is a string."""
    body = {"Type": "Notification", "Message": message if isinstance(message, str) else json.dumps(message)}
    if message_id is not None:
        body["MessageId"] = message_id
    if attributes is not None:
        body["MessageAttributes"] = {k: {"Type": "String", "Value": v} for k, v in attributes.items()}
    body.update(extra)
    return json.dumps(body)


def case_note_body(note_type="KA", sub_type="KS", event_type="person.case-note.created", **kw) -> str:
    attributes = {"eventType": event_type}
    if note_type is not None:
        attributes["type"] = note_type
    if sub_type is not None:
        attributes["subType"] = sub_type
    return sns_body(CASE_NOTE_CREATED_EVENT | {"eventType": event_type}, attributes, **kw)


# --- the upstream fixture examples ------------------------------------------------------------------------------


def test_parses_the_upstream_alert_created_notification():
    event = parse_sqs_body(ALERT_CREATED_BODY, sqs_message_id="sqs-id")

    assert event.message_id == "18a5bc34-ee67-5107-b772-dc0f22c1da7b"
    assert event.event_type == "person.alert.created"
    assert event.inner_event_type == "person.alert.created"
    assert event.kind is EventKind.ALERT
    assert event.detail_url == "http://localhost:8080/alerts/01954cfe-9f5a-7ea3-837b-a1770b389c5b"
    assert event.noms_number == "AA0001A"
    assert event.crn is None
    assert event.case_note_type is None and event.case_note_subtype is None
    assert event.additional_information == {
        "alertUuid": "01954cfe-9f5a-7ea3-837b-a1770b389c5b",
        "alertCode": "OVI",
        "source": "DPS",
    }
    assert event.message == ALERT_CREATED_MESSAGE
    assert event.attributes == {
        "eventType": "person.alert.created",
        "publishedAt": "2025-02-28T14:38:30.29+00:00",
        "traceparent": "00-b525e7a9b05de2c11a64ff93a0ef292b-f8f18e48747b11fd-01",
    }
    # nanoseconds truncated to microseconds, Z = UTC
    assert event.occurred_at == datetime(2025, 2, 28, 14, 38, 30, 224174, tzinfo=UTC)
    assert event.ignore_reason() is None


def test_parses_the_upstream_case_note_created_event_with_attributes():
    event = parse_sqs_body(case_note_body("NEG", "IEP_WARN"))

    assert event.event_type == "person.case-note.created"
    assert event.kind is EventKind.CASE_NOTE
    assert event.case_note_type == "NEG"
    assert event.case_note_subtype == "IEP_WARN"
    assert event.noms_number == "AA0001A"
    assert event.additional_information["legacyId"] == 2222
    assert event.additional_information["id"] == "2cf4f9e1-df22-49a1-a2a7-5968a96529e3"
    assert event.occurred_at == datetime(2022, 10, 18, 8, 19, 19, 451579, tzinfo=timezone(timedelta(hours=1)))
    assert event.occurred_at.utcoffset() == timedelta(hours=1)
    # NEG is not in the allow-list: a deliberate ignore, not a failure
    assert event.ignore_reason() == "case note type not of interest: NEG IEP_WARN"


def test_alert_inactive_fixture_routes_on_the_attribute_not_the_inner_event_type():
    body = sns_body(ALERT_INACTIVE_MESSAGE, {"eventType": "person.alert.updated"})
    event = parse_sqs_body(body)

    assert event.event_type == "person.alert.updated"
    assert event.inner_event_type == "person.alert.inactive"
    assert event.kind is EventKind.ALERT


def test_attribute_wins_even_when_it_routes_elsewhere():
    body = sns_body(ALERT_INACTIVE_MESSAGE, {"eventType": "person.case-note.deleted"})
    event = parse_sqs_body(body)

    assert event.event_type == "person.case-note.deleted"
    assert event.kind is EventKind.IGNORED


def test_linkage_event_takes_first_noms_and_crn_upper_cased():
    message = LINKAGE_EVENT | {
        "personReference": {
            "identifiers": [
                {"type": "CRN", "value": " x757129 "},
                {"type": "NOMS", "value": " a1036ea "},
                {"type": "NOMS", "value": "B9999BB"},
                {"type": "CRN", "value": "Y000000"},
            ]
        }
    }
    event = parse_sqs_body(sns_body(message, {"eventType": LINKAGE_EVENT_TYPE}))

    assert event.kind is EventKind.LINKAGE
    assert event.noms_number == "A1036EA"
    assert event.crn == "X757129"
    assert event.detail_url is None
    assert event.additional_information == {"bookingNumber": "51132A"}
    assert event.ignore_reason() is None
    assert event.occurred_at == datetime(2024, 6, 11, 17, 36, 56, 241562, tzinfo=timezone(timedelta(hours=1)))


def test_linkage_event_without_noms_has_none_and_is_not_an_ignore():
    message = LINKAGE_EVENT | {"personReference": {"identifiers": [{"type": "CRN", "value": "X757129"}]}}
    event = parse_sqs_body(sns_body(message, {"eventType": LINKAGE_EVENT_TYPE}))

    assert event.noms_number is None
    assert event.crn == "X757129"
    assert event.ignore_reason() is None


# --- routing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type, kind",
    [
        ("person.case-note.created", EventKind.CASE_NOTE),
        ("person.case-note.updated", EventKind.CASE_NOTE),
        ("person.alert.created", EventKind.ALERT),
        ("person.alert.updated", EventKind.ALERT),
        ("person.alert.inactive", EventKind.ALERT),
        ("probation-case.prison-identifier.added", EventKind.LINKAGE),
        ("probation-case.prison-identifier.updated", EventKind.LINKAGE),
        ("person.case-note.deleted", EventKind.IGNORED),
        ("person.case-note.moved", EventKind.CASE_NOTE),
        ("person.alert.deleted", EventKind.IGNORED),
        ("prison.case-note.published", EventKind.IGNORED),
        ("PERSON.ALERT.CREATED", EventKind.IGNORED),
    ],
)
def test_kind_by_event_type(event_type, kind):
    event = parse_sqs_body(sns_body({"eventType": event_type, "version": 1}, {"eventType": event_type}))
    assert event.kind is kind


def test_event_type_sets_are_the_reference_ones_plus_moves_and_merged_records():
    assert CASE_NOTE_EVENT_TYPES == {"person.case-note.created", "person.case-note.updated", "person.case-note.moved"}
    assert ALERT_EVENT_TYPES == {"person.alert.created", "person.alert.updated", "person.alert.inactive"}
    assert LINKAGE_EVENT_TYPE == "probation-case.prison-identifier.added"
    assert LINKAGE_EVENT_TYPES == {"probation-case.prison-identifier.added", "probation-case.prison-identifier.updated"}


@pytest.mark.parametrize("event_type", ["person.case-note.deleted", "prison.case-note.published", "x.y"])
def test_unhandled_event_types_are_ignored_with_reason(event_type):
    event = parse_sqs_body(sns_body({"eventType": event_type}, {"eventType": event_type}))
    assert event.ignore_reason() == f"event type not handled: {event_type}"


def test_ignore_reason_caps_absurdly_long_event_types():
    event_type = "x" * 500
    event = parse_sqs_body(sns_body({"eventType": event_type}, {"eventType": event_type}))
    assert event.ignore_reason() == "event type not handled: " + "x" * 100 + "..."


# --- pre-fetch filter (§3.1) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "note_type, sub_type",
    [
        ("PRISON", "RELEASE"),
        ("TRANSFER", "FROMTOL"),
        ("GEN", "OSE"),
        ("RESET", "BCST"),
        ("RESET", "GUIDINT"),
        ("OMIC", "OMIC"),
        ("OMIC", "ANYTHING"),
        ("OMIC_OPD", "X"),
        ("KA", "KS"),
        ("KA", "KE"),
    ],
)
def test_case_notes_of_interest(note_type, sub_type):
    assert case_note_of_interest(note_type, sub_type) is True
    event = parse_sqs_body(case_note_body(note_type, sub_type))
    assert event.ignore_reason() is None


@pytest.mark.parametrize(
    "note_type, sub_type",
    [
        ("PRISON", "TRANSFER"),
        ("TRANSFER", "TOTOL"),
        ("GEN", "GEN"),
        ("RESET", "OTHER"),
        ("ALERT", "ACTIVE"),  # removed in stage 4: alerts come from the Alerts API
        ("ALERT", "INACTIVE"),
        ("NEG", "IEP_WARN"),
        ("OMIC_OPD_X", "A"),  # exact type match, not a prefix
        ("OMICX", "A"),
        ("omic", "A"),  # case-sensitive
        ("KA ", "KS"),
    ],
)
def test_case_notes_not_of_interest(note_type, sub_type):
    assert case_note_of_interest(note_type, sub_type) is False


def test_not_of_interest_reason_names_type_and_subtype():
    event = parse_sqs_body(case_note_body("PRISON", "TRANSFER", event_type="person.case-note.updated"))
    assert event.kind is EventKind.CASE_NOTE
    assert event.ignore_reason() == "case note type not of interest: PRISON TRANSFER"


@pytest.mark.parametrize(
    "note_type, sub_type", [(None, "KS"), ("KA", None), (None, None), ("", "KS"), ("KA", ""), (" ", " ")]
)
def test_case_note_of_interest_missing_values_are_false(note_type, sub_type):
    assert case_note_of_interest(note_type, sub_type) is False


def test_missing_type_attributes_fall_back_to_additional_information():
    body = sns_body(
        CASE_NOTE_CREATED_EVENT
        | {"additionalInformation": {"id": "x", "legacyId": "1", "type": "GEN", "subType": "OSE"}},
        {"eventType": "person.case-note.created"},
    )
    event = parse_sqs_body(body)
    assert event.case_note_type == "GEN"
    assert event.case_note_subtype == "OSE"
    assert event.attributes == {"eventType": "person.case-note.created"}
    assert event.ignore_reason() is None


def test_attribute_type_beats_additional_information():
    body = sns_body(
        CASE_NOTE_CREATED_EVENT | {"additionalInformation": {"type": "NEG", "subType": "IEP_WARN"}},
        {"eventType": "person.case-note.created", "type": "KA", "subType": "KE"},
    )
    event = parse_sqs_body(body)
    assert (event.case_note_type, event.case_note_subtype) == ("KA", "KE")


def test_blank_attribute_type_falls_back_to_additional_information():
    body = sns_body(
        CASE_NOTE_CREATED_EVENT | {"additionalInformation": {"type": "KA", "subType": "KS"}},
        {"eventType": "person.case-note.created", "type": " ", "subType": ""},
    )
    event = parse_sqs_body(body)
    assert (event.case_note_type, event.case_note_subtype) == ("KA", "KS")


def test_missing_type_everywhere_is_ignored_not_failed():
    body = sns_body(
        CASE_NOTE_CREATED_EVENT | {"additionalInformation": None},
        {"eventType": "person.case-note.created"},
    )
    event = parse_sqs_body(body)
    assert event.case_note_type is None and event.case_note_subtype is None
    assert event.additional_information == {}
    assert event.ignore_reason() == "case note type/subtype missing"


def test_missing_subtype_only_is_ignored():
    event = parse_sqs_body(case_note_body("KA", None))
    # additionalInformation of the fixture still has subType IEP_WARN -> fallback
    assert event.case_note_subtype == "IEP_WARN"
    event = parse_sqs_body(
        sns_body(
            CASE_NOTE_CREATED_EVENT | {"additionalInformation": {"type": "KA"}},
            {"eventType": "person.case-note.created", "type": "KA"},
        )
    )
    assert event.case_note_subtype is None
    assert event.ignore_reason() == "case note type/subtype missing"


def test_no_message_attributes_at_all_routes_on_inner_event_type():
    body = json.dumps({"Type": "Notification", "MessageId": "m-1", "Message": json.dumps(CASE_NOTE_CREATED_EVENT)})
    event = parse_sqs_body(body)
    assert event.event_type == "person.case-note.created"
    assert event.attributes == {}
    assert event.case_note_type == "NEG"
    assert event.ignore_reason() == "case note type not of interest: NEG IEP_WARN"


def test_attribute_without_event_type_falls_back_to_inner():
    body = sns_body(ALERT_CREATED_MESSAGE, {"traceparent": "00-abc"})
    event = parse_sqs_body(body)
    assert event.event_type == "person.alert.created"
    assert event.attributes == {"traceparent": "00-abc"}


def test_search_type_subtypes():
    assert search_type_subtypes() == [
        {"type": "GEN", "subTypes": ["OSE"]},
        {"type": "KA", "subTypes": []},
        {"type": "OMIC", "subTypes": []},
        {"type": "OMIC_OPD", "subTypes": []},
        {"type": "PRISON", "subTypes": ["RELEASE"]},
        {"type": "RESET", "subTypes": ["BCST", "GUIDINT"]},
        {"type": "TRANSFER", "subTypes": ["FROMTOL"]},
    ]
    # a fresh list every time (callers may mutate it)
    first = search_type_subtypes()
    first.append({"type": "X"})
    assert len(search_type_subtypes()) == 7
    assert {entry["type"] for entry in search_type_subtypes()} == set(CASE_NOTE_TYPES_OF_INTEREST)
    assert "ALERT" not in CASE_NOTE_TYPES_OF_INTEREST


# --- envelope tolerance ---------------------------------------------------------------------------------------


def test_raw_delivery_body_is_the_domain_event():
    body = json.dumps(CASE_NOTE_CREATED_EVENT)
    event = parse_sqs_body(body, sqs_message_id="sqs-123")

    assert event.message_id == "sqs-123"
    assert event.event_type == "person.case-note.created"
    assert event.inner_event_type == "person.case-note.created"
    assert event.message == body
    assert event.attributes == {}
    assert event.case_note_type == "NEG"
    assert event.case_note_subtype == "IEP_WARN"
    assert event.noms_number == "AA0001A"


def test_message_already_an_object_is_tolerated():
    body = json.dumps(
        {
            "Type": "Notification",
            "MessageId": "m-2",
            "Message": CASE_NOTE_CREATED_EVENT,
            "MessageAttributes": {"eventType": {"Type": "String", "Value": "person.case-note.created"}},
        }
    )
    event = parse_sqs_body(body)
    assert event.event_type == "person.case-note.created"
    assert json.loads(event.message) == CASE_NOTE_CREATED_EVENT
    assert event.detail_url == CASE_NOTE_CREATED_EVENT["detailUrl"]


def test_minimal_notification_without_sns_extras():
    body = json.dumps({"Message": json.dumps({"eventType": "person.alert.updated"})})
    event = parse_sqs_body(body, sqs_message_id="q-9")
    assert event.message_id == "q-9"
    assert event.event_type == "person.alert.updated"
    assert event.occurred_at is None
    assert event.detail_url is None
    assert event.noms_number is None
    assert event.additional_information == {}


def test_message_id_is_a_fresh_uuid_when_nothing_else_is_known():
    body = json.dumps({"Type": "Notification", "Message": json.dumps({"eventType": "person.alert.updated"})})
    first = parse_sqs_body(body)
    second = parse_sqs_body(body)
    assert uuid.UUID(first.message_id).version == 4
    assert first.message_id != second.message_id


def test_sns_message_id_beats_sqs_message_id():
    event = parse_sqs_body(sns_body({"eventType": "x"}, message_id="sns-1"), sqs_message_id="sqs-1")
    assert event.message_id == "sns-1"


def test_unknown_fields_are_ignored():
    message = CASE_NOTE_CREATED_EVENT | {"publishedAt": "2022-10-18T08:19:20+01:00", "somethingNew": {"a": [1]}}
    event = parse_sqs_body(
        sns_body(message, {"eventType": "person.case-note.created", "noTracing": "true"}, Extra="field")
    )
    assert event.event_type == "person.case-note.created"
    assert event.attributes["noTracing"] == "true"


def test_legacy_id_as_string_is_kept_as_given():
    message = CASE_NOTE_CREATED_EVENT | {
        "additionalInformation": {"id": "u", "legacyId": "-2222", "type": "KA", "subType": "KS"}
    }
    event = parse_sqs_body(sns_body(message))
    assert event.additional_information["legacyId"] == "-2222"
    assert event.case_note_type == "KA"


def test_non_string_attribute_values_are_dropped_but_event_type_must_be_a_string():
    body = json.dumps(
        {
            "Type": "Notification",
            "Message": json.dumps({"eventType": "person.alert.created"}),
            "MessageAttributes": {
                "eventType": {"Type": "String", "Value": "person.alert.created"},
                "count": {"Type": "Number", "Value": 3},
                "nothing": {"Type": "String"},
                "plain": "value",
            },
        }
    )
    event = parse_sqs_body(body)
    assert event.attributes == {"eventType": "person.alert.created", "plain": "value"}


@pytest.mark.parametrize(
    "occurred_at, expected",
    [
        (
            "2024-09-23T09:31:58.58471645+01:00",
            datetime(2024, 9, 23, 9, 31, 58, 584716, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("2025-02-28T14:38:30.224174387Z", datetime(2025, 2, 28, 14, 38, 30, 224174, tzinfo=UTC)),
        ("2025-02-28T14:38:30Z", datetime(2025, 2, 28, 14, 38, 30, tzinfo=UTC)),
        (
            "2025-02-28T14:38:30.1-05:30",
            datetime(2025, 2, 28, 14, 38, 30, 100000, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        ("not a date", None),
        ("2025-13-01T00:00:00Z", None),
        ("2025-02-28", None),
        (12345, None),
        (None, None),
    ],
)
def test_occurred_at_parsing(occurred_at, expected):
    message = {"eventType": "person.alert.created"}
    if occurred_at is not None:
        message["occurredAt"] = occurred_at
    event = parse_sqs_body(sns_body(message))
    assert event.occurred_at == expected
    if expected is not None:
        assert event.occurred_at.utcoffset() == expected.utcoffset()


def test_occurred_at_without_offset_is_london_time():
    event = parse_sqs_body(sns_body({"eventType": "x", "occurredAt": "2024-07-01T10:00:00"}))
    assert event.occurred_at.tzinfo is not None
    assert event.occurred_at.astimezone(UTC) == datetime(2024, 7, 1, 9, 0, tzinfo=UTC)


def test_identifier_entries_of_the_wrong_shape_are_skipped():
    message = {
        "eventType": LINKAGE_EVENT_TYPE,
        "personReference": {
            "identifiers": [
                "A1",
                None,
                {"type": "NOMS"},
                {"type": "NOMS", "value": "  "},
                {"type": "noms", "value": "c3333cc"},
            ]
        },
    }
    event = parse_sqs_body(sns_body(message))
    assert event.noms_number == "C3333CC"


@pytest.mark.parametrize("person_reference", [None, "x", {"identifiers": None}, {"identifiers": {"type": "NOMS"}}])
def test_bad_person_reference_gives_no_identifiers(person_reference):
    event = parse_sqs_body(sns_body({"eventType": LINKAGE_EVENT_TYPE, "personReference": person_reference}))
    assert event.noms_number is None
    assert event.crn is None


# --- poison messages ------------------------------------------------------------------------------------------

SECRET = "Prisoner said something confidential"


@pytest.mark.parametrize(
    "body, reason",
    [
        (f"not json {SECRET}", "body is not valid JSON"),
        ("", "body is not valid JSON"),
        (json.dumps([SECRET]), "body is not a JSON object"),
        (json.dumps(SECRET), "body is not a JSON object"),
        (json.dumps({"Type": "Notification", "Message": "{" + SECRET}), "Message is not valid JSON"),
        (json.dumps({"Type": "Notification", "Message": json.dumps([SECRET])}), "Message is not a JSON object"),
        (json.dumps({"Type": "Notification", "Message": json.dumps({"text": SECRET})}), "no event type"),
        (json.dumps({"Type": "Notification"}), "Message is missing"),
        (json.dumps({"Type": "Notification", "Message": 42}), "Message is neither a string nor a JSON object"),
        (json.dumps({"text": SECRET}), "no event type"),
        (json.dumps({"eventType": ""}), "no event type"),
        (json.dumps({"eventType": 17}), "eventType is not a string"),
        (
            json.dumps(
                {
                    "Message": json.dumps({"eventType": "x"}),
                    "MessageAttributes": {"eventType": {"Type": "String", "Value": 5}},
                }
            ),
            "eventType attribute is not a string",
        ),
    ],
)
def test_poison_messages_have_readable_reasons_without_content(body, reason):
    with pytest.raises(PoisonMessage) as caught:
        parse_sqs_body(body)
    assert caught.value.reason == reason
    assert str(caught.value) == reason
    assert SECRET not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_poison_message_does_not_chain_the_json_error():
    with pytest.raises(PoisonMessage) as caught:
        parse_sqs_body('{"Message": "{\\"text\\": \\"' + SECRET + '\\"')
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_bytes_body_is_accepted():
    event = parse_sqs_body(ALERT_CREATED_BODY.encode("utf-8"))
    assert event.event_type == "person.alert.created"


# --- envelope round trip --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        ALERT_CREATED_BODY,
        case_note_body("KA", "KS"),
        case_note_body(None, None),
        sns_body(ALERT_INACTIVE_MESSAGE, {"eventType": "person.alert.updated"}),
        json.dumps(CASE_NOTE_CREATED_EVENT),  # raw delivery
        json.dumps({"Message": CASE_NOTE_CREATED_EVENT}),  # object Message
        sns_body(LINKAGE_EVENT, {"eventType": LINKAGE_EVENT_TYPE}),
        sns_body({"eventType": "x", "text": "caf\u00e9 \U0001f600"}, {"eventType": "x", "note": "\u00e9"}),
    ],
)
def test_envelope_body_round_trips(body):
    original = parse_sqs_body(body, sqs_message_id="sqs-77")
    again = parse_sqs_body(envelope_body(original), sqs_message_id="other")

    assert again == original
    assert again.message_id == original.message_id
    assert again.message == original.message
    assert again.attributes == original.attributes
    assert again.kind is original.kind


def test_envelope_body_shape():
    event = parse_sqs_body(ALERT_CREATED_BODY)
    body = json.loads(envelope_body(event))
    assert body["Type"] == "Notification"
    assert body["MessageId"] == "18a5bc34-ee67-5107-b772-dc0f22c1da7b"
    assert body["Message"] == ALERT_CREATED_MESSAGE
    assert body["MessageAttributes"]["eventType"] == {"Type": "String", "Value": "person.alert.created"}


def test_envelope_body_of_a_hand_built_event():
    event = DomainEvent(
        message_id="m-5",
        event_type="person.alert.updated",
        inner_event_type="person.alert.updated",
        occurred_at=None,
        detail_url=None,
        noms_number=None,
        crn=None,
        case_note_type=None,
        case_note_subtype=None,
        message='{"eventType":"person.alert.updated"}',
        attributes={"eventType": "person.alert.updated"},
    )
    assert parse_sqs_body(envelope_body(event)) == event


# --- moved case notes and merged prison records, as their publishers send them (docs/upstream-apis.md §1.2, §1.5) --
MOVED_MESSAGE = {
    "occurredAt": "2025-05-02T10:11:12.123456+01:00",
    "eventType": "person.case-note.moved",
    "detailUrl": "https://case-notes-api.hmpps.service.justice.gov.uk/case-notes/B2222BB/"
    "0192c4f8-3e3c-7d8e-9a5b-1c2d3e4f5a6b",
    "description": "A case note has been moved",
    "additionalInformation": {
        "id": "0192c4f8-3e3c-7d8e-9a5b-1c2d3e4f5a6b",
        "legacyId": 123456789,
        "type": "KA",
        "subType": "KS",
        "source": "NOMIS",
        "syncToNomis": True,
        "systemGenerated": False,
        "previousNomsNumber": "A1111AA",
    },
    "personReference": {"identifiers": [{"type": "NOMS", "value": "B2222BB"}]},
    "version": 1,
}
UPDATED_MESSAGE = {
    "version": 1,
    "eventType": "probation-case.prison-identifier.updated",
    "description": "A prisoner identifier has been updated following a merge. This been reflected on the probation "
    "case.",
    "personReference": {"identifiers": [{"type": "CRN", "value": "X123456"}, {"type": "NOMS", "value": "B2222BB"}]},
    "additionalInformation": {"previousNomsNumber": "A1111AA"},
    "occurredAt": "2025-05-02T10:11:13.5+01:00",
}


def test_a_moved_case_note_event_is_a_case_note_event_for_the_new_holder():
    event = parse_sqs_body(
        sns_body(MOVED_MESSAGE, {"eventType": "person.case-note.moved", "type": "KA", "subType": "KS"})
    )
    assert event.kind is EventKind.CASE_NOTE and event.ignore_reason() is None
    assert event.noms_number == "B2222BB" and event.previous_noms_number == "A1111AA"
    assert event.detail_url.endswith("/case-notes/B2222BB/0192c4f8-3e3c-7d8e-9a5b-1c2d3e4f5a6b")
    assert (event.case_note_type, event.case_note_subtype) == ("KA", "KS")


def test_a_moved_case_note_of_no_interest_is_skipped_by_the_same_type_filter():
    message = {
        **MOVED_MESSAGE,
        "additionalInformation": {**MOVED_MESSAGE["additionalInformation"], "type": "GEN", "subType": "HIS"},
    }
    event = parse_sqs_body(sns_body(message, {"eventType": "person.case-note.moved", "type": "GEN", "subType": "HIS"}))
    assert event.ignore_reason() == "case note type not of interest: GEN HIS"


def test_an_updated_prison_identifier_is_a_linkage_of_the_new_noms_number():
    body = sns_body(UPDATED_MESSAGE, {"eventType": "probation-case.prison-identifier.updated"})
    event = parse_sqs_body(body)
    assert event.kind is EventKind.LINKAGE and event.detail_url is None
    assert (event.noms_number, event.crn, event.previous_noms_number) == ("B2222BB", "X123456", "A1111AA")
    plan = plan_intake([QueueMessage("m-1", "h-1", body)], max_per_run=10)
    assert [(link.noms_number, len(link.messages)) for link in plan.linkage] == [("B2222BB", 1)]
    assert plan.batches == [] and plan.poison == []


def test_an_updated_prison_identifier_without_a_noms_number_is_poison():
    message = {**UPDATED_MESSAGE, "personReference": {"identifiers": [{"type": "CRN", "value": "X123456"}]}}
    plan = plan_intake([QueueMessage("m-1", "h-1", sns_body(message))], max_per_run=10)
    assert [reason for _, reason in plan.poison] == ["linkage event has no NOMS identifier"]
