"""The merge into Delius (integration/delius/store.py), on PostgreSQL and SQLite, asserting rows in the database."""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from integration.core import rules
from integration.core.outcomes import Action
from integration.core.rules import ContactDraft, ContactKind
from integration.delius import models as m
from integration.delius.plan import officer_codes_after
from integration.delius.reference_data import add_person
from integration.delius.store import DeliusStore

T0 = datetime(2024, 3, 1, 10, 15, 30)


def case_note_draft(
    noms="A1234BC",
    *,
    type_="KA",
    sub_type="KS",
    content="Key work session held",
    uuid_=None,
    legacy_id=None,
    contact=T0,
    system=T0,
    forename="Bob",
    surname="Smith",
    establishment="LEI",
) -> ContactDraft:
    source_id = uuid_ or str(uuid.uuid4())
    return ContactDraft(
        urn=rules.case_note_urn(source_id),
        kind=ContactKind.CASE_NOTE,
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
    )


def alert_draft(noms="A1234BC", *, active=True, uuid_=None, system=T0) -> ContactDraft:
    source_id = uuid_ or str(uuid.uuid4())
    return ContactDraft(
        urn=rules.alert_urn(source_id, active),
        kind=ContactKind.ACTIVE_ALERT if active else ContactKind.INACTIVE_ALERT,
        noms_number=noms,
        source_id=source_id,
        legacy_id=None,
        type="ALERT",
        sub_type="ACTIVE" if active else "INACTIVE",
        content="Some alert text",
        contact_datetime=T0,
        system_datetime=system,
        staff_forename="Jane",
        staff_surname="Jones",
        establishment_code="MDI",
        alert_description=f"Alert Security and Escape risk made {'active' if active else 'inactive'}.",
    )


def contacts(engine, **where):
    query = select(m.contact)
    for column, value in where.items():
        query = query.where(m.contact.c[column] == value)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query.order_by(m.contact.c.contact_id)).mappings()]


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def scalar(engine, query):
    with engine.connect() as conn:
        return conn.execute(query).scalar()


def test_create_writes_every_column_and_an_audit_row(delius):
    person = add_person(delius, "X123456", "A1234BC")
    draft = case_note_draft(contact=datetime(2024, 3, 1, 9, 0, 5, 123000), system=datetime(2024, 3, 1, 10, 15, 30))
    [outcome] = DeliusStore(delius).merge([draft])

    assert outcome.action is Action.CREATED and outcome.crn == "X123456"
    [row] = contacts(delius)
    lei_area = scalar(delius, select(m.probation_area.c.probation_area_id).where(m.probation_area.c.code == "LEI"))
    csn_team = scalar(delius, select(m.team.c.team_id).where(m.team.c.code == "LEICSN"))
    nkws = scalar(delius, select(m.r_contact_type.c.contact_type_id).where(m.r_contact_type.c.code == "NKWS"))
    user_id = scalar(delius, select(m.user_.c.user_id))
    assert row["contact_id"] == outcome.contact_id
    assert row["offender_id"] == person.offender_id
    assert row["event_id"] == person.event_ids[0]  # exactly one custodial event
    assert row["nsi_id"] is None
    assert row["contact_type_id"] == nkws
    assert row["description"] is None  # mapped, not NOMISD, not alert, not BCST
    assert row["notes"] == "KA KS\nKey work session held"
    assert row["contact_date"] == row["contact_start_time"] == datetime(2024, 3, 1, 9, 0, 5)  # both: the timestamp
    assert row["team_id"] == csn_team and row["trust_provider_team_id"] == csn_team
    assert row["probation_area_id"] == lei_area
    assert row["staff_employee_id"] == row["staff_id"]
    assert (row["trust_provider_flag"], row["partition_area_id"], row["soft_deleted"]) == (0, 0, 0)
    assert row["sensitive"] == "N"
    assert row["external_reference"] == draft.urn
    assert row["nomis_case_note_id"] is None
    assert row["created_datetime"] == row["last_updated_datetime"] == datetime(2024, 3, 1, 10, 15, 30)
    assert row["created_by_user_id"] == row["last_updated_user_id"] == user_id
    assert row["row_version"] == 0

    with delius.connect() as conn:
        staff = conn.execute(select(m.staff).where(m.staff.c.staff_id == row["staff_id"])).mappings().one()
        staff_teams = (
            conn.execute(select(m.staff_team.c.team_id).where(m.staff_team.c.staff_id == staff["staff_id"]))
            .scalars()
            .all()
        )
        staff_team = (
            conn.execute(select(m.staff_team).where(m.staff_team.c.staff_id == staff["staff_id"])).mappings().one()
        )
        audit = conn.execute(select(m.audited_interaction)).mappings().all()
    assert (staff["forename"], staff["surname"], staff["officer_code"]) == ("Bob", "Smith", "LEIA001")
    assert staff["probation_area_id"] == lei_area and staff["private"] == 0 and staff["row_version"] == 0
    assert staff["created_by_user_id"] == staff["last_updated_user_id"] == user_id
    assert staff["start_date"] == staff["created_datetime"] == staff["last_updated_datetime"]
    assert staff["start_date"].microsecond == 0
    assert staff_teams == [csn_team]
    assert (staff_team["created_by_user_id"], staff_team["last_updated_user_id"], staff_team["row_version"]) == (
        user_id,
        user_id,
        0,
    )
    assert staff_team["created_datetime"] == staff_team["last_updated_datetime"] == staff["created_datetime"]
    assert len(audit) == 1
    assert audit[0]["interaction_parameters"] == f"dpsId='{draft.source_id}',contactId='{row['contact_id']}'"
    assert audit[0]["outcome"] == "P" and audit[0]["user_id"] == user_id
    interaction = scalar(
        delius,
        select(m.business_interaction.c.business_interaction_id).where(
            m.business_interaction.c.business_interaction_code == "APIBI001"
        ),
    )
    assert audit[0]["business_interaction_id"] == interaction
    if delius.dialect.name == "postgresql":  # ids from contact_id_seq / staff_id_seq (they start there)
        assert row["contact_id"] >= 5_000_000 and staff["staff_id"] >= 1_000_000
        with delius.connect() as conn:
            assert conn.execute(text("select last_value from contact_id_seq")).scalar() >= row["contact_id"]
            assert conn.execute(text("select last_value from staff_id_seq")).scalar() >= staff["staff_id"]


