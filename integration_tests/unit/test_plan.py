"""The merge decisions (``integration/delius/plan.py``) without a database."""

from __future__ import annotations

import ast
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from integration.core import rules
from integration.core.outcomes import (
    REASON_OFFENDER_NOT_FOUND,
    REASON_OUT_OF_SEQUENCE,
    REASON_SUPERSEDED,
    REASON_UP_TO_DATE,
    Action,
    MergeConfigurationError,
    MergeFailure,
)
from integration.core.rules import ContactDraft, ContactKind
from integration.delius import plan
from integration.delius.plan import Existing, Kind, Person, Provider, Reference

T0 = datetime(2024, 3, 1, 10, 15, 30)
NOW = datetime(2024, 6, 1, 12, 0, 0)
LEI = Provider(area_id=11, area_code="LEI", team_id=21)


def draft(
    noms="A1234BC",
    *,
    kind=ContactKind.CASE_NOTE,
    uuid_=None,
    type_="KA",
    sub_type="KS",
    content="text",
    contact=T0,
    system=T0,
    establishment="LEI",
    legacy_id=None,
    forename="Bob",
    surname="Smith",
    alert_description=None,
) -> ContactDraft:
    source_id = uuid_ or str(uuid.uuid4())
    urn = (
        rules.case_note_urn(source_id)
        if kind is ContactKind.CASE_NOTE
        else rules.alert_urn(source_id, kind is ContactKind.ACTIVE_ALERT)
    )
    return ContactDraft(
        urn=urn,
        kind=kind,
        noms_number=noms,
        source_id=source_id,
        legacy_id=legacy_id,
        type=type_,
        sub_type=sub_type,
        content=content,
        contact_datetime=contact,
        system_datetime=system,
        staff_forename=forename,
        staff_surname=surname,
        establishment_code=establishment,
        alert_description=alert_description,
    )


def existing(noms="A1234BC", *, last_updated=T0, urn="x", notes="KA KS\nold text", row_version=3) -> Existing:
    return Existing(
        contact_id=5000001,
        offender_id=7,
        external_reference=urn,
        notes=notes,
        last_updated=last_updated,
        row_version=row_version,
        noms_number=noms,
        crn="X123456",
    )


def reference(**overrides) -> Reference:
    values = dict(
        user_id=1,
        interaction_id=2,
        contact_type_by_code={"NOMISD": (100, "N"), "NKWS": (101, "N"), "NOMC": (102, "Y"), "OTHER": (103, "N")},
        contact_type_by_id={100: ("NOMISD", "N"), 101: ("NKWS", "N"), 102: ("NOMC", "Y"), 103: ("OTHER", "N")},
        mapped_type={"KA KS": 101, "OMIC OPEN": 102},
        provider_by_prison={"LEI": LEI, "XYZ": "Probation Area not found for NOMIS institution: XYZ"},
    )
    values.update(overrides)
    return Reference(**values)


