"""The generated world of the local stack: deterministic, realistic, loadable into Delius and the stand-ins."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import date

import pytest
import requests
from sqlalchemy import func, select

from integration.core.events import case_note_of_interest
from integration.core.records import Alert, CaseNote
from integration.core.rules import alert_ignore_reason, case_note_ignore_reason, draft_from_alert, draft_from_case_note
from integration.delius import models as m
from integration.delius.engine import create_delius_engine
from integration.delius.schema import create_schema
from integration.local.standins import SourceStore, StandIns
from integration.local.world import DEFAULT_PEOPLE, World, generate_world, note_kind

AS_OF = date(2026, 3, 16)
NOMS = re.compile(r"^[A-Z]\d{4}[A-Z]{2}$")
CRN = re.compile(r"^[A-Z]\d{6}$")


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(seed=7, as_of=AS_OF)


def _fresh(seed=7, people=DEFAULT_PEOPLE) -> World:
    return generate_world(seed=seed, people=people, as_of=AS_OF)


# --- determinism -------------------------------------------------------------------------------------------------
def test_same_seed_gives_the_same_world(world: World) -> None:
    again = _fresh()
    assert again.people == world.people
    assert again.case_notes == world.case_notes
    assert again.alerts == world.alerts


def test_another_seed_gives_another_world(world: World) -> None:
    other = _fresh(seed=8)
    assert {p.noms_number for p in other.people} != {p.noms_number for p in world.people}
    assert [n["caseNoteId"] for n in other.case_notes][:10] != [n["caseNoteId"] for n in world.case_notes][:10]


def test_identities_do_not_depend_on_the_as_of_date(world: World) -> None:
    later = generate_world(seed=7, as_of=date(2026, 9, 1))
    assert [(p.noms_number, p.crn, p.noms_linked, p.first_name, p.surname) for p in later.people] == [
        (p.noms_number, p.crn, p.noms_linked, p.first_name, p.surname) for p in world.people
    ]


def test_generation_is_fast() -> None:
    started = time.perf_counter()
    generate_world(seed=99, people=300, as_of=AS_OF)
    assert time.perf_counter() - started < 2.0


# --- realism -----------------------------------------------------------------------------------------------------
def test_people_and_identifiers(world: World) -> None:
    people = world.people
    assert len(people) == DEFAULT_PEOPLE
    assert all(NOMS.match(p.noms_number) for p in people)
    assert len({p.noms_number for p in people}) == len(people)
    delius = world.delius_people
    assert all(CRN.match(p.crn) for p in delius)
    assert len({p.crn for p in delius}) == len(delius)
    assert len(delius) == round(0.7 * len(people))
    assert 3 <= len(world.unlinked_people) <= 15
    assert len(world.prison_only_people) == len(people) - len(delius)
    prisons = Counter(p.prison for p in people)
    assert set(prisons) >= {"LEI", "MDI", "WWI", "BMI", "SWI", "MRI", "NMI"}
    assert 1 <= prisons["UNK"] <= len(people) * 0.03
    assert all(p.custodial_events >= 1 and p.manager_team for p in delius)
    assert any(p.custodial_events == 2 for p in delius) and any(p.community_events for p in delius)
    nsi_types = Counter(code for p in delius for code, _ in p.nsis)
    assert nsi_types["RESPASS"] > 10 and nsi_types["OMICSUP"] > 10
    assert all(referral < AS_OF for p in delius for _, referral in p.nsis)
    assert not any(p.nsis or p.manager_team for p in world.prison_only_people)


def test_case_notes_cover_every_kind(world: World) -> None:
    notes = world.case_notes
    kinds = Counter(note_kind(n) for n in notes)
    assert kinds["of_interest"] > len(notes) / 2
    for kind in (
        "filtered_blank",
        "filtered_transit",
        "filtered_test",
        "filtered_ocg",
        "not_of_interest",
        "not_subscribed",
    ):
        assert kinds[kind] >= 2, kind
    types = Counter((n["type"], n["subType"]) for n in notes)
    for key in [
        ("PRISON", "RELEASE"),
        ("TRANSFER", "FROMTOL"),
        ("GEN", "OSE"),
        ("RESET", "BCST"),
        ("RESET", "GUIDINT"),
        ("OMIC", "OPEN"),
        ("OMIC", "QUAL"),
        ("OMIC_OPD", "OPD_SCREEN"),
        ("KA", "KS"),
        ("KA", "KE"),
        ("GEN", "HIS"),
        ("NEG", "IEP_WARN"),
    ]:
        assert types[key] > 0, key
    assert sum(1 for n in notes if n["type"] == "RESET" and "Case note summary from" in n["text"]) > 10
    assert sum(1 for n in notes if n.get("amendments")) > 50
    assert any(len(n.get("amendments", [])) == 2 for n in notes)
    assert 5 <= sum(1 for n in notes if n["sensitive"]) <= len(notes) * 0.1
    assert any("locationId" not in n for n in notes)  # the rules default it to UNK
    assert {n["offenderIdentifier"] for n in notes} <= {p.noms_number for p in world.people}
    assert len({n["caseNoteId"] for n in notes}) == len(notes)
    assert len({n["legacyId"] for n in notes}) == len(notes)
    assert all(
        n["creationDateTime"] < f"{AS_OF.isoformat()}T07:00" and n["occurrenceDateTime"] <= n["creationDateTime"]
        for n in notes
    )


def test_case_notes_go_through_the_rules_as_their_kind_says(world: World) -> None:
    for raw in world.case_notes:
        note = CaseNote.from_api(raw)
        reason = case_note_ignore_reason(note)
        kind = note_kind(raw)
        assert (reason is None) == (kind in {"of_interest", "not_of_interest", "not_subscribed"}), kind
        assert case_note_of_interest(note.type, note.sub_type) == (kind == "of_interest" or kind.startswith("filter"))
        draft = draft_from_case_note(note)
        assert draft.system_datetime >= note.created
        assert draft.staff_surname and draft.staff_forename


def test_alerts_are_active_inactive_and_some_ocg(world: World) -> None:
    alerts = world.alerts
    inactive = [a for a in alerts if not a["isActive"]]
    assert len(inactive) > 20
    assert all(a["activeTo"] < AS_OF.isoformat() and a["madeInactiveAt"] for a in inactive)
    assert all(a["activeTo"] is None or a["activeTo"] > AS_OF.isoformat() for a in alerts if a["isActive"])
    assert sum(1 for a in alerts if a["alertCode"]["code"] == "DOCGM") >= 3
    assert len({a["alertCode"]["code"] for a in alerts}) >= 8
    for raw in alerts:
        alert = Alert.from_api(raw)
        assert alert.prison_code_when_created
        draft_from_alert(alert)
        assert (alert_ignore_reason(alert) is not None) == (alert.code == "DOCGM")


def test_summary_has_counts_only(world: World) -> None:
    summary = world.summary()
    assert summary["people"] == DEFAULT_PEOPLE
    assert summary["inDelius"] + summary["prisonOnly"] == DEFAULT_PEOPLE
    assert summary["caseNotes"] == len(world.case_notes) and summary["ocgAlerts"] >= 3
    flat = repr(summary)
    assert not any(p.noms_number in flat for p in world.people[:20])


# --- loading -----------------------------------------------------------------------------------------------------
def _check_delius_rows(engine, w: World, loaded: dict[str, int]) -> None:
    delius = w.delius_people
    assert loaded == {
        "offenders": len(delius),
        "events": sum(p.custodial_events + p.community_events for p in delius),
        "nsis": sum(len(p.nsis) for p in delius),
        "offenderManagers": len(delius),
        "unlinked": len(w.unlinked_people),
    }
    with engine.connect() as conn:

        def count(table, *where):
            return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()

        assert count(m.offender) == len(delius)
        assert count(m.offender, m.offender.c.noms_number.is_(None)) == len(w.unlinked_people)
        assert count(m.event) == loaded["events"] and count(m.disposal) == loaded["events"]
        assert count(m.nsi) == loaded["nsis"]
        assert count(m.offender_manager, m.offender_manager.c.active_flag == 1) == len(delius)
        rows = dict(conn.execute(select(m.offender.c.crn, m.offender.c.noms_number)).all())
        # Contract v2: the managers' staff rows carry their audit columns and start date, as do their teams.
        staff = conn.execute(select(m.staff)).mappings().all()
        teams = conn.execute(select(m.staff_team)).mappings().all()
    for person in delius:
        assert rows[person.crn] == (person.noms_number if person.noms_linked else None)
    assert staff and all(s["start_date"] and s["created_by_user_id"] and s["last_updated_datetime"] for s in staff)
    assert {t["staff_id"] for t in teams} == {s["staff_id"] for s in staff}
    assert all(t["created_by_user_id"] and t["created_datetime"] and t["row_version"] == 0 for t in teams)
    if engine.dialect.name == "postgresql":
        assert min(s["staff_id"] for s in staff) >= 1_000_000  # from staff_id_seq


def test_load_delius_into_sqlite(delius_sqlite) -> None:
    w = _fresh(seed=11, people=120)
    loaded = w.load_delius(delius_sqlite)
    _check_delius_rows(delius_sqlite, w, loaded)


@pytest.mark.postgres
def test_load_delius_into_postgres(delius_pg) -> None:
    w = _fresh(seed=12)
    started = time.perf_counter()
    loaded = w.load_delius(delius_pg)
    assert time.perf_counter() - started < 10
    _check_delius_rows(delius_pg, w, loaded)


def test_the_world_merges_into_a_version_2_delius(delius_sqlite) -> None:
    """What ``make run`` does with the world: its case notes and alerts of interest merge into the SQLite Delius
    built from contract version 2 -- created (with NSI and event links), or skipped for people Delius does not know."""
    from integration.core.outcomes import Action
    from integration.delius.store import DeliusStore

    w = _fresh(seed=14, people=120)
    w.load_delius(delius_sqlite)
    drafts = []
    for raw in w.case_notes:
        note = CaseNote.from_api(raw)
        if case_note_of_interest(note.type, note.sub_type) and case_note_ignore_reason(note) is None:
            drafts.append(draft_from_case_note(note))
    for raw in w.alerts:
        alert = Alert.from_api(raw)
        if alert_ignore_reason(alert) is None:
            drafts.append(draft_from_alert(alert))
    outcomes = DeliusStore(delius_sqlite).merge(drafts)
    actions = Counter(o.action for o in outcomes)
    assert set(actions) <= {Action.CREATED, Action.SKIPPED, Action.UNCHANGED}, [o for o in outcomes if o.failed][:3]
    assert actions[Action.CREATED] > 100 and actions[Action.SKIPPED] > 10
    with delius_sqlite.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(m.contact).where(m.contact.c.nsi_id.is_not(None))
            ).scalar_one()
            > 0
        )
        assert (
            conn.execute(select(func.count()).select_from(m.audited_interaction)).scalar_one()
            == actions[Action.CREATED]
        )


def test_load_delius_needs_schema_and_reference_data(tmp_path) -> None:
    engine = create_delius_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(RuntimeError, match="schema"):
        _fresh(people=10).load_delius(engine)
    create_schema(engine)
    with pytest.raises(RuntimeError, match="reference data"):
        _fresh(people=10).load_delius(engine)
    engine.dispose()


def test_link_and_sync_links(delius_sqlite) -> None:
    w = _fresh(seed=13, people=100)
    w.load_delius(delius_sqlite)
    person = w.unlinked_people[0]
    assert w.link(delius_sqlite, person) is True
    with delius_sqlite.connect() as conn:
        assert (
            conn.execute(select(m.offender.c.noms_number).where(m.offender.c.crn == person.crn)).scalar_one()
            == person.noms_number
        )
    # A new World object for the same database (the stack restarting) learns about the link.
    again = _fresh(seed=13, people=100)
    assert again.person(person.noms_number).noms_linked is False
    assert again.sync_links(delius_sqlite) == 1
    assert again.person(person.noms_number).noms_linked is True
    assert len(again.unlinked_people) == len(w.unlinked_people)


def test_load_source_serves_notes_and_alerts_over_http(world: World, standins: StandIns) -> None:
    assert world.load_source(standins.store) == {"caseNotes": len(world.case_notes), "alerts": len(world.alerts)}
    assert standins.store.counts() == {"caseNotes": len(world.case_notes), "alerts": len(world.alerts)}
    token = requests.post(
        f"{standins.auth_url}/oauth/token",
        params={"grant_type": "client_credentials"},
        auth=(standins.client_id, standins.client_secret),
        timeout=5,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    note = next(n for n in world.case_notes if n.get("amendments"))
    response = requests.get(standins.case_note_url(note), headers=headers, timeout=5)
    assert response.status_code == 200
    assert response.json() == note
    by_legacy = requests.get(standins.case_note_url(note, legacy=True), headers=headers, timeout=5)
    assert by_legacy.json()["caseNoteId"] == note["caseNoteId"]
    alert = next(a for a in world.alerts if not a["isActive"])
    assert requests.get(standins.alert_url(alert), headers=headers, timeout=5).json() == alert
    person = alert["prisonNumber"]
    active = requests.get(
        f"{standins.alerts_url}/prisoners/{person}/alerts", params={"isActive": "true"}, headers=headers, timeout=5
    ).json()
    assert all(a["isActive"] for a in active["content"])
    assert {a["alertUuid"] for a in active["content"]} == {
        a["alertUuid"] for a in world.alerts if a["prisonNumber"] == person and a["isActive"]
    }


def test_load_source_into_a_plain_store(world: World) -> None:
    store = SourceStore()
    world.load_source(store)
    person = world.people[0].noms_number
    assert {n["caseNoteId"] for n in store.case_notes(person)} == {
        n["caseNoteId"] for n in world.case_notes if n["offenderIdentifier"] == person
    }