def test_unmapped_type_uses_nomisd_with_description_and_sensitive_type_sets_flag(delius):
    add_person(delius, "X123456", "A1234BC")
    unmapped = case_note_draft(type_="OMIC_OPD", sub_type="OPD_CN")
    sensitive = case_note_draft(type_="OMIC", sub_type="OPEN")
    DeliusStore(delius).merge([unmapped, sensitive])
    [first] = contacts(delius, external_reference=unmapped.urn)
    [second] = contacts(delius, external_reference=sensitive.urn)
    nomisd = scalar(delius, select(m.r_contact_type.c.contact_type_id).where(m.r_contact_type.c.code == "NOMISD"))
    assert first["contact_type_id"] == nomisd
    assert first["description"] == "NOMIS Case Note - OMIC_OPD - OPD_CN"
    assert first["sensitive"] == "N"
    assert second["sensitive"] == "Y"


def test_alerts_are_person_level_and_active_inactive_are_separate_contacts(delius):
    add_person(delius, "X123456", "A1234BC", custodial_events=1)
    alert_id = str(uuid.uuid4())
    outcomes = DeliusStore(delius).merge(
        [alert_draft(uuid_=alert_id, active=True), alert_draft(uuid_=alert_id, active=False)]
    )
    assert [o.action for o in outcomes] == [Action.CREATED, Action.CREATED]
    rows = contacts(delius)
    assert {r["external_reference"] for r in rows} == {
        rules.alert_urn(alert_id, True),
        rules.alert_urn(alert_id, False),
    }
    assert all(r["event_id"] is None and r["nsi_id"] is None for r in rows)
    assert rows[0]["description"] == "NOMIS Alert Security and Escape risk made active."
    assert rows[0]["notes"] == "ALERT ACTIVE\nAlert Security and Escape risk made active.\nSome alert text"


def test_event_linking_prefers_latest_mapped_nsi_and_needs_exactly_one_custodial_event(delius):
    one = add_person(
        delius,
        "X000001",
        "A0000AA",
        custodial_events=1,
        nsis=[("RESPASS", date(2023, 1, 1)), ("RESPASS", date(2024, 1, 1))],
    )
    add_person(delius, "X000002", "A0000BB", custodial_events=2)
    add_person(delius, "X000003", "A0000CC", custodial_events=0, community_events=1)
    bcst = case_note_draft("A0000AA", type_="RESET", sub_type="BCST", content="Case note summary from Finance ...")
    kss = [case_note_draft(noms) for noms in ("A0000AA", "A0000BB", "A0000CC")]
    DeliusStore(delius).merge([bcst, *kss])
    [bcst_row] = contacts(delius, external_reference=bcst.urn)
    assert bcst_row["nsi_id"] == one.nsi_ids[1] and bcst_row["event_id"] == one.event_ids[0]
    assert bcst_row["description"] == "BCST case note for Finance and ID"
    assert [contacts(delius, external_reference=d.urn)[0]["event_id"] for d in kss] == [one.event_ids[0], None, None]


