"""Unit tests of ``core/records.py``, ``core/rules.py`` and ``core/times.py``.

Parsing source records, filters, drafts, notes and descriptions (§3.2-§6.3).
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from integration.core.records import Alert, Amendment, CaseNote, InvalidSourceRecord
from integration.core.rules import (
    ALERT_URN_PREFIX,
    CASE_NOTE_URN_PREFIX,
    DESCRIPTION_MAX_BYTES,
    REASON_BLANK_TEXT,
    REASON_IN_TRANSIT,
    REASON_OCG,
    REASON_TEST_INSTITUTION,
    ContactDraft,
    ContactKind,
    alert_ignore_reason,
    alert_urn,
    case_note_ignore_reason,
    case_note_urn,
    contact_description,
    data_cleanse_notes,
    draft_from_alert,
    draft_from_case_note,
    map_alert,
    notes_text,
    pad_notes,
    parse_alert_staff_name,
    parse_staff_name,
    truncate_utf8,
)
from integration.core.times import NotADateTime, format_delius_datetime, to_london

UNK_LINE = (
    "Establishment details were not available when this contact was created. "
    "Please refer to throughcare history for location details if required."
)

# docs/upstream-apis.md §2.2 (amendment time given with an offset, as the reference fixtures do)
CASE_NOTE_JSON = {
    "caseNoteId": "0ec15f8b-6b57-471f-b02a-c89169a6a3e5",
    "offenderIdentifier": "AA0001A",
    "type": "NEG",
    "typeDescription": "Negative Behaviour",
    "subType": "IEP_WARN",
    "subTypeDescription": "IEP Warning",
    "source": "INST",
    "creationDateTime": "2022-07-20T11:22:35",
    "occurrenceDateTime": "2022-07-20T10:00:00",
    "authorName": "Some Name",
    "authorUserId": "12345",
    "authorUsername": "SNAME_GEN",
    "text": "This is an existing case note",
    "locationId": "LEI",
    "eventId": 11111,
    "legacyId": 11111,
    "sensitive": False,
    "systemGenerated": False,
    "amendments": [
        {
            "creationDateTime": "2022-07-20T11:25:20+00:00",
            "authorUserName": "USER1",
            "authorName": "Mickey Mouse",
            "authorUserId": "12345",
            "additionalNoteText": "Some Additional Text",
            "id": "6b1b1b0e-2f7c-4b7a-9d2e-1f0c9a7e6d11",
        }
    ],
}

# docs/upstream-apis.md §3.1 (reference fixture get-updated-alert.json plus the newer nullable fields)
ALERT_JSON = {
    "alertUuid": "01954cfe-9f5a-7ea3-837b-a1770b389c5b",
    "prisonNumber": "AA0001A",
    "alertCode": {
        "alertTypeCode": "AT",
        "alertTypeDescription": "Description of AT",
        "code": "AST",
        "description": "Description of AST",
        "canBeAdministered": True,
    },
    "description": "User entered some text about the alert",
    "authorisedBy": None,
    "activeFrom": "2025-02-27",
    "activeTo": "2025-02-28",
    "isActive": False,
    "createdAt": "2025-02-28T14:38:30",
    "createdBy": "J5M1TH",
    "createdByDisplayName": "John Smith",
    "lastModifiedAt": "2025-02-28T15:28:02",
    "lastModifiedBy": "J4NE5M1TH",
    "lastModifiedByDisplayName": "Jane Smith",
    "activeToLastSetAt": "2025-02-28T15:28:02",
    "activeToLastSetBy": "J4NE5M1TH",
    "activeToLastSetByDisplayName": "Jane Smith",
    "madeInactiveAt": None,
    "madeInactiveBy": None,
    "madeInactiveByDisplayName": None,
    "prisonCodeWhenCreated": "LEI",
}

ACTIVE_ALERT_JSON = {
    "alertUuid": "11111111-9f5a-7ea3-837b-a1770b389c5b",
    "prisonNumber": "aa0001a",
    "alertCode": {
        "alertTypeCode": "AT",
        "alertTypeDescription": "Description of AT",
        "code": "AST",
        "description": "Description of AST",
    },
    "description": "User entered some text about the alert",
    "activeFrom": "2025-02-27",
    "activeTo": None,
    "isActive": True,
    "createdAt": "2025-02-28T14:38:30.22417",
    "createdBy": "J5M1TH",
    "createdByDisplayName": "John Smith",
    "prisonCodeWhenCreated": "LEI",
}


def case_note_json(**changes):
    data = copy.deepcopy(CASE_NOTE_JSON)
    for key, value in changes.items():
        if value is _DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def alert_json(base=ACTIVE_ALERT_JSON, **changes):
    data = copy.deepcopy(base)
    for key, value in changes.items():
        if value is _DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return data


_DELETE = object()


def note(**changes) -> CaseNote:
    return CaseNote.from_api(case_note_json(**changes))


def draft(**changes) -> ContactDraft:
    base = dict(
        urn="urn:uk:gov:hmpps:prison-case-note:abc",
        kind=ContactKind.CASE_NOTE,
        noms_number="AA0001A",
        source_id="abc",
        legacy_id=None,
        type="NEG",
        sub_type="IEP_WARN",
        content="note content",
        contact_datetime=datetime(2024, 1, 1, 10, 0),
        system_datetime=datetime(2024, 1, 1, 10, 0),
        staff_forename="Some",
        staff_surname="Name",
        establishment_code="LEI",
        alert_description=None,
    )
    base.update(changes)
    return ContactDraft(**base)


# --- to_london / format_delius_datetime ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        # BST (summer): UTC 11:25:20 is 12:25:20 in London
        ("2022-07-20T11:25:20+00:00", datetime(2022, 7, 20, 12, 25, 20)),
        ("2022-07-20T11:25:20Z", datetime(2022, 7, 20, 12, 25, 20)),
        ("2022-07-20T11:25:20z", datetime(2022, 7, 20, 12, 25, 20)),
        # GMT (winter): no shift
        ("2022-01-20T11:25:20Z", datetime(2022, 1, 20, 11, 25, 20)),
        ("2022-01-20T11:25:20+00:00", datetime(2022, 1, 20, 11, 25, 20)),
        # offsets already London summer time
        ("2021-04-16T11:22:33+01:00", datetime(2021, 4, 16, 11, 22, 33)),
        ("2022-07-20T06:25:20-05:00", datetime(2022, 7, 20, 12, 25, 20)),
        ("2022-07-20T11:25:20+0000", datetime(2022, 7, 20, 12, 25, 20)),
        # no offset: already London wall clock
        ("2025-04-22T13:17:53", datetime(2025, 4, 22, 13, 17, 53)),
        ("2025-01-22T13:17", datetime(2025, 1, 22, 13, 17)),
        # fractions: microseconds kept, nanoseconds truncated
        ("2025-02-28T14:38:30.22417", datetime(2025, 2, 28, 14, 38, 30, 224170)),
        ("2024-09-23T09:31:58.58471645+01:00", datetime(2024, 9, 23, 9, 31, 58, 584716)),
        ("2025-02-28T14:38:30.224174387Z", datetime(2025, 2, 28, 14, 38, 30, 224174)),
        ("2025-02-28T14:38:30.999999999", datetime(2025, 2, 28, 14, 38, 30, 999999)),
        ("2025-02-28T14:38:30.5", datetime(2025, 2, 28, 14, 38, 30, 500000)),
        # Java ZonedDateTime.toString() zone id suffix
        ("2022-07-20T12:25:20+01:00[Europe/London]", datetime(2022, 7, 20, 12, 25, 20)),
        ("2022-07-20T11:25:20[UTC]", datetime(2022, 7, 20, 12, 25, 20)),
        # DST boundaries: last Sunday of March / October 2024
        ("2024-03-31T00:59:59Z", datetime(2024, 3, 31, 0, 59, 59)),
        ("2024-03-31T01:00:00Z", datetime(2024, 3, 31, 2, 0, 0)),
        ("2024-10-27T00:59:59Z", datetime(2024, 10, 27, 1, 59, 59)),
        ("2024-10-27T01:00:00Z", datetime(2024, 10, 27, 1, 0, 0)),
        (" 2025-04-22T13:17:53 ", datetime(2025, 4, 22, 13, 17, 53)),
    ],
)
def test_to_london_strings(value, expected):
    result = to_london(value)
    assert result == expected
    assert result.tzinfo is None


def test_to_london_datetimes():
    assert to_london(datetime(2022, 7, 20, 11, 25, 20, tzinfo=UTC)) == datetime(2022, 7, 20, 12, 25, 20)
    assert to_london(datetime(2022, 7, 20, 12, 25, 20, tzinfo=ZoneInfo("Europe/London"))) == datetime(
        2022, 7, 20, 12, 25, 20
    )
    naive = datetime(2022, 7, 20, 11, 25, 20, 123456)
    assert to_london(naive) == naive
    assert to_london(naive).tzinfo is None


SECRET_VALUE = "2022-99-99Tsecret"


@pytest.mark.parametrize(
    "value",
    [
        "2022-07-20",  # plain dates are not accepted
        "20/07/2022 11:25:20",
        "2022-07-20 11:25:20",
        "2022-07-20T11:25:20.1234567890",  # 10 fraction digits
        "2022-13-20T11:25:20",
        "2022-02-30T11:25:20",
        "2022-07-20T25:00:00",
        "2022-07-20T11:25:20+25:00",
        "2022-07-20T11:25:20[Not/AZone]",
        "",
        "yesterday",
        SECRET_VALUE,
        12345,
        None,
        date(2022, 7, 20),
    ],
)
def test_to_london_rejects(value):
    with pytest.raises(NotADateTime) as caught:
        to_london(value)
    assert SECRET_VALUE not in str(caught.value)
    assert str(value) not in str(caught.value) or value in ("",)


def test_format_delius_datetime():
    assert format_delius_datetime(datetime(2022, 7, 20, 12, 25, 20, 999999)) == "20/07/2022 12:25:20"
    assert format_delius_datetime(datetime(2024, 1, 2, 3, 4, 5)) == "02/01/2024 03:04:05"
    assert format_delius_datetime(datetime(999, 1, 2, 3, 4, 5)) == "02/01/0999 03:04:05"
    # aware values are shown in London time
    assert format_delius_datetime(datetime(2022, 7, 20, 11, 25, 20, tzinfo=UTC)) == "20/07/2022 12:25:20"


def test_data_cleanse_notes():
    assert data_cleanse_notes(datetime(2024, 3, 5, 9, 7, 1, 500)) == (
        "On 05/03/2024 09:07:01 case notes from Prison associated with a NOMS number that had been mistakenly "
        "associated with this case record were removed."
    )


# --- staff names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "author_name, expected",
    [
        ("Smith,Bob", ("Bob", "Smith")),
        ("Smith, Bob", ("Bob", "Smith")),
        ("  Smith ,  Bob  ", ("Bob", "Smith")),
        ("Van Der Berg, Anna Maria", ("Anna Maria", "Van Der Berg")),
        ("Smith, Jr, Bob", ("Bob", "Smith, Jr")),  # after the last comma
        ("Some Name", ("Some", "Name")),
        ("John Paul Smith", ("John", "Smith")),
        ("  John \t Paul   Smith  ", ("John", "Smith")),
        ("bob", ("bob", "bob")),
        ("  bob  ", ("bob", "bob")),
        ("Smith,", ("Smith", "Smith")),
        (",Bob", ("Bob", "Bob")),
        (",", ("Unknown", "Unknown")),
        ("", ("Unknown", "Unknown")),
        ("   ", ("Unknown", "Unknown")),
        (None, ("Unknown", "Unknown")),
    ],
)
def test_parse_staff_name(author_name, expected):
    assert parse_staff_name(author_name) == expected


def test_parse_staff_name_truncates_each_part_to_35_characters():
    forename, surname = parse_staff_name("A" * 40 + " " + "B" * 50)
    assert forename == "A" * 35
    assert surname == "B" * 35
    forename, surname = parse_staff_name("S" * 36 + "," + "F" * 36)
    assert (forename, surname) == ("F" * 35, "S" * 35)
    single = parse_staff_name("X" * 60)
    assert single == ("X" * 35, "X" * 35)


@pytest.mark.parametrize(
    "display_name, expected",
    [
        ("Mary Ann Smith", ("Mary Ann", "Smith")),  # split at the last space (§5.3)
        ("John Paul Smith", ("John Paul", "Smith")),
        ("Some Name", ("Some", "Name")),
        ("  Mary \t Ann   Smith  ", ("Mary Ann", "Smith")),  # whitespace runs count as one space
        ("bob", ("bob", "bob")),
        ("  bob  ", ("bob", "bob")),
        ("Smith, Mary", ("Mary", "Smith")),  # comma form as for case notes
        ("Smith,Mary Ann", ("Mary Ann", "Smith")),
        ("Van Der Berg, Anna Maria", ("Anna Maria", "Van Der Berg")),
        ("Smith,", ("Smith", "Smith")),
        (",", ("Unknown", "Unknown")),
        ("", ("Unknown", "Unknown")),
        ("   ", ("Unknown", "Unknown")),
        (None, ("Unknown", "Unknown")),
    ],
)
def test_parse_alert_staff_name(display_name, expected):
    assert parse_alert_staff_name(display_name) == expected


def test_alert_and_case_note_rules_differ_only_for_middle_names():
    assert parse_staff_name("Mary Ann Smith") == ("Mary", "Smith")
    assert parse_alert_staff_name("Mary Ann Smith") == ("Mary Ann", "Smith")
    for same in ("Jane Smith", "Smith, Jane", "jane", None):
        assert parse_alert_staff_name(same) == parse_staff_name(same)


def test_parse_alert_staff_name_truncates_each_part_to_35_characters():
    forename, surname = parse_alert_staff_name("A" * 20 + " " + "C" * 20 + " " + "B" * 50)
    assert forename == "A" * 20 + " " + "C" * 14
    assert surname == "B" * 35
    assert parse_alert_staff_name("A" * 34 + " " + "C" + " Smith") == ("A" * 34, "Smith")  # no trailing space
    assert parse_alert_staff_name("X" * 60) == ("X" * 35, "X" * 35)


# --- case note parsing -------------------------------------------------------------------------------------------


def test_case_note_from_the_upstream_example():
    parsed = CaseNote.from_api(CASE_NOTE_JSON)
    assert parsed == CaseNote(
        case_note_id="0ec15f8b-6b57-471f-b02a-c89169a6a3e5",
        offender_identifier="AA0001A",
        type="NEG",
        sub_type="IEP_WARN",
        created=datetime(2022, 7, 20, 11, 22, 35),
        occurred=datetime(2022, 7, 20, 10, 0, 0),
        author_name="Some Name",
        text="This is an existing case note",
        location_id="LEI",
        legacy_id=11111,
        amendments=(
            Amendment(
                created=datetime(2022, 7, 20, 12, 25, 20), author_name="Mickey Mouse", text="Some Additional Text"
            ),
        ),
    )


def test_case_note_id_alias_and_upper_cased_offender():
    parsed = note(caseNoteId=_DELETE, id="abc-123", offenderIdentifier=" aa0001a ")
    assert parsed.case_note_id == "abc-123"
    assert parsed.offender_identifier == "AA0001A"


@pytest.mark.parametrize(
    "field, message",
    [
        ("caseNoteId", "case note has no caseNoteId"),
        ("offenderIdentifier", "case note has no offenderIdentifier"),
        ("type", "case note has no type"),
        ("subType", "case note has no subType"),
        ("creationDateTime", "case note has no creationDateTime"),
    ],
)
@pytest.mark.parametrize("how", ["missing", "null", "blank"])
def test_case_note_required_fields(field, message, how):
    value = {"missing": _DELETE, "null": None, "blank": "  "}[how]
    with pytest.raises(InvalidSourceRecord) as caught:
        note(**{field: value})
    assert str(caught.value) == message


def test_case_note_not_an_object():
    with pytest.raises(InvalidSourceRecord, match="^case note is not a JSON object$"):
        CaseNote.from_api(["x"])


@pytest.mark.parametrize(
    "field, message",
    [
        ("creationDateTime", "case note has an invalid creationDateTime"),
        ("occurrenceDateTime", "case note has an invalid occurrenceDateTime"),
    ],
)
def test_case_note_bad_datetimes_name_the_field_not_the_value(field, message):
    with pytest.raises(InvalidSourceRecord) as caught:
        note(**{field: "secret-value-2022"})
    assert str(caught.value) == message
    assert "secret" not in str(caught.value)


def test_case_note_bad_amendment_datetime():
    amendments = [{"creationDateTime": "2022-07-20", "authorName": "A", "additionalNoteText": "t"}]
    with pytest.raises(InvalidSourceRecord, match="^case note amendment has an invalid creationDateTime$"):
        note(amendments=amendments)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"text": 5}, "case note text is not a string"),
        ({"type": 5}, "case note type is not a string"),
        ({"locationId": 5}, "case note locationId is not a string"),
        ({"amendments": "x"}, "case note amendments is not a list"),
        ({"amendments": ["x"]}, "case note amendment is not a JSON object"),
        ({"amendments": [{"additionalNoteText": 5}]}, "case note amendment additionalNoteText is not a string"),
    ],
)
def test_case_note_wrong_types(bad, message):
    with pytest.raises(InvalidSourceRecord) as caught:
        note(**bad)
    assert str(caught.value) == message


def test_occurrence_falls_back_to_creation():
    assert note(occurrenceDateTime=_DELETE).occurred == datetime(2022, 7, 20, 11, 22, 35)
    assert note(occurrenceDateTime=None).occurred == datetime(2022, 7, 20, 11, 22, 35)


def test_case_note_datetimes_with_offsets_are_converted():
    parsed = note(creationDateTime="2021-04-16T11:22:33+01:00", occurrenceDateTime="2021-04-16T09:00:00Z")
    assert parsed.created == datetime(2021, 4, 16, 11, 22, 33)
    assert parsed.occurred == datetime(2021, 4, 16, 10, 0, 0)


@pytest.mark.parametrize("location", [_DELETE, None, "", "   "])
def test_location_defaults_to_unk(location):
    assert note(locationId=location).location_id == "UNK"


def test_text_null_is_empty():
    assert note(text=None).text == ""
    assert note(text=_DELETE).text == ""


def test_author_missing_is_empty():
    assert note(authorName=_DELETE).author_name == ""


@pytest.mark.parametrize(
    "legacy, event_id, expected",
    [
        (11111, 22222, 11111),
        ("2222", None, 2222),
        ("-2222", None, -2222),
        (-5, 7, -5),
        (_DELETE, 33333, 33333),
        (None, "44444", 44444),
        ("", 55, 55),
        (_DELETE, _DELETE, None),
        (None, None, None),
        (12.0, None, 12),
    ],
)
def test_legacy_id(legacy, event_id, expected):
    assert note(legacyId=legacy, eventId=event_id).legacy_id == expected


@pytest.mark.parametrize("legacy", ["12a", "1.5", True, 1.5, [1]])
def test_invalid_legacy_id(legacy):
    with pytest.raises(InvalidSourceRecord, match="^case note has an invalid legacyId$"):
        note(legacyId=legacy)


def test_amendments_order_and_optional_fields():
    parsed = note(
        amendments=[
            {"creationDateTime": "2022-07-21T09:00:00", "authorName": "B Two", "additionalNoteText": "second"},
            {"authorName": "A One", "additionalNoteText": None},
            {"creationDateTime": None},
        ]
    )
    assert parsed.amendments == (
        Amendment(datetime(2022, 7, 21, 9, 0), "B Two", "second"),
        Amendment(None, "A One", ""),
        Amendment(None, "", ""),
    )
    assert note(amendments=None).amendments == ()
    assert note(amendments=_DELETE).amendments == ()


def test_numeric_case_note_id_is_a_string():
    assert note(caseNoteId=123456).case_note_id == "123456"


# --- case note filters (§3.2) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"text": ""}, REASON_BLANK_TEXT),
        ({"text": None}, REASON_BLANK_TEXT),
        ({"text": " \n\t "}, REASON_BLANK_TEXT),
        ({"locationId": "TRN"}, REASON_IN_TRANSIT),
        ({"locationId": "ZZG"}, REASON_TEST_INSTITUTION),
        ({"locationId": "ZZGHI"}, REASON_TEST_INSTITUTION),
        ({"locationId": "ZZGXYZ"}, REASON_TEST_INSTITUTION),
        (
            {"text": "Alert Security. Do not share with offender and OCG Nominal - Do not share made active."},
            REASON_OCG,
        ),
        ({"text": "prefix Do not share with offender and OCG Nominal suffix"}, REASON_OCG),
        # first match wins
        ({"text": "  ", "locationId": "TRN"}, REASON_BLANK_TEXT),
        ({"locationId": "TRN", "text": "Do not share with offender and OCG Nominal"}, REASON_IN_TRANSIT),
        ({"locationId": "ZZGHI", "text": "Do not share with offender and OCG Nominal"}, REASON_TEST_INSTITUTION),
    ],
)
def test_case_note_filters(changes, reason):
    assert case_note_ignore_reason(note(**changes)) == reason


def test_reason_strings_are_verbatim():
    assert REASON_BLANK_TEXT == "case note text is empty"
    assert REASON_IN_TRANSIT == "Prisoner being transferred"
    assert REASON_TEST_INSTITUTION == "Institution used for test purposes"
    assert REASON_OCG == "Filtered due to data sharing restrictions"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"locationId": "TRNX"},
        {"locationId": "XZZG"},
        {"locationId": "ZZ"},
        {"locationId": _DELETE},
        {"text": "do not share with offender and ocg nominal"},  # case-sensitive, as the reference
        {"text": "Do not share with offender"},
    ],
)
def test_case_note_passes_filters(changes):
    assert case_note_ignore_reason(note(**changes)) is None


# --- case note draft (§5.2) --------------------------------------------------------------------------------------


def test_draft_from_the_upstream_example():
    result = draft_from_case_note(CaseNote.from_api(CASE_NOTE_JSON))
    assert result == ContactDraft(
        urn="urn:uk:gov:hmpps:prison-case-note:0ec15f8b-6b57-471f-b02a-c89169a6a3e5",
        kind=ContactKind.CASE_NOTE,
        noms_number="AA0001A",
        source_id="0ec15f8b-6b57-471f-b02a-c89169a6a3e5",
        legacy_id=11111,
        type="NEG",
        sub_type="IEP_WARN",
        content=(
            "This is an existing case note\n"
            "[Mickey Mouse updated the case notes on 20/07/2022 12:25:20]\n"
            "Some Additional Text"
        ),
        contact_datetime=datetime(2022, 7, 20, 10, 0, 0),
        system_datetime=datetime(2022, 7, 20, 12, 25, 20),
        staff_forename="Some",
        staff_surname="Name",
        establishment_code="LEI",
        alert_description=None,
    )
    assert result.type_key == "NEG IEP_WARN"
    assert result.is_alert is False
    assert result.notes == (
        "NEG IEP_WARN\nThis is an existing case note\n"
        "[Mickey Mouse updated the case notes on 20/07/2022 12:25:20]\nSome Additional Text"
    )


def test_draft_without_amendments():
    result = draft_from_case_note(note(amendments=[], text="note content"))
    assert result.content == "note content"
    assert result.system_datetime == datetime(2022, 7, 20, 11, 22, 35)
    assert result.contact_datetime == datetime(2022, 7, 20, 10, 0, 0)
    assert result.notes == "NEG IEP_WARN\nnote content"


def test_draft_amendments_in_order_and_latest_time_is_system_time():
    result = draft_from_case_note(
        note(
            text="HELLO",
            amendments=[
                {
                    "creationDateTime": "2019-04-02T22:21:20",
                    "authorName": "Another Author",
                    "additionalNoteText": "another amendment",
                },
                {
                    "creationDateTime": "2019-03-01T22:21:20",
                    "authorName": "some user",
                    "additionalNoteText": "some amendment",
                },
                {"authorName": "No Date", "additionalNoteText": "undated"},
            ],
        )
    )
    assert result.content == (
        "HELLO"
        "\n[Another Author updated the case notes on 02/04/2019 22:21:20]\nanother amendment"
        "\n[some user updated the case notes on 01/03/2019 22:21:20]\nsome amendment"
        "\n[No Date updated the case notes on ]\nundated"
    )
    # the latest non-null amendment time, not the last one in the list, and not the creation time
    assert result.system_datetime == datetime(2019, 4, 2, 22, 21, 20)


def test_draft_amendments_without_times_use_creation_time():
    result = draft_from_case_note(note(amendments=[{"authorName": "X", "additionalNoteText": "y"}]))
    assert result.system_datetime == datetime(2022, 7, 20, 11, 22, 35)


def test_draft_amendment_time_in_winter_offset():
    result = draft_from_case_note(
        note(
            amendments=[
                {"creationDateTime": "2022-12-20T11:25:20.987654321Z", "authorName": "M M", "additionalNoteText": "t"}
            ]
        )
    )
    assert "[M M updated the case notes on 20/12/2022 11:25:20]" in result.content
    assert result.system_datetime == datetime(2022, 12, 20, 11, 25, 20, 987654)


def test_draft_staff_name_comma_form_and_unk_location():
    result = draft_from_case_note(note(authorName="Smith,Bob", locationId=None))
    assert (result.staff_forename, result.staff_surname) == ("Bob", "Smith")
    assert result.establishment_code == "UNK"
    assert result.notes == "NEG IEP_WARN\n" + UNK_LINE + "\n" + result.content


def test_case_note_author_keeps_the_first_and_last_token_rule():
    result = draft_from_case_note(note(authorName="Mary Ann Smith"))
    assert (result.staff_forename, result.staff_surname) == ("Mary", "Smith")


def test_stage3_alert_case_note_rules():
    result = draft_from_case_note(
        note(
            type="ALERT",
            subType="ACTIVE",
            creationDateTime="2022-07-21T15:45:10",
            occurrenceDateTime="2022-07-19T00:00:00",
            text="Alert Security. made active.\r\nSecond line\nthird",
            amendments=[],
        )
    )
    assert result.contact_datetime == datetime(2022, 7, 19, 15, 45, 10)
    assert result.alert_description == "Alert Security. made active."
    assert result.kind is ContactKind.CASE_NOTE
    assert result.notes == (
        "ALERT ACTIVE\nAlert Security. made active.\nAlert Security. made active.\r\nSecond line\nthird"
    )
    assert contact_description(result, "CNT2") == "NOMIS Alert Security. made active."


# --- alert parsing, filter and draft (§3.3, §5.3) -----------------------------------------------------------------


def test_alert_from_the_upstream_example():
    parsed = Alert.from_api(ALERT_JSON)
    assert parsed == Alert(
        alert_uuid="01954cfe-9f5a-7ea3-837b-a1770b389c5b",
        prison_number="AA0001A",
        alert_type_code="AT",
        alert_type_description="Description of AT",
        code="AST",
        code_description="Description of AST",
        description="User entered some text about the alert",
        active_from=date(2025, 2, 27),
        active_to=date(2025, 2, 28),
        is_active=False,
        created_at=datetime(2025, 2, 28, 14, 38, 30),
        created_by_display_name="John Smith",
        last_modified_at=datetime(2025, 2, 28, 15, 28, 2),
        last_modified_by_display_name="Jane Smith",
        active_to_last_set_at=datetime(2025, 2, 28, 15, 28, 2),
        prison_code_when_created="LEI",
    )


def test_alert_minimal_and_misspelt_fields_are_tolerated():
    data = alert_json(lastModifiedDisplayName="Jane Smith", somethingNew=1)
    parsed = Alert.from_api(data)
    assert parsed.prison_number == "AA0001A"
    assert parsed.active_to is None
    assert parsed.last_modified_at is None
    assert parsed.last_modified_by_display_name is None
    assert parsed.active_to_last_set_at is None
    assert parsed.created_at == datetime(2025, 2, 28, 14, 38, 30, 224170)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"alertUuid": _DELETE}, "alert has no alertUuid"),
        ({"prisonNumber": None}, "alert has no prisonNumber"),
        ({"alertCode": _DELETE}, "alert has no alertCode"),
        ({"alertCode": "AST"}, "alert has no alertCode"),
        (
            {"alertCode": {"alertTypeDescription": "d", "code": "c", "description": "d"}},
            "alert alertCode has no alertTypeCode",
        ),
        (
            {"alertCode": {"alertTypeCode": "t", "code": "c", "description": "d"}},
            "alert alertCode has no alertTypeDescription",
        ),
        (
            {"alertCode": {"alertTypeCode": "t", "alertTypeDescription": "d", "description": "d"}},
            "alert alertCode has no code",
        ),
        (
            {"alertCode": {"alertTypeCode": "t", "alertTypeDescription": "d", "code": "c"}},
            "alert alertCode has no description",
        ),
        ({"activeFrom": _DELETE}, "alert has no activeFrom"),
        ({"activeFrom": "2025-02-27T10:00:00"}, "alert has an invalid activeFrom"),
        ({"activeFrom": "2025-02-30"}, "alert has an invalid activeFrom"),
        ({"activeTo": "tomorrow"}, "alert has an invalid activeTo"),
        ({"isActive": _DELETE}, "alert has no isActive"),
        ({"isActive": "true"}, "alert isActive is not a boolean"),
        ({"createdAt": _DELETE}, "alert has no createdAt"),
        ({"createdAt": "2025-02-28"}, "alert has an invalid createdAt"),
        ({"lastModifiedAt": "garbage"}, "alert has an invalid lastModifiedAt"),
        ({"description": 12}, "alert description is not a string"),
    ],
)
def test_alert_invalid(changes, message):
    with pytest.raises(InvalidSourceRecord) as caught:
        Alert.from_api(alert_json(**changes))
    assert str(caught.value) == message


def test_alert_not_an_object():
    with pytest.raises(InvalidSourceRecord, match="^alert is not a JSON object$"):
        Alert.from_api(None)


def test_alert_ignore_reason():
    docgm = Alert.from_api(
        alert_json(
            alertCode={
                "alertTypeCode": "D",
                "alertTypeDescription": "Security",
                "code": "DOCGM",
                "description": "OCG Nominal - Do not share",
            }
        )
    )
    assert alert_ignore_reason(docgm) == "OCG nominal alert (DOCGM)"
    assert alert_ignore_reason(Alert.from_api(ALERT_JSON)) is None


def test_inactive_alert_draft_from_the_upstream_example():
    result = draft_from_alert(Alert.from_api(ALERT_JSON))
    assert result == ContactDraft(
        urn="urn:uk:gov:hmpps:prisoner-alert:inactive:01954cfe-9f5a-7ea3-837b-a1770b389c5b",
        kind=ContactKind.INACTIVE_ALERT,
        noms_number="AA0001A",
        source_id="01954cfe-9f5a-7ea3-837b-a1770b389c5b",
        legacy_id=None,
        type="ALERT",
        sub_type="INACTIVE",
        content="User entered some text about the alert",
        # activeTo's date with the time of max(activeToLastSetAt, lastModifiedAt, createdAt)
        contact_datetime=datetime(2025, 2, 28, 15, 28, 2),
        system_datetime=datetime(2025, 2, 28, 15, 28, 2),
        staff_forename="Jane",
        staff_surname="Smith",
        establishment_code="LEI",
        alert_description="Alert Description of AT and Description of AST made inactive.",
    )
    assert result.is_alert is True
    assert result.type_key == "ALERT INACTIVE"
    assert result.notes == (
        "ALERT INACTIVE\nAlert Description of AT and Description of AST made inactive.\n"
        "User entered some text about the alert"
    )


def test_active_alert_draft():
    result = draft_from_alert(Alert.from_api(ACTIVE_ALERT_JSON))
    assert result.urn == "urn:uk:gov:hmpps:prisoner-alert:active:11111111-9f5a-7ea3-837b-a1770b389c5b"
    assert result.kind is ContactKind.ACTIVE_ALERT
    assert result.sub_type == "ACTIVE"
    assert result.noms_number == "AA0001A"
    # activeFrom's date with createdAt's time (the only time there is)
    assert result.contact_datetime == datetime(2025, 2, 27, 14, 38, 30, 224170)
    assert result.system_datetime == datetime(2025, 2, 28, 14, 38, 30, 224170)
    assert (result.staff_forename, result.staff_surname) == ("John", "Smith")
    assert result.notes == (
        "ALERT ACTIVE\nAlert Description of AT and Description of AST made active.\n"
        "User entered some text about the alert"
    )


def test_alert_contact_time_uses_the_latest_of_three_times():
    result = draft_from_alert(
        Alert.from_api(
            alert_json(
                createdAt="2025-03-01T08:00:00",
                lastModifiedAt="2025-03-02T07:00:00",  # latest instant, earlier time of day
                activeToLastSetAt="2025-03-01T23:00:00",
                lastModifiedByDisplayName="Mary Ann Jones",
            )
        )
    )
    assert result.contact_datetime == datetime(2025, 2, 27, 7, 0, 0)
    assert result.system_datetime == datetime(2025, 3, 2, 7, 0, 0)
    assert (result.staff_forename, result.staff_surname) == ("Mary Ann", "Jones")  # alerts: split at the last space


def test_alert_contact_time_active_to_last_set_wins():
    result = draft_from_alert(
        Alert.from_api(
            alert_json(
                ALERT_JSON,
                createdAt="2025-02-28T14:38:30",
                lastModifiedAt="2025-02-28T15:00:00",
                activeToLastSetAt="2025-02-28T16:45:00",
            )
        )
    )
    assert result.contact_datetime == datetime(2025, 2, 28, 16, 45, 0)
    assert result.system_datetime == datetime(2025, 2, 28, 15, 0, 0)


def test_inactive_alert_without_active_to_falls_back_to_active_from():
    result = draft_from_alert(Alert.from_api(alert_json(ALERT_JSON, activeTo=None)))
    assert result.contact_datetime == datetime(2025, 2, 27, 15, 28, 2)
    assert result.sub_type == "INACTIVE"


def test_alert_staff_falls_back_to_creator_and_unknown():
    result = draft_from_alert(Alert.from_api(alert_json(ALERT_JSON, lastModifiedByDisplayName=" ")))
    assert (result.staff_forename, result.staff_surname) == ("John", "Smith")
    result = draft_from_alert(Alert.from_api(alert_json(createdByDisplayName=None)))
    assert (result.staff_forename, result.staff_surname) == ("Unknown", "Unknown")


def test_alert_staff_name_is_split_at_the_last_space():
    result = draft_from_alert(Alert.from_api(alert_json(ALERT_JSON, lastModifiedByDisplayName="Mary Ann Smith")))
    assert (result.staff_forename, result.staff_surname) == ("Mary Ann", "Smith")
    result = draft_from_alert(
        Alert.from_api(alert_json(ALERT_JSON, lastModifiedByDisplayName=None, createdByDisplayName="John Paul Jones"))
    )
    assert (result.staff_forename, result.staff_surname) == ("John Paul", "Jones")
    result = draft_from_alert(Alert.from_api(alert_json(ALERT_JSON, lastModifiedByDisplayName="Smith, Mary Ann")))
    assert (result.staff_forename, result.staff_surname) == ("Mary Ann", "Smith")


@pytest.mark.parametrize("prison_code", [None, _DELETE, "", "  "])
def test_alert_without_prison_code_goes_through_unk_with_the_unk_line(prison_code):
    # A NOMIS resync rebuilds alerts without prisonCodeWhenCreated: the UNK path of §5.4 (docs/decisions.md)
    result = draft_from_alert(Alert.from_api(alert_json(prisonCodeWhenCreated=prison_code)))
    assert result.establishment_code == "UNK"
    assert result.notes == (
        "ALERT ACTIVE\n" + UNK_LINE + "\nAlert Description of AT and Description of AST made active.\n"
        "User entered some text about the alert"
    )
    mapped = map_alert(alert_json(prisonCodeWhenCreated=prison_code))
    assert mapped.draft == result and mapped.invalid is None and isinstance(mapped.record, Alert)


def test_alert_without_description_has_empty_content():
    result = draft_from_alert(Alert.from_api(alert_json(description=None)))
    assert result.content == ""
    assert result.notes == "ALERT ACTIVE\nAlert Description of AT and Description of AST made active.\n"


def test_alert_with_unk_prison_code_gets_the_unk_line_before_the_description():
    result = draft_from_alert(Alert.from_api(alert_json(prisonCodeWhenCreated="UNK")))
    assert result.notes == (
        "ALERT ACTIVE\n" + UNK_LINE + "\nAlert Description of AT and Description of AST made active.\n"
        "User entered some text about the alert"
    )


# --- URNs ----------------------------------------------------------------------------------------------------


def test_urns():
    assert CASE_NOTE_URN_PREFIX == "urn:uk:gov:hmpps:prison-case-note:"
    assert ALERT_URN_PREFIX == "urn:uk:gov:hmpps:prisoner-alert:"
    assert case_note_urn("abc") == "urn:uk:gov:hmpps:prison-case-note:abc"
    assert alert_urn("u-1", True) == "urn:uk:gov:hmpps:prisoner-alert:active:u-1"
    assert alert_urn("u-1", False) == "urn:uk:gov:hmpps:prisoner-alert:inactive:u-1"


# --- notes (§5.4) ------------------------------------------------------------------------------------------------


def test_notes_text_variants():
    assert notes_text(draft()) == "NEG IEP_WARN\nnote content"
    assert notes_text(draft(establishment_code="UNK")) == "NEG IEP_WARN\n" + UNK_LINE + "\nnote content"
    assert notes_text(draft(alert_description="Alert X made active.")) == (
        "NEG IEP_WARN\nAlert X made active.\nnote content"
    )
    assert notes_text(draft(alert_description="   ")) == "NEG IEP_WARN\nnote content"
    assert notes_text(draft(alert_description="")) == "NEG IEP_WARN\nnote content"
    assert notes_text(draft(establishment_code="UNK", alert_description="D", content="")) == (
        "NEG IEP_WARN\n" + UNK_LINE + "\nD\n"
    )
    # never truncated
    long_content = "x" * 100_000
    assert notes_text(draft(content=long_content)) == "NEG IEP_WARN\n" + long_content


def test_pad_notes_never_shorter():
    assert pad_notes("short", "a much longer existing note") == "short" + " " * 22
    assert len(pad_notes("short", "a much longer existing note")) == len("a much longer existing note")
    assert pad_notes("a longer new note", "old") == "a longer new note"
    assert pad_notes("same", "four") == "same"
    assert pad_notes("new", None) == "new"
    assert pad_notes("new", "") == "new"


# --- description (§5.5) --------------------------------------------------------------------------------------------


def test_truncate_utf8_fits():
    assert DESCRIPTION_MAX_BYTES == 200
    assert truncate_utf8("short") == "short"
    exactly = "a" * 200
    assert truncate_utf8(exactly) == exactly
    four_byte = "\U0001f600" * 50  # exactly 200 bytes
    assert truncate_utf8(four_byte) == four_byte


@pytest.mark.parametrize(
    "text, kept, expected_bytes",
    [
        ("a" * 201, "a" * 198, 200),
        ("a" * 1000, "a" * 198, 200),
        ("\u00e9" * 101, "\u00e9" * 99, 200),  # 2-byte chars: 198 bytes kept
        ("\u20ac" * 70, "\u20ac" * 66, 200),  # 3-byte chars: 198 bytes kept
        ("\U0001f600" * 51, "\U0001f600" * 49, 198),  # 4-byte chars: 196 bytes, a 50th would reach 200
        ("a" + "\u20ac" * 70, "a" + "\u20ac" * 65, 198),
        ("ab" + "\u20ac" * 70, "ab" + "\u20ac" * 65, 199),
    ],
)
def test_truncate_utf8_multibyte(text, kept, expected_bytes):
    result = truncate_utf8(text)
    assert result == kept + " ~"
    assert len(result.encode("utf-8")) == expected_bytes
    assert len(result.encode("utf-8")) <= 200
    assert result.endswith(" ~")


def test_truncate_utf8_other_limit():
    assert truncate_utf8("abcdefghij", 8) == "abcdef ~"
    assert truncate_utf8("abcdefgh", 8) == "abcdefgh"


def test_description_for_alerts():
    active = draft_from_alert(Alert.from_api(ACTIVE_ALERT_JSON))
    assert contact_description(active, "CNT2") == "NOMIS Alert Description of AT and Description of AST made active."
    inactive = draft_from_alert(Alert.from_api(ALERT_JSON))
    assert contact_description(inactive, "NOMISD") == (
        "NOMIS Alert Description of AT and Description of AST made inactive."
    )


def test_alert_description_truncated_to_200_bytes_with_multibyte_characters():
    long_code = {
        "alertTypeCode": "AT",
        "alertTypeDescription": "Caf\u00e9 \u00e9l\u00e8ve " * 10,
        "code": "AST",
        "description": "\u20ac" * 60,
    }
    result = draft_from_alert(Alert.from_api(alert_json(alertCode=long_code)))
    description = contact_description(result, "CNT2")
    full = "NOMIS " + result.alert_description
    assert len(full.encode("utf-8")) > 200
    assert description.endswith(" ~")
    assert len(description.encode("utf-8")) <= 200
    assert len(description.encode("utf-8")) >= 197
    assert full.startswith(description[:-2])


@pytest.mark.parametrize(
    "content, expected",
    [
        ("Case note summary from Accommodation BCST2 report\n\ntext", "BCST case note for Accommodation"),
        (
            "Case note summary from Attitudes, thinking and behaviour BCST2 report",
            "BCST case note for Attitudes, thinking and behaviour",
        ),
        (
            "Case note summary from Children, families and communities BCST2 report",
            "BCST case note for Children, families and community",
        ),
        ("Case note summary from Drugs and alcohol Pre-release report", "BCST case note for Drugs and alcohol"),
        (
            "Case note summary from Education, skills and work BCST2 report",
            "BCST case note for Education, skills and work",
        ),
        ("Case note summary from Finance and ID Pre-release report", "BCST case note for Finance and ID"),
        ("Case note summary from Health BCST2 report", "BCST case note for Health"),
        ("Intro line\nCase note summary from health BCST2 report", "BCST case note for Health"),
        ("Case note summary from ACCOMMODATION report", "BCST case note for Accommodation"),
        ("case note summary from drugs and alcohol", "BCST case note for Drugs and alcohol"),
        # no match -> None (even though the contact type would be NOMISD)
        ("Case note summary from Housing report", None),
        ("Case note summary from  Accommodation", None),
        ("Summary from Accommodation", None),
        ("Some random text", None),
        ("", None),
        # only the first occurrence counts
        ("Case note summary from Housing, then Case note summary from Health", None),
    ],
)
@pytest.mark.parametrize("contact_type_code", ["BCSP2", "NOMISD"])
def test_description_for_bcst(content, expected, contact_type_code):
    assert contact_description(draft(type="RESET", sub_type="BCST", content=content), contact_type_code) == expected


def test_description_for_guided_interview_is_not_bcst():
    guided = draft(type="RESET", sub_type="GUIDINT", content="Case note summary from Health report")
    assert contact_description(guided, "NOMIS033") is None
    assert contact_description(guided, "NOMISD") == "NOMIS Case Note - RESET - GUIDINT"


def test_description_for_default_type_and_others():
    assert contact_description(draft(), "NOMISD") == "NOMIS Case Note - NEG - IEP_WARN"
    assert contact_description(draft(), "CNT1") is None
    assert contact_description(draft(), "nomisd") is None
    long = contact_description(draft(type="T" * 150, sub_type="S\u00e9" * 40), "NOMISD")
    assert long.endswith(" ~")
    assert len(long.encode("utf-8")) <= 200
    assert long.startswith("NOMIS Case Note - TTT")


def test_case_note_draft_end_to_end_for_bcst():
    result = draft_from_case_note(
        note(
            type="RESET",
            subType="BCST",
            text="Case note summary from Finance and ID BCST2 report\n\nDetail",
            amendments=[],
        )
    )
    assert result.notes == "RESET BCST\nCase note summary from Finance and ID BCST2 report\n\nDetail"
    assert contact_description(result, "BCSP2") == "BCST case note for Finance and ID"
    assert contact_description(draft(type="ALERT", sub_type="ACTIVE", alert_description=None), "X") == "NOMIS "