def test_plan_imports_no_database_library():
    tree = ast.parse(Path(plan.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert not imported & {"sqlalchemy", "pandas", "dagster", "psycopg2", "oracledb", "boto3", "requests"}
    assert relative <= {None, "core", "core.outcomes", "core.rules", "core.text", "core.times"}


# ------------------------------------------------------------------------------------------------ winners


def test_the_newest_draft_of_a_urn_wins_and_the_later_one_on_a_tie():
    note = str(uuid.uuid4())
    old, new, tie, other = (
        draft(uuid_=note, system=T0),
        draft(uuid_=note, system=T0 + timedelta(minutes=1)),
        draft(uuid_=note, system=T0 + timedelta(minutes=1)),
        draft(),
    )
    winners, superseded = plan.pick_winners([new, old, tie, other])
    assert winners == [2, 3]
    assert set(superseded) == {0, 1}
    assert all(o.action is Action.UNCHANGED and o.reason == REASON_SUPERSEDED for o in superseded.values())


def test_legacy_lookup_only_for_case_notes_with_a_legacy_id_and_no_urn_match():
    found, legacy, alert, plain = (
        draft(legacy_id=1),
        draft(legacy_id=2),
        draft(kind=ContactKind.ACTIVE_ALERT),
        draft(),
    )
    assert plan.legacy_lookup([found, legacy, alert, plain], {found.urn}) == {2: legacy.urn}


# ------------------------------------------------------------------------------------------------ classification


def test_no_contact_is_a_create_and_another_persons_contact_a_move():
    assert plan.classify(draft(), None, NOW).kind is Kind.CREATE
    decision = plan.classify(draft("A2222BB"), existing("A1111AA"), NOW)
    assert decision.kind is Kind.MOVE and decision.existing.noms_number == "A1111AA"


def test_a_move_needs_a_draft_that_is_not_older_to_the_second():
    row = existing("A1111AA", last_updated=T0.replace(microsecond=500000))
    assert plan.classify(draft("A2222BB", system=T0), row, NOW).kind is Kind.MOVE  # a correction: same time
    assert plan.classify(draft("A2222BB", system=T0 + timedelta(days=9)), row, NOW).kind is Kind.MOVE
    older = plan.classify(draft("A2222BB", system=T0 - timedelta(seconds=1)), row, NOW)
    assert (older.kind, older.reason) == (Kind.UNCHANGED, REASON_OUT_OF_SEQUENCE)


def test_update_only_when_the_stored_time_is_older_to_the_second():
    row = existing(last_updated=T0.replace(microsecond=400000))
    assert plan.classify(draft(system=T0 + timedelta(seconds=1)), row, NOW).kind is Kind.UPDATE
    same_second = plan.classify(draft(system=T0.replace(microsecond=999999)), row, NOW)
    assert (same_second.kind, same_second.reason) == (Kind.UNCHANGED, REASON_UP_TO_DATE)
    older = plan.classify(draft(system=T0 - timedelta(seconds=1)), row, NOW)
    assert (older.kind, older.reason) == (Kind.UNCHANGED, REASON_OUT_OF_SEQUENCE)
    outcome = plan.unchanged_outcome(draft(), older)
    assert (outcome.action, outcome.contact_id, outcome.crn) == (Action.UNCHANGED, 5000001, "X123456")


def test_a_legacy_row_without_urn_gets_only_its_urn_when_of_interest():
    legacy = existing(urn=None)
    recent = draft(contact=NOW - timedelta(days=10), system=T0)
    old = draft(contact=NOW - timedelta(days=400), system=T0)
    active_alert = draft(kind=ContactKind.ACTIVE_ALERT, contact=NOW - timedelta(days=4000), system=T0)
    inactive_alert = draft(kind=ContactKind.INACTIVE_ALERT, contact=NOW - timedelta(days=400), system=T0)
    assert plan.classify(recent, legacy, NOW).kind is Kind.URN_ONLY
    assert plan.classify(active_alert, legacy, NOW).kind is Kind.URN_ONLY
    assert plan.classify(old, legacy, NOW).kind is Kind.UNCHANGED
    assert plan.classify(inactive_alert, legacy, NOW).kind is Kind.UNCHANGED
    assert plan.classify(recent, existing(), NOW).kind is Kind.UNCHANGED  # has a URN already


# ------------------------------------------------------------------------------------------------ target


def test_target_needs_exactly_one_person_then_type_then_provider():
    ref = reference()
    persons = {"A1234BC": [Person(7, "X123456")], "A2222BB": [Person(8, "X2"), Person(9, "X3")]}
    target = plan.resolve_target(draft(), ref, persons)
    assert (target.person, target.contact_type_id, target.provider) == (Person(7, "X123456"), 101, LEI)
    with pytest.raises(MergeFailure) as missing:
        plan.resolve_target(draft("Z9999ZZ"), ref, persons)
    assert missing.value.reason == REASON_OFFENDER_NOT_FOUND
    assert plan.failure_outcome(draft(), missing.value).action is Action.SKIPPED
    with pytest.raises(MergeFailure) as twice:
        plan.resolve_target(draft("A2222BB"), ref, persons)
    assert twice.value.reason == "2 offenders have NOMS number A2222BB" and not twice.value.retryable
    assert plan.failure_outcome(draft(), twice.value).action is Action.FAILED


def test_unmapped_type_falls_back_to_nomisd_which_must_exist():
    persons = {"A1234BC": [Person(7, "X123456")]}
    assert plan.resolve_target(draft(type_="ODD", sub_type="ONE"), reference(), persons).contact_type_id == 100
    no_default = reference(contact_type_by_code={"NKWS": (101, "N")})
    with pytest.raises(MergeFailure) as failure:
        plan.resolve_target(draft(type_="ODD", sub_type="ONE"), no_default, persons)
    assert failure.value.reason == "contact type NOMISD not found" and failure.value.retryable


def test_establishment_must_resolve_to_a_provider_with_a_csn_team():
    persons = {"A1234BC": [Person(7, "X123456")]}
    for establishment, reason in (
        ("LE", "Invalid establishment code: 'LE'"),
        ("XYZ", "Probation Area not found for NOMIS institution: XYZ"),
        ("QQQ", "establishment not resolved"),
    ):
        with pytest.raises(MergeFailure) as failure:
            plan.resolve_target(draft(establishment=establishment), reference(), persons)
        assert failure.value.reason == reason


def test_providers_take_the_lowest_area_of_the_prison_and_its_csn_team():
    providers = plan.providers_by_prison(
        ["LEI", "MDI", "WWI"],
        [("LEI", 12, "LE2"), ("LEI", 11, "LEI"), ("MDI", 13, "MDI")],
        {"LEICSN": 21, "LE2CSN": 22},
    )
    assert providers == {
        "LEI": Provider(11, "LEI", 21),
        "MDI": "Team with code of MDICSN not found",
        "WWI": "Probation Area not found for NOMIS institution: WWI",
    }


def test_the_business_interaction_must_exist_and_be_enabled():
    assert plan.check_interaction("APIBI001", (2, None), NOW) == 2
    assert plan.check_interaction("APIBI001", (2, NOW), NOW) == 2
    with pytest.raises(MergeConfigurationError, match="not found"):
        plan.check_interaction("APIBI001", None, NOW)
    with pytest.raises(MergeConfigurationError, match="not enabled until"):
        plan.check_interaction("APIBI001", (2, NOW + timedelta(seconds=1)), NOW)


# ------------------------------------------------------------------------------------------------ values


def test_new_contact_values_hold_the_full_contact_time_in_both_columns_to_the_second():
    target = plan.Target(Person(7, "X123456"), 102, LEI)
    values = plan.new_contact_values(
        draft(
            type_="OMIC",
            sub_type="OPEN",
            contact=datetime(2024, 3, 1, 9, 0, 5, 123000),
            system=datetime(2024, 3, 1, 10, 15, 30, 999000),
        ),
        target,
        1000001,
        reference(),
    )
    assert values["contact_date"] == values["contact_start_time"] == datetime(2024, 3, 1, 9, 0, 5)
    assert values["created_datetime"] == values["last_updated_datetime"] == datetime(2024, 3, 1, 10, 15, 30)
    assert (
        values["staff_id"],
        values["staff_employee_id"],
        values["team_id"],
        values["trust_provider_team_id"],
        values["probation_area_id"],
    ) == (1000001, 1000001, 21, 21, 11)
    assert (values["sensitive"], values["event_id"], values["nsi_id"], values["nomis_case_note_id"]) == (
        "Y",
        None,
        None,
        None,
    )
    assert (values["created_by_user_id"], values["last_updated_user_id"], values["row_version"]) == (1, 1, 0)
    assert "contact_id" not in values
    moved = plan.move_values(values, existing(row_version=3))
    assert moved["row_version"] == 4 and moved["offender_id"] == 7


def test_update_values_pad_the_notes_and_a_urn_backfill_writes_the_urn_only():
    row = existing(notes="KA KS\na much longer original text")
    newer = draft(content="short", contact=datetime(2024, 3, 2, 8, 0, 0, 5), system=T0 + timedelta(hours=1))
    values = plan.update_values(newer, row, 1, urn_only=False)
    assert values["notes"].rstrip(" ") == "KA KS\nshort" and len(values["notes"]) == len(row.notes)
    assert values["contact_date"] == values["contact_start_time"] == datetime(2024, 3, 2, 8, 0, 0)
    assert values["last_updated_datetime"] == T0 + timedelta(hours=1)
    assert (values["external_reference"], values["row_version"]) == (newer.urn, 4)
    assert plan.update_values(newer, row, 1, urn_only=True) == {
        "external_reference": newer.urn,
        "last_updated_user_id": 1,
        "row_version": 4,
    }


def test_links_prefer_the_latest_mapped_nsi_then_the_only_custodial_event():
    nsis = [(date(2023, 1, 1), 31, 41), (date(2024, 1, 1), 32, 42), (date(2024, 1, 1), 30, 40)]
    assert plan.choose_links(draft(), nsis, {41, 42}) == (42, 32)
    assert plan.choose_links(draft(), [], {41}) == (41, None)
    assert plan.choose_links(draft(), [], {41, 42}) == (None, None)
    assert plan.choose_links(draft(), [], []) == (None, None)
    assert plan.choose_links(draft(kind=ContactKind.ACTIVE_ALERT), nsis, {41}) == (None, None)


def test_data_cleanse_contact_values():
    now = datetime(2024, 5, 6, 7, 8, 9, 123)
    values = plan.data_cleanse_values(
        offender_id=7, staff_id=8, team_id=9, area_id=10, contact_type_id=103, sensitive="N", user_id=1, now=now
    )
    assert values["description"] == "Data Cleanse" and values["external_reference"] is None
    assert values["notes"] == rules.data_cleanse_notes(now.replace(microsecond=0))
    assert (
        values["contact_date"]
        == values["contact_start_time"]
        == values["created_datetime"]
        == now.replace(microsecond=0)
    )
    assert (values["event_id"], values["nsi_id"], values["staff_id"], values["staff_employee_id"]) == (None, None, 8, 8)


def test_staff_and_staff_team_values_carry_the_audit_columns():
    now = datetime(2024, 5, 6, 7, 8, 9, 500)
    staff = plan.staff_values(
        staff_id=1000001, officer_code="LEIA001", forename="Bob", surname="Smith", area_id=11, user_id=1, now=now
    )
    assert (
        staff["start_date"] == staff["created_datetime"] == staff["last_updated_datetime"] == now.replace(microsecond=0)
    )
    assert (staff["created_by_user_id"], staff["last_updated_user_id"], staff["private"], staff["row_version"]) == (
        1,
        1,
        0,
        0,
    )
    assert "staff_id" not in plan.staff_values(
        staff_id=None, officer_code="X", forename="a", surname="b", area_id=1, user_id=1, now=now
    )
    team = plan.staff_team_values(staff_id=1000001, team_id=21, user_id=1, now=now)
    assert team == {
        "staff_id": 1000001,
        "team_id": 21,
        "created_by_user_id": 1,
        "created_datetime": now.replace(microsecond=0),
        "last_updated_user_id": 1,
        "last_updated_datetime": now.replace(microsecond=0),
        "row_version": 0,
    }


def test_staff_are_keyed_case_insensitively_by_area():
    assert plan.draft_staff_key(draft(forename="BOB", surname="smith"), LEI) == (11, "bob", "smith")


# ------------------------------------------------------------------------------------------------ officer codes


def test_officer_codes_after_the_highest_roll_over_letters():
    assert plan.officer_codes_after("N07", [], 2) == ["N07A001", "N07A002"]
    assert plan.officer_codes_after("N07", ["N07A998", "N07A010", "LEIZ999", "N07XX"], 3) == [
        "N07A999",
        "N07B000",
        "N07B001",
    ]
    with pytest.raises(MergeFailure, match="exhausted"):
        plan.officer_codes_after("N07", ["N07Z998"], 2)
    assert plan.officer_codes_after("N07", ["N07Z998"], 1) == ["N07Z999"]


def test_a_null_answer_from_delius_means_a000():
    assert plan.officer_code_from_function("LEI", "LEIB123") == "LEIB123"
    assert plan.officer_code_from_function("LEI", None) == "LEIA000"
    assert plan.officer_code_from_function("LEI", " ") == "LEIA000"
    assert plan.officer_prefix("n07x") == "N07"


# ------------------------------------------------------------------------------------------------ audit


def test_audit_rows_have_the_delius_shape_and_distinct_times():
    drafts = [draft() for _ in range(2000)]
    times = plan.audit_times(datetime(2024, 1, 1, 12, 0, 0, 999000), len(drafts), timedelta(microseconds=1))
    rows = plan.audit_rows([(5000000 + n, d) for n, d in enumerate(drafts)], times, interaction_id=2, user_id=1)
    assert len({(r["date_time"], r["business_interaction_id"], r["user_id"]) for r in rows}) == 2000
    assert rows[0] == {
        "date_time": datetime(2024, 1, 1, 12, 0, 0, 999000),
        "business_interaction_id": 2,
        "user_id": 1,
        "outcome": "P",
        "interaction_parameters": f"dpsId='{drafts[0].source_id}',contactId='5000000'",
    }
    assert rows[-1]["date_time"] == datetime(2024, 1, 1, 12, 0, 1, 999)


def test_audit_times_in_whole_seconds_for_a_date_column():
    times = plan.audit_times(datetime(2024, 1, 1, 12, 0, 0, 700), 3, timedelta(seconds=1))
    assert times == [datetime(2024, 1, 1, 12, 0, 0), datetime(2024, 1, 1, 12, 0, 1), datetime(2024, 1, 1, 12, 0, 2)]


def test_a_second_batch_never_reuses_the_first_ones_audit_times():
    step = timedelta(microseconds=1)
    assert plan.next_audit_start(NOW, None, step) == NOW
    assert plan.next_audit_start(NOW, NOW + timedelta(milliseconds=2), step) == NOW + timedelta(milliseconds=2) + step
    assert plan.next_audit_start(NOW, NOW - timedelta(seconds=1), step) == NOW


def test_audit_parameters_fit_the_column():
    assert (
        plan.audit_parameters("0e6bd0f8-4b5e-4a61-a4c4-3b7c3c1a0d2e", 5000001)
        == "dpsId='0e6bd0f8-4b5e-4a61-a4c4-3b7c3c1a0d2e',contactId='5000001'"
    )
    with pytest.raises(ValueError):
        plan.audit_parameters("x" * 500, 1)


# ------------------------------------------------------------------------------------------------ moves and UNK


def test_a_moved_note_keeps_its_time_so_an_equal_timestamp_is_a_move_not_a_stale_update():
    # The Case Notes API moves a note with its id, creation time and amendments: the draft's system time equals the
    # contact's. That must move the contact, not be taken for a redelivery.
    decision = plan.classify(draft("A2222BB", system=T0), existing("A1111AA", last_updated=T0), NOW)
    assert decision.kind is Kind.MOVE


def test_a_move_to_a_person_not_in_delius_leaves_the_contact_and_names_it_and_its_crn():
    contact = existing("A1111AA")
    outcome = plan.failure_outcome(draft("A2222BB"), MergeFailure(REASON_OFFENDER_NOT_FOUND), contact)
    assert outcome.action is Action.SKIPPED and outcome.reason == REASON_OFFENDER_NOT_FOUND
    assert (outcome.contact_id, outcome.crn) == (5000001, "X123456")
    assert outcome.warning == "offender not found in Delius: contact 5000001 not moved, remains on X123456"
    # a create for a person not in Delius is the plain skip, as before
    plain = plan.failure_outcome(draft("A2222BB"), MergeFailure(REASON_OFFENDER_NOT_FOUND))
    assert (plain.action, plain.reason, plain.contact_id, plain.warning) == (
        Action.SKIPPED,
        REASON_OFFENDER_NOT_FOUND,
        None,
        None,
    )


UNK_PROVIDER = Provider(area_id=19, area_code="UNK", team_id=29)


def test_an_alert_without_prison_code_resolves_through_an_unk_institution():
    persons = {"A1234BC": [Person(7, "X123456")]}
    alert = draft(kind=ContactKind.ACTIVE_ALERT, type_="ALERT", sub_type="ACTIVE", establishment="UNK")
    target = plan.resolve_target(alert, reference(provider_by_prison={"UNK": UNK_PROVIDER}), persons)
    assert target.provider == UNK_PROVIDER


def test_an_alert_without_prison_code_fails_as_before_when_delius_has_no_unk_institution():
    persons = {"A1234BC": [Person(7, "X123456")]}
    alert = draft(kind=ContactKind.ACTIVE_ALERT, type_="ALERT", sub_type="ACTIVE", establishment="UNK")
    missing = reference(provider_by_prison=plan.providers_by_prison(["UNK"], [], {}))
    with pytest.raises(MergeFailure) as caught:
        plan.resolve_target(alert, missing, persons)
    assert caught.value.reason == "Unable to verify establishment for alert" and not caught.value.retryable
    # a case note at UNK keeps naming the institution; an UNK area without its CSN team says so
    with pytest.raises(MergeFailure) as caught:
        plan.resolve_target(draft(establishment="UNK"), missing, persons)
    assert caught.value.reason == "Probation Area not found for NOMIS institution: UNK"
    no_team = reference(provider_by_prison=plan.providers_by_prison(["UNK"], [("UNK", 19, "UNK")], {}))
    with pytest.raises(MergeFailure) as caught:
        plan.resolve_target(alert, no_team, persons)
    assert caught.value.reason == "Team with code of UNKCSN not found"