def test_replay_is_a_no_op_and_newer_version_updates_notes_dates_and_never_shortens(delius):
    add_person(delius, "X123456", "A1234BC")
    store = DeliusStore(delius)
    note_id = str(uuid.uuid4())
    original = case_note_draft(uuid_=note_id, content="A long original note text")
    store.merge([original])
    [replay] = store.merge([original])
    assert replay.action is Action.UNCHANGED and replay.reason == "already up to date"

    newer = case_note_draft(
        uuid_=note_id,
        content="Short",
        contact=T0 + timedelta(days=1, hours=2),
        system=T0 + timedelta(hours=1),
        type_="KA",
        sub_type="KE",
    )
    [updated] = store.merge([newer])
    assert updated.action is Action.UPDATED
    [row] = contacts(delius)
    assert row["notes"].rstrip(" ") == "KA KE\nShort"
    assert len(row["notes"]) == len("KA KS\nA long original note text")
    assert row["contact_date"] == row["contact_start_time"] == datetime(2024, 3, 2, 12, 15, 30)
    assert row["last_updated_datetime"] == T0 + timedelta(hours=1)
    assert row["created_datetime"] == T0
    assert row["row_version"] == 1
    assert count(delius, m.audited_interaction) == 2

    [stale] = store.merge([case_note_draft(uuid_=note_id, content="stale", system=T0 + timedelta(minutes=30))])
    assert stale.action is Action.UNCHANGED and "out of sequence" in stale.reason
    [same_second] = store.merge(
        [case_note_draft(uuid_=note_id, content="x", system=T0 + timedelta(hours=1, microseconds=900))]
    )
    assert same_second.action is Action.UNCHANGED
    assert contacts(delius)[0]["notes"].rstrip() == "KA KE\nShort"
    assert count(delius, m.audited_interaction) == 2


def test_people_not_in_delius_are_skipped_and_duplicates_fail(delius):
    add_person(delius, "X000001", "A1111AA", soft_deleted=True)
    add_person(delius, "X000002", "A2222BB")
    add_person(delius, "X000003", "A2222BB")
    missing, deleted, duplicate = DeliusStore(delius).merge(
        [case_note_draft("Z9999ZZ"), case_note_draft("A1111AA"), case_note_draft("A2222BB")]
    )
    assert (missing.action, missing.reason) == (Action.SKIPPED, "offender not found in Delius")
    assert deleted.action is Action.SKIPPED
    assert duplicate.action is Action.FAILED and duplicate.reason == "2 offenders have NOMS number A2222BB"
    assert not duplicate.retryable
    assert count(delius, m.contact) == 0 and count(delius, m.audited_interaction) == 0


def staff_rows(engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(m.staff.c.officer_code, m.staff.c.forename, m.staff.c.surname)).all())


def test_person_not_in_delius_creates_no_staff(delius):
    add_person(delius, "X000001", "A1111AA", soft_deleted=True)
    staff_before, teams_before = count(delius, m.staff), count(delius, m.staff_team)
    missing, deleted = DeliusStore(delius).merge(
        [case_note_draft("Z9999ZZ", forename="Ghost", surname="Writer"), alert_draft("A1111AA")]
    )
    assert (missing.action, missing.reason) == (Action.SKIPPED, "offender not found in Delius")
    assert (deleted.action, deleted.reason) == (Action.SKIPPED, "offender not found in Delius")
    assert (count(delius, m.staff), count(delius, m.staff_team)) == (staff_before, teams_before)
    assert count(delius, m.contact) == 0 and count(delius, m.audited_interaction) == 0


def test_person_on_several_offenders_creates_no_staff(delius):
    add_person(delius, "X000002", "A2222BB")
    add_person(delius, "X000003", "A2222BB")
    staff_before, teams_before = count(delius, m.staff), count(delius, m.staff_team)
    [duplicate] = DeliusStore(delius).merge([case_note_draft("A2222BB", forename="Ghost", surname="Writer")])
    assert duplicate.action is Action.FAILED and duplicate.reason == "2 offenders have NOMS number A2222BB"
    assert not duplicate.retryable
    assert (count(delius, m.staff), count(delius, m.staff_team)) == (staff_before, teams_before)
    assert count(delius, m.contact) == 0


def test_mixed_batch_creates_staff_only_for_the_known_persons_author(delius):
    add_person(delius, "X123456", "A1234BC")
    add_person(delius, "X000002", "A2222BB")
    add_person(delius, "X000003", "A2222BB")
    before = staff_rows(delius)
    teams_before = count(delius, m.staff_team)
    outcomes = DeliusStore(delius).merge(
        [
            case_note_draft("Z9999ZZ", forename="Ghost", surname="Writer"),
            case_note_draft("A1234BC", forename="Known", surname="Author"),
            case_note_draft("A2222BB", forename="Twin", surname="Writer"),
            alert_draft("Z9999ZZ"),  # Jane Jones at MDI: no staff for MDI either
        ]
    )
    assert [o.action for o in outcomes] == [Action.SKIPPED, Action.CREATED, Action.FAILED, Action.SKIPPED]
    new_staff = sorted(set(staff_rows(delius)) - set(before))
    assert new_staff == [("LEIA001", "Known", "Author")]  # the skipped drafts consumed no officer code
    assert count(delius, m.staff_team) == teams_before + 1
    [row] = contacts(delius)
    assert row["external_reference"] == outcomes[1].urn
    with delius.connect() as conn:
        assert (
            conn.execute(select(m.staff.c.officer_code).where(m.staff.c.staff_id == row["staff_id"])).scalar()
            == "LEIA001"
        )


def test_move_to_a_person_not_in_delius_creates_no_staff_and_leaves_the_contact(delius):
    add_person(delius, "X000001", "A1111AA")
    store = DeliusStore(delius)
    note_id = str(uuid.uuid4())
    store.merge([case_note_draft("A1111AA", uuid_=note_id)])
    [before] = contacts(delius)
    staff_before, teams_before = count(delius, m.staff), count(delius, m.staff_team)
    [moved] = store.merge(
        [
            case_note_draft(
                "Z9999ZZ",
                uuid_=note_id,
                content="Corrected",
                forename="Zed",
                surname="Q",
                system=T0 + timedelta(hours=1),
            )
        ]
    )
    assert (moved.action, moved.reason) == (Action.SKIPPED, "offender not found in Delius")
    assert (count(delius, m.staff), count(delius, m.staff_team)) == (staff_before, teams_before)
    assert contacts(delius) == [before]


def test_unknown_or_short_establishment_fails_with_reason(delius):
    add_person(delius, "X123456", "A1234BC")
    unknown, short, good = DeliusStore(delius).merge(
        [case_note_draft(establishment="XYZ"), case_note_draft(establishment="LE"), case_note_draft()]
    )
    assert unknown.action is Action.FAILED
    assert unknown.reason == "Probation Area not found for NOMIS institution: XYZ"
    assert short.action is Action.FAILED and short.reason.startswith("Invalid establishment code")
    assert good.action is Action.CREATED


def test_missing_csn_team_and_missing_nomisd_fail(delius):
    add_person(delius, "X123456", "A1234BC")
    with delius.begin() as conn:
        conn.execute(update(m.team).where(m.team.c.code == "MDICSN").values(code="MDIXXX"))
        conn.execute(m.r_contact_type.update().where(m.r_contact_type.c.code == "NOMISD").values(code="NOMISX"))
    no_team, no_default = DeliusStore(delius).merge(
        [case_note_draft(establishment="MDI"), case_note_draft(type_="OMIC_OPD", sub_type="Z")]
    )
    assert no_team.reason == "Team with code of MDICSN not found"
    assert no_default.action is Action.FAILED and no_default.retryable
    assert no_default.reason == "contact type NOMISD not found"


def test_staff_are_matched_case_insensitively_and_new_ones_get_the_next_officer_code(delius):
    add_person(delius, "X123456", "A1234BC")
    store = DeliusStore(delius)
    store.merge([case_note_draft(forename="Bob", surname="Smith")])
    store.merge(
        [
            case_note_draft(forename="BOB", surname="smith"),
            case_note_draft(forename="Ann", surname="Lee"),
            case_note_draft(forename="Cy", surname="Ray", establishment="MDI"),
        ]
    )
    with delius.connect() as conn:
        codes = dict(
            conn.execute(
                select(m.staff.c.surname, m.staff.c.officer_code).where(m.staff.c.officer_code.not_like("N07%"))
            ).all()
        )
    assert codes == {"Smith": "LEIA001", "Lee": "LEIA002", "Ray": "MDIA001"}
    assert (
        len(
            {
                r["staff_id"]
                for r in contacts(delius)
                if r["probation_area_id"] == contacts(delius)[0]["probation_area_id"]
            }
        )
        == 2
    )


def test_officer_codes_roll_over_letters():
    assert officer_codes_after("N07", [], 2) == ["N07A001", "N07A002"]
    assert officer_codes_after("N07", ["N07A998", "N07A010", "LEIZ999", "N07XX"], 3) == [
        "N07A999",
        "N07B000",
        "N07B001",
    ]


def test_moved_case_note_is_rewritten_for_the_right_person_and_previous_case_gets_data_cleanse(delius):
    wrong = add_person(delius, "X000001", "A1111AA", manager_team="N07T01")
    right = add_person(delius, "X000002", "A2222BB", custodial_events=1)
    store = DeliusStore(delius)
    note_id = str(uuid.uuid4())
    store.merge([case_note_draft("A1111AA", uuid_=note_id)])
    [before] = contacts(delius, external_reference=rules.case_note_urn(note_id))
    # The NOMS number is corrected in the prison system: the same case note now belongs to A2222BB.
    [moved] = store.merge([case_note_draft("A2222BB", uuid_=note_id, content="Corrected", forename="Zed", surname="Q")])
    assert moved.action is Action.MOVED
    assert (moved.crn, moved.previous_crn) == ("X000002", "X000001")
    [after] = contacts(delius, external_reference=rules.case_note_urn(note_id))
    assert after["contact_id"] == before["contact_id"]
    assert after["offender_id"] == right.offender_id and after["event_id"] == right.event_ids[0]
    assert after["notes"] == "KA KS\nCorrected" and after["staff_id"] != before["staff_id"]
    assert after["row_version"] == before["row_version"] + 1
    [cleanse] = contacts(delius, offender_id=wrong.offender_id, description="Data Cleanse")
    other = scalar(delius, select(m.r_contact_type.c.contact_type_id).where(m.r_contact_type.c.code == "OTHER"))
    assert cleanse["contact_type_id"] == other
    assert cleanse["staff_id"] == wrong.manager_staff_id and cleanse["external_reference"] is None
    assert cleanse["notes"].startswith("On ") and "mistakenly associated with this case record" in cleanse["notes"]


def test_move_to_a_case_without_manager_writes_no_data_cleanse(delius):
    add_person(delius, "X000001", "A1111AA", manager_team=None)
    add_person(delius, "X000002", "A2222BB")
    store = DeliusStore(delius)
    note_id = str(uuid.uuid4())
    store.merge([case_note_draft("A1111AA", uuid_=note_id)])
    [moved] = store.merge([case_note_draft("A2222BB", uuid_=note_id)])
    assert moved.action is Action.MOVED
    assert count(delius, m.contact) == 1


def test_legacy_rows_are_matched_by_nomis_id_and_get_their_urn(delius):
    person = add_person(delius, "X123456", "A1234BC")
    store = DeliusStore(delius)
    store.merge([case_note_draft(uuid_=str(uuid.uuid4()))])  # creates staff and a template row
    [template] = contacts(delius)
    recent = datetime.now().replace(microsecond=0) - timedelta(days=10)
    with delius.begin() as conn:
        for legacy_id, stamp in ((111, T0), (222, recent), (333, T0)):
            row = dict(
                template,
                contact_id=None,
                external_reference=None,
                nomis_case_note_id=legacy_id,
                last_updated_datetime=stamp,
                contact_date=stamp,
                contact_start_time=stamp,
            )
            row.pop("contact_id")
            conn.execute(m.contact.insert().values(**row))
    newer = case_note_draft(legacy_id=111, system=T0 + timedelta(seconds=5), content="new text")
    recent_same = case_note_draft(legacy_id=222, system=recent, contact=recent)
    old_same = case_note_draft(legacy_id=333, system=T0)
    outcomes = store.merge([newer, recent_same, old_same])
    assert [o.action for o in outcomes] == [Action.UPDATED, Action.UPDATED, Action.UNCHANGED]
    assert outcomes[1].reason == "external reference added to a legacy contact"
    by_legacy = {r["nomis_case_note_id"]: r for r in contacts(delius, offender_id=person.offender_id)}
    assert by_legacy[111]["external_reference"] == newer.urn and by_legacy[111]["notes"].startswith("KA KS\nnew text")
    assert by_legacy[222]["external_reference"] == recent_same.urn
    assert by_legacy[333]["external_reference"] is None
    assert count(delius, m.contact) == 4


def test_same_urn_twice_in_one_batch_keeps_the_newest(delius):
    add_person(delius, "X123456", "A1234BC")
    note_id = str(uuid.uuid4())
    old, new = (
        case_note_draft(uuid_=note_id, content=c, system=s)
        for c, s in (("old", T0), ("new", T0 + timedelta(minutes=1)))
    )
    outcomes = DeliusStore(delius).merge([new, old])
    assert [o.action for o in outcomes] == [Action.CREATED, Action.UNCHANGED]
    assert contacts(delius)[0]["notes"] == "KA KS\nnew"


@pytest.mark.postgres
def test_concurrent_merges_of_the_same_drafts_create_each_contact_and_staff_once(delius_pg):
    for n in range(5):
        add_person(delius_pg, f"X00000{n}", f"A000{n}AA")
    drafts = [case_note_draft(f"A000{n % 5}AA", forename=f"Name{n % 7}", surname="Officer") for n in range(60)]
    results: list = []
    errors: list = []

    def worker():
        try:
            results.append(DeliusStore(delius_pg).merge(drafts))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert count(delius_pg, m.contact) == 60
    created = sum(o.action is Action.CREATED for result in results for o in result)
    assert created == 60
    assert all(o.action in (Action.CREATED, Action.UNCHANGED) for result in results for o in result)
    with delius_pg.connect() as conn:
        prison_staff = (
            conn.execute(select(m.staff.c.forename).where(m.staff.c.officer_code.like("LEIA%"))).scalars().all()
        )
    assert sorted(prison_staff) == sorted(f"Name{n}" for n in range(7))


# ------------------------------------------------------------------------------------------------ contract v2


def _function_ddl() -> str:
    """Delius's officer-code function as the contract DDL creates it."""
    from integration.delius.schema import contract_ddl

    ddl = contract_ddl("postgresql")
    return ddl[ddl.index("create function spgconfig.getnextstaffreference") :].rstrip().rstrip(";")


@contextmanager
def officer_code_function(engine, body: str | None):
    """Replace Delius's officer-code function for one test (``body`` None: drop it); restored afterwards."""
    from integration.delius import dialect

    signature = "spgconfig.getnextstaffreference(probation_area_code_in varchar)"
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # the driver's own: nothing interprets '%'
        cursor.execute(f"drop function {signature}")
        if body is not None:
            cursor.execute(f"create function {signature} returns varchar language plpgsql as $$ {body} $$")
    dialect.forget_officer_code_function(engine)
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"drop function if exists {signature}")
            conn.connection.dbapi_connection.cursor().execute(_function_ddl())
        dialect.forget_officer_code_function(engine)


def staff_codes(engine, prefix: str) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(select(m.staff.c.officer_code).where(m.staff.c.officer_code.like(f"{prefix}%"))).scalars()
        )


@pytest.mark.postgres
def test_officer_codes_come_from_the_delius_function_one_at_a_time(delius_pg):
    add_person(delius_pg, "X123456", "A1234BC")
    # A stand-in that answers in its own series, counting the rows it can see: each new staff row must be inserted
    # before the next code is asked for.
    body = (
        "begin return substr(probation_area_code_in, 1, 3) || 'Q' || (100 + (select count(*) from staff "
        "where officer_code like substr(probation_area_code_in, 1, 3) || 'Q%'))::text; end"
    )
    with officer_code_function(delius_pg, body):
        outcomes = DeliusStore(delius_pg).merge(
            [case_note_draft(forename="Ann", surname="Lee"), case_note_draft(forename="Cy", surname="Ray")]
        )
    assert [o.action for o in outcomes] == [Action.CREATED] * 2
    assert staff_codes(delius_pg, "LEI") == ["LEIQ100", "LEIQ101"]


@pytest.mark.postgres
def test_a_null_officer_code_from_delius_means_a000(delius_pg):
    add_person(delius_pg, "X123456", "A1234BC")
    with officer_code_function(delius_pg, "begin return null; end"):
        [first] = DeliusStore(delius_pg).merge([case_note_draft(forename="Ann", surname="Lee")])
        [second] = DeliusStore(delius_pg).merge([case_note_draft(forename="Cy", surname="Ray")])
    assert first.action is Action.CREATED
    assert staff_codes(delius_pg, "LEI") == ["LEIA000"]
    assert second.action is Action.FAILED and second.reason == "officer code LEIA000 from Delius is already in use"


@pytest.mark.postgres
def test_without_the_delius_function_the_generator_gives_the_codes(delius_pg):
    add_person(delius_pg, "X123456", "A1234BC")
    with officer_code_function(delius_pg, None):
        DeliusStore(delius_pg).merge([case_note_draft(forename="Ann", surname="Lee")])
    assert staff_codes(delius_pg, "LEI") == ["LEIA001"]


def test_officer_codes_on_sqlite_come_from_the_generator_after_the_highest(delius_sqlite):
    from sqlalchemy import event

    add_person(delius_sqlite, "X123456", "A1234BC")
    store = DeliusStore(delius_sqlite)
    store.merge([case_note_draft(forename="Ann", surname="Lee")])
    with delius_sqlite.begin() as conn:
        conn.execute(update(m.staff).where(m.staff.c.officer_code == "LEIA001").values(officer_code="LEIB007"))
    statements: list[str] = []
    event.listen(delius_sqlite, "before_cursor_execute", lambda *args: statements.append(args[2]))
    store.merge([case_note_draft(forename="Cy", surname="Ray"), case_note_draft(forename="Di", surname="Fox")])
    assert staff_codes(delius_sqlite, "LEI") == ["LEIB007", "LEIB008", "LEIB009"]
    assert not any("spgconfig" in s.lower() for s in statements)


def test_a_batch_of_2000_creates_gets_2000_audit_rows_with_distinct_keys(delius):
    people = [add_person(delius, f"X{n:06d}", f"A{n:04d}AA") for n in range(20)]
    drafts = [case_note_draft(f"A{n % 20:04d}AA", content=f"note {n}") for n in range(2000)]
    store = DeliusStore(delius)
    outcomes = store.merge(drafts)
    assert [o.action for o in outcomes] == [Action.CREATED] * 2000
    again = store.merge([case_note_draft(f"A{n % 20:04d}AA") for n in range(50)])  # straight after
    assert {o.action for o in again} == {Action.CREATED}
    with delius.connect() as conn:
        audits = conn.execute(select(m.audited_interaction)).mappings().all()
        user_id = conn.execute(select(m.user_.c.user_id)).scalar_one()
        interaction = conn.execute(select(m.business_interaction.c.business_interaction_id)).scalar_one()
        ids = dict(conn.execute(select(m.contact.c.external_reference, m.contact.c.contact_id)).all())
    assert len(audits) == 2050
    assert len({(a["date_time"], a["business_interaction_id"], a["user_id"]) for a in audits}) == 2050
    assert {(a["outcome"], a["user_id"], a["business_interaction_id"]) for a in audits} == {("P", user_id, interaction)}
    expected = {f"dpsId='{d.source_id}',contactId='{ids[d.urn]}'" for d in drafts + []}
    assert expected <= {a["interaction_parameters"] for a in audits}
    assert {o.contact_id for o in outcomes} == {ids[d.urn] for d in drafts}
    if delius.dialect.name == "postgresql":
        assert min(ids.values()) >= 5_000_000
    assert len(people) == 20


@pytest.mark.postgres
def test_audit_times_taken_by_another_run_are_skipped(delius_pg_url, delius_pg):
    """A concurrent run already used this run's audit times: the audit insert is retried with later times inside
    its savepoint, and the contacts are still written once."""
    from integration.delius.engine import create_delius_engine

    add_person(delius_pg, "X123456", "A1234BC")
    fixed = datetime(2025, 1, 2, 3, 4, 5)
    engine = create_delius_engine(delius_pg_url)  # a fresh engine: no audit times used yet
    try:
        with engine.begin() as conn:
            user_id = conn.execute(select(m.user_.c.user_id)).scalar_one()
            interaction = conn.execute(select(m.business_interaction.c.business_interaction_id)).scalar_one()
            conn.execute(
                m.audited_interaction.insert(),
                [
                    {
                        "date_time": fixed + timedelta(microseconds=n),
                        "business_interaction_id": interaction,
                        "user_id": user_id,
                        "outcome": "P",
                        "interaction_parameters": "taken",
                    }
                    for n in range(3)
                ],
            )
        outcomes = DeliusStore(engine, clock=lambda: fixed).merge([case_note_draft() for _ in range(3)])
    finally:
        engine.dispose()
    assert [o.action for o in outcomes] == [Action.CREATED] * 3
    assert count(delius_pg, m.contact) == 3 and count(delius_pg, m.audited_interaction) == 6


def test_an_interaction_enabled_in_the_future_stops_every_merge(delius):
    from integration.core.outcomes import MergeConfigurationError

    add_person(delius, "X123456", "A1234BC")
    staff_before = count(delius, m.staff)
    with delius.begin() as conn:
        conn.execute(update(m.business_interaction).values(enabled_date=datetime.now() + timedelta(days=1)))
    with pytest.raises(MergeConfigurationError, match="APIBI001 is not enabled until"):
        DeliusStore(delius).merge([case_note_draft(forename="New", surname="Author")])
    assert count(delius, m.contact) == 0 and count(delius, m.staff) == staff_before
    with delius.begin() as conn:
        conn.execute(update(m.business_interaction).values(enabled_date=None))
    [outcome] = DeliusStore(delius).merge([case_note_draft()])
    assert outcome.action is Action.CREATED


def _rename_contact_type(engine, old: str, new: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(m.r_contact_type).where(m.r_contact_type.c.code == old).values(code=new))


def test_a_move_whose_data_cleanse_cannot_be_written_fails_retryably_and_a_retry_writes_both(delius):
    wrong = add_person(delius, "X000001", "A1111AA", manager_team="N07T01")
    right = add_person(delius, "X000002", "A2222BB")
    store = DeliusStore(delius)
    note_id = str(uuid.uuid4())
    store.merge([case_note_draft("A1111AA", uuid_=note_id)])
    [before] = contacts(delius)
    _rename_contact_type(delius, "OTHER", "OTHERX")
    corrected = case_note_draft("A2222BB", uuid_=note_id, content="Corrected")
    unrelated = case_note_draft("A2222BB")
    failed, created = store.merge([corrected, unrelated])
    assert failed.action is Action.FAILED and failed.retryable
    assert failed.reason == "contact type OTHER not found: no Data Cleanse contact"
    assert created.action is Action.CREATED  # only the affected draft fails
    assert contacts(delius, contact_id=before["contact_id"]) == [before]  # not moved
    assert contacts(delius, description="Data Cleanse") == []

    _rename_contact_type(delius, "OTHERX", "OTHER")
    [moved] = store.merge([corrected])
    assert moved.action is Action.MOVED and moved.warning is None
    [after] = contacts(delius, contact_id=before["contact_id"])
    assert after["offender_id"] == right.offender_id
    [cleanse] = contacts(delius, description="Data Cleanse")
    assert cleanse["offender_id"] == wrong.offender_id and cleanse["staff_id"] == wrong.manager_staff_id
    assert cleanse["contact_date"] == cleanse["contact_start_time"] == cleanse["created_datetime"]
    if delius.dialect.name == "postgresql":
        assert cleanse["contact_id"] >= 5_000_000


def test_the_backfill_moves_anyway_and_reports_the_data_cleanse_as_a_warning(delius):
    add_person(delius, "X000001", "A1111AA", manager_team="N07T01")
    right = add_person(delius, "X000002", "A2222BB")
    store = DeliusStore(delius)
    note_id = str(uuid.uuid4())
    store.merge([case_note_draft("A1111AA", uuid_=note_id)])
    _rename_contact_type(delius, "OTHER", "OTHERX")
    [moved] = store.merge([case_note_draft("A2222BB", uuid_=note_id)], data_cleanse_required=False)
    assert moved.action is Action.MOVED
    assert moved.warning == "DataCleanseNotificationFailure: contact type OTHER not found: no Data Cleanse contact"
    assert contacts(delius)[0]["offender_id"] == right.offender_id
    assert contacts(delius, description="Data Cleanse") == []


def test_two_moves_off_one_case_write_one_data_cleanse(delius):
    wrong = add_person(delius, "X000001", "A1111AA", manager_team="N07T01")
    add_person(delius, "X000002", "A2222BB")
    store = DeliusStore(delius)
    notes = [str(uuid.uuid4()) for _ in range(2)]
    store.merge([case_note_draft("A1111AA", uuid_=n) for n in notes])
    outcomes = store.merge([case_note_draft("A2222BB", uuid_=n) for n in notes])
    assert [o.action for o in outcomes] == [Action.MOVED] * 2
    assert len(contacts(delius, offender_id=wrong.offender_id, description="Data Cleanse")) == 1
    assert count(delius, m.audited_interaction) == 4  # 2 creates + 2 moves; the cleanse has none


# ------------------------------------------------------------------------------------------------ concurrent runs

ROUNDS = 5
PEOPLE = 6
NEW_NOTES_PER_ROUND = 24


def _merge_in_process(url: str, barrier, results, name: str, rounds: list[list[ContactDraft]], chunk: int) -> None:
    """One OS process: for each round, wait for the other process, then merge its drafts a few at a time."""
    from integration.delius.engine import create_delius_engine

    engine = create_delius_engine(url)
    store = DeliusStore(engine)
    try:
        for drafts in rounds:
            barrier.wait(timeout=120)
            actions = []
            for start in range(0, len(drafts), chunk):
                actions += [(o.urn, o.action.value, o.reason) for o in store.merge(drafts[start : start + chunk])]
            results.put((name, actions))
    except Exception as exc:  # pragma: no cover - reported by the parent
        results.put((name, repr(exc)))
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_processes_merging_the_same_urns_leave_one_contact_each_with_the_newest_version(delius_pg_url, delius_pg):
    """Two OS processes merge the same URNs at the same moment (a barrier per round), in opposite orders and small
    chunks, each holding an older or a newer version; some rounds move contacts to another person. Afterwards every
    URN has exactly one contact, holding the newest version. No timing is asserted: the rounds only make overlap
    likely."""
    import multiprocessing

    for n in range(PEOPLE):
        add_person(delius_pg, f"X{n:06d}", f"A{n:04d}BB")
    ctx = multiprocessing.get_context("spawn")
    newest: dict[str, ContactDraft] = {}
    plans: dict[str, list[list[ContactDraft]]] = {"a": [], "b": []}
    previous: list[str] = []
    for r in range(ROUNDS):
        fresh = [str(uuid.uuid4()) for _ in range(NEW_NOTES_PER_ROUND)]
        a_drafts, b_drafts = [], []
        # New notes (both runs create them at once), and the last round's notes again: a newer version, which in
        # odd rounds names another person (a move racing an update of the previous person's contact).
        for i, note_id in enumerate(fresh + previous):
            again = i >= len(fresh)
            home = newest[rules.case_note_urn(note_id)].noms_number if again else f"A{i % PEOPLE:04d}BB"
            target = f"A{(int(home[1:5]) + 1) % PEOPLE:04d}BB" if again and r % 2 else home
            older = case_note_draft(
                home,
                uuid_=note_id,
                content=f"round {r} older",
                system=T0 + timedelta(minutes=2 * r),
                forename=f"Writer{i % 5}",
            )
            newer = case_note_draft(
                target,
                uuid_=note_id,
                content=f"round {r} newer",
                system=T0 + timedelta(minutes=2 * r + 1),
                forename=f"Writer{i % 7}",
            )
            first, second = (older, newer) if i % 2 else (newer, older)
            a_drafts.append(first)
            b_drafts.append(second)
            newest[newer.urn] = newer
        plans["a"].append(a_drafts)
        plans["b"].append(list(reversed(b_drafts)))
        previous = fresh
    barrier, results = ctx.Barrier(2), ctx.Queue()
    processes = [
        ctx.Process(target=_merge_in_process, args=(delius_pg_url, barrier, results, name, plans[name], 6))
        for name in ("a", "b")
    ]
    for p in processes:
        p.start()
    reports = [results.get(timeout=600) for _ in range(2 * ROUNDS)]
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(isinstance(actions, list) for _, actions in reports), reports
    actions = [action for _, round_actions in reports for _, action, _ in round_actions]
    assert "failed" not in actions and "skipped" not in actions
    assert actions.count("created") == ROUNDS * NEW_NOTES_PER_ROUND  # each URN created once, by one of the two
    assert "moved" in actions

    with delius_pg.connect() as conn:
        rows = conn.execute(
            select(m.contact.c.external_reference, m.contact.c.notes, m.offender.c.noms_number)
            .join(m.offender, m.offender.c.offender_id == m.contact.c.offender_id)
            .where(m.contact.c.external_reference.is_not(None))
        ).all()
    by_urn: dict[str, list] = {}
    for urn, notes, noms in rows:
        by_urn.setdefault(urn, []).append((notes.rstrip(" "), noms))
    assert set(by_urn) == set(newest)
    assert all(len(found) == 1 for found in by_urn.values()), {u: f for u, f in by_urn.items() if len(f) > 1}
    for urn, [(notes, noms)] in by_urn.items():
        assert (notes, noms) == (newest[urn].notes, newest[urn].noms_number)
