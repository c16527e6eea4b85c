"""Beyond the reference: moved case notes, merged prison records and resynced alerts, through the flows (the batch of
``flows/batch.py``, the backfill of ``flows/backfill.py``) into Delius on PostgreSQL and SQLite, with the reference's
telemetry records each outcome emits (``core/telemetry.py``). The sources and the queue are the in-memory fakes."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import select, update

from integration.clients.fakes import FakeEventsQueue, FakeSourceApi
from integration.core import rules
from integration.core.events import EventKind, parse_sqs_body
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.delius.store import DeliusStore
from integration.flows.backfill import backfill_person
from integration.flows.batch import BatchSettings, process_batch
from integration.local import event_factory as ev
from integration.local.standins import make_alert, make_case_note

SETTINGS = BatchSettings(fetch_workers=2, visibility_timeout=30, lease_margin=5, max_attempts=3, retry_delays=(1, 1, 1))
UNK_LINE = (
    "Establishment details were not available when this contact was created. "
    "Please refer to throughcare history for location details if required."
)


class Recorder:
    """Stands for the telemetry adapter: the records each flow emits, in order."""

    def __init__(self):
        self.records = []

    def __call__(self, records):
        self.records += list(records)

    def named(self, name):
        return [dict(r.properties) for r in self.records if r.name == name]

    @property
    def names(self):
        return [r.name for r in self.records]


@pytest.fixture
def source():
    return FakeSourceApi()


@pytest.fixture
def queue():
    return FakeEventsQueue()


def run(queue, source, engine, bodies, recorder):
    for body in bodies:
        queue.send(body)
    leased = queue.receive(10, visibility_timeout=30)
    assert len(leased) == len(bodies)
    return process_batch(
        leased, source=source, store=DeliusStore(engine), queue=queue, settings=SETTINGS, run_id="test", emit=recorder
    )


def contacts(engine, **where):
    query = select(m.contact)
    for column, value in where.items():
        query = query.where(m.contact.c[column] == value)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query.order_by(m.contact.c.contact_id)).mappings()]


def audits(engine):
    with engine.connect() as conn:
        return conn.execute(select(m.audited_interaction.c.interaction_parameters)).scalars().all()


def created_event(source, note):
    source.add_case_note(note)
    return ev.case_note_event_for(note, case_notes_url=source.case_notes_url)


def move(source, note, to_noms):
    """The Case Notes API moves ``note``: same id, times and amendments; served under the new NOMS number only."""
    previous = note["offenderIdentifier"]
    moved = dict(note, offenderIdentifier=to_noms)
    source.add_case_note(moved)
    return moved, ev.case_note_moved_event(moved, previous, case_notes_url=source.case_notes_url)


# --- moved case notes ---------------------------------------------------------------------------------------------


def test_a_moved_note_is_rewritten_for_its_new_holder_and_the_previous_case_gets_one_data_cleanse(
    delius, source, queue
):
    wrong = add_person(delius, "X000001", "A1111AA", manager_team="N07T01")
    right = add_person(delius, "X000002", "B2222BB", custodial_events=1, manager_team=None)
    recorder = Recorder()
    note = make_case_note(
        "A1111AA",
        type="KA",
        sub_type="KS",
        author_name="Jane Doe",
        text="Key work session",
        created_at="2024-03-01T10:15:30",
        occurred_at="2024-03-01T09:00:00",
    )
    run(queue, source, delius, [created_event(source, note)], recorder)
    [before] = contacts(delius)
    assert before["offender_id"] == wrong.offender_id

    moved, body = move(source, note, "B2222BB")
    report = run(queue, source, delius, [body], recorder)

    [outcome] = report.outcomes
    assert (outcome.event_type, outcome.action, outcome.crn, outcome.disposition) == (
        "person.case-note.moved",
        "moved",
        "X000002",
        "acked",
    )
    [after] = contacts(delius, external_reference=rules.case_note_urn(note["caseNoteId"]))
    assert after["contact_id"] == before["contact_id"] == outcome.contact_id
    assert after["offender_id"] == right.offender_id and after["event_id"] == right.event_ids[0]
    assert after["notes"] == "KA KS\nKey work session" and after["row_version"] == before["row_version"] + 1
    with delius.connect() as conn:
        staff = conn.execute(
            select(m.staff.c.forename, m.staff.c.surname).where(m.staff.c.staff_id == after["staff_id"])
        ).one()
    assert tuple(staff) == ("Jane", "Doe")
    assert audits(delius).count(f"dpsId='{note['caseNoteId']}',contactId='{after['contact_id']}'") == 2
    [cleanse] = contacts(delius, offender_id=wrong.offender_id)
    assert cleanse["description"] == "Data Cleanse" and cleanse["staff_id"] == wrong.manager_staff_id
    merged = recorder.named("CaseNoteMerged")[-1]
    assert (merged["action"], merged["crn"], merged["noms"], merged["caseNoteId"]) == (
        "Moved",
        "X000002",
        "B2222BB",
        note["caseNoteId"],
    )

    # a redelivery of the move changes nothing and writes no second Data Cleanse contact
    again = run(queue, source, delius, [body], recorder)
    assert again.outcomes[0].action == "unchanged"
    assert len(contacts(delius, description="Data Cleanse")) == 1 and len(contacts(delius)) == 2


def test_a_moved_note_leaves_no_data_cleanse_when_the_previous_case_has_no_offender_manager(delius, source, queue):
    add_person(delius, "X000001", "A1111AA", manager_team=None)
    add_person(delius, "X000002", "B2222BB")
    note = make_case_note("A1111AA", type="KA", sub_type="KS")
    run(queue, source, delius, [created_event(source, note)], Recorder())
    _, body = move(source, note, "B2222BB")
    report = run(queue, source, delius, [body], Recorder())
    assert report.outcomes[0].action == "moved"
    assert len(contacts(delius)) == 1 and contacts(delius, description="Data Cleanse") == []


def test_a_note_moved_to_someone_not_in_delius_stays_with_a_reason_naming_the_contact_and_its_crn(
    delius, source, queue, caplog
):
    add_person(delius, "X000001", "A1111AA", manager_team="N07T01")
    recorder = Recorder()
    note = make_case_note("A1111AA", type="KA", sub_type="KS")
    run(queue, source, delius, [created_event(source, note)], recorder)
    [before] = contacts(delius)

    _, body = move(source, note, "B2222BB")
    with caplog.at_level(logging.WARNING, logger="integration.flows.batch"):
        report = run(queue, source, delius, [body], recorder)

    [outcome] = report.outcomes
    expected = f"offender not found in Delius: contact {before['contact_id']} not moved, remains on X000001"
    assert (outcome.action, outcome.reason, outcome.disposition) == ("skipped", expected, "acked")
    assert (outcome.contact_id, outcome.crn) == (before["contact_id"], "X000001")
    assert contacts(delius) == [before] and queue.messages() == []
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(line.startswith("move_not_made ") and f"contact_id={before['contact_id']}" in line for line in lines)
    assert 'moves_not_made count=1 then="a backfill of the new NOMS number moves them"' in lines
    assert recorder.named("CaseNoteMergeFailed")[-1]["exception"] == expected

    # Delius links the new NOMS number later: its backfill moves the contact, with the Data Cleanse contact
    add_person(delius, "X000002", "B2222BB")
    backfill = backfill_person("B2222BB", source, DeliusStore(delius), emit=recorder)
    assert backfill.counts["case_notes_moved"] == 1
    [after] = contacts(delius, external_reference=rules.case_note_urn(note["caseNoteId"]))
    assert after["contact_id"] == before["contact_id"] and after["offender_id"] != before["offender_id"]
    assert len(contacts(delius, description="Data Cleanse")) == 1


def test_a_moved_note_of_no_interest_or_gone_changes_nothing_with_a_reason(delius, source, queue):
    add_person(delius, "X000001", "A1111AA", manager_team="N07T01")
    add_person(delius, "X000002", "B2222BB")
    recorder = Recorder()
    kept = make_case_note("A1111AA", type="KA", sub_type="KS")
    run(queue, source, delius, [created_event(source, kept)], recorder)
    before = contacts(delius)
    no_interest = make_case_note("B2222BB", type="GEN", sub_type="HIS")
    gone = dict(kept, offenderIdentifier="B2222BB")
    bodies = [
        ev.case_note_moved_event(no_interest, "A1111AA", case_notes_url=source.case_notes_url),
        ev.case_note_moved_event(gone, "A1111AA", case_notes_url=source.case_notes_url),
    ]  # 404 under B2222BB
    report = run(queue, source, delius, bodies, recorder)
    assert [(o.action, o.reason) for o in report.outcomes] == [
        ("skipped", "case note type not of interest: GEN HIS"),
        ("skipped", "case note not found (404)"),
    ]
    assert contacts(delius) == before
    assert recorder.named("CaseNoteNotFound") == [{"detailUrl": source.case_note_url(gone)}]


# --- resynced alerts ----------------------------------------------------------------------------------------------


def test_an_alert_without_prison_code_lands_through_unk_when_delius_has_an_unk_institution(delius, source, queue):
    add_person(delius, "X000001", "A1111AA")
    recorder = Recorder()
    alert = make_alert("A1111AA", code="VI", prisonCodeWhenCreated=None)
    assert alert.get("prisonCodeWhenCreated") is None  # as the Alerts API serves a resynced alert
    source.add_alert(alert)
    report = run(queue, source, delius, [ev.alert_event_for(alert, alerts_url=source.alerts_url)], recorder)
    assert report.outcomes[0].action == "created"
    [row] = contacts(delius)
    assert row["notes"].split("\n")[1] == UNK_LINE
    with delius.connect() as conn:
        area = conn.execute(
            select(m.probation_area.c.code).where(m.probation_area.c.probation_area_id == row["probation_area_id"])
        ).scalar()
    assert area == "UNK"
    [merged] = recorder.named("AlertMerged")
    assert (merged["alertUuid"], merged["subType"], merged["action"]) == (alert["alertUuid"], "VI", "Created")


def test_an_alert_without_prison_code_fails_as_before_without_an_unk_institution(delius, source, queue):
    add_person(delius, "X000001", "A1111AA")
    with delius.begin() as conn:
        conn.execute(
            update(m.r_institution).where(m.r_institution.c.nomis_cde_code == "UNK").values(nomis_cde_code="XXX")
        )
    recorder = Recorder()
    alert = make_alert("A1111AA", code="VI", prisonCodeWhenCreated=None)
    source.add_alert(alert)
    report = run(queue, source, delius, [ev.alert_event_for(alert, alerts_url=source.alerts_url)], recorder)
    [outcome] = report.outcomes
    assert (outcome.action, outcome.reason, outcome.retryable, outcome.disposition) == (
        "failed",
        "Unable to verify establishment for alert",
        False,
        "dead-lettered",
    )
    assert contacts(delius) == []
    assert recorder.named("AlertMergeFailed")[0]["exception"] == "Unable to verify establishment for alert"


# --- merged prison records ----------------------------------------------------------------------------------------


def test_an_updated_prison_identifier_backfills_the_new_number_without_duplicates(delius, source, queue):
    """NOMIS merged A1111AA into B2222BB: the notes moved with their ids and times, the alerts were resynced (new ids,
    no prison code), Delius replaced the NOMS number. The backfill of B2222BB adds what is new, updates what is newer
    and duplicates nothing; a redelivery adds nothing."""
    person = add_person(delius, "X000001", "A1111AA", manager_team="N07T01")
    recorder = Recorder()
    old_notes = [
        make_case_note("A1111AA", type="KA", sub_type="KS", created_at=f"2024-03-0{n}T10:00:00") for n in (1, 2, 3)
    ]
    old_alert = make_alert("A1111AA", code="VI", prisonCodeWhenCreated="LEI")
    for note in old_notes:
        source.add_case_note(note)
    source.add_alert(old_alert)
    first = backfill_person("A1111AA", source, DeliusStore(delius), emit=recorder)
    assert first.counts["case_notes_created"] == 3 and first.counts["alerts_created"] == 1
    written = {r["external_reference"]: r["contact_id"] for r in contacts(delius)}

    # The merge: Delius's NOMS number replaced, the notes moved (one amended since), the alerts resynced under B2222BB
    with delius.begin() as conn:
        conn.execute(update(m.offender).where(m.offender.c.crn == "X000001").values(noms_number="B2222BB"))
    for note in old_notes:
        source.add_case_note(dict(note, offenderIdentifier="B2222BB"))
    amended = dict(
        old_notes[0],
        offenderIdentifier="B2222BB",
        amendments=[
            {"creationDateTime": "2024-04-01T12:00:00", "authorName": "Jo Bloggs", "additionalNoteText": "More"}
        ],
    )
    source.add_case_note(amended)
    own_note = make_case_note("B2222BB", type="OMIC", sub_type="OPEN")
    source.add_case_note(own_note)
    source.remove_alert(old_alert["alertUuid"])
    resynced = dict(old_alert, alertUuid=str(uuid.uuid4()), prisonNumber="B2222BB")
    resynced.pop("prisonCodeWhenCreated")
    source.add_alert(resynced)

    event = parse_sqs_body(ev.identifier_updated_event("B2222BB", "X000001", "A1111AA"))
    assert event.kind is EventKind.LINKAGE and event.noms_number == "B2222BB"

    report = backfill_person(event.noms_number, source, DeliusStore(delius), cause=event.event_type, emit=recorder)
    counts = report.counts
    assert (counts["case_notes_created"], counts["case_notes_updated"], counts["case_notes_unchanged"]) == (1, 1, 2)
    assert (counts["alerts_created"], counts["case_notes_moved"], counts["case_notes_failed"]) == (1, 0, 0)
    rows = contacts(delius)
    assert all(r["offender_id"] == person.offender_id for r in rows)
    urns = [r["external_reference"] for r in rows]
    assert len(urns) == len(set(urns)) == 6  # 3 notes + own note + old alert + resynced alert
    assert all(written[urn] == r["contact_id"] for urn, r in zip(urns, rows) if urn in written)
    [resynced_row] = contacts(delius, external_reference=rules.alert_urn(resynced["alertUuid"], True))
    assert UNK_LINE in resynced_row["notes"]
    assert recorder.named("CaseNotesMigrated")[-1] == {
        "nomsId": "B2222BB",
        "crn": "X000001",
        "cause": "probation-case.prison-identifier.updated",
        "caseNotesCreated": "1",
        "caseNotesUpdated": "1",
        "alertsCreated": "1",
    }

    again = backfill_person("B2222BB", source, DeliusStore(delius), cause=event.event_type, emit=recorder)
    assert {k: v for k, v in again.counts.items() if v and not k.endswith("unchanged")} == {}
    assert len(contacts(delius)) == 6
    # nothing reached the record this time, so no crn (as the reference: the crn of the first merge, if any)
    assert recorder.named("CaseNotesMigrated")[-1] == {
        "nomsId": "B2222BB",
        "cause": "probation-case.prison-identifier.updated",
    }


# --- telemetry: every outcome of a batch, with the reference's names and keys -------------------------------------


def test_each_outcome_of_a_batch_emits_the_references_event_with_its_keys(delius, source, queue):
    add_person(delius, "X000001", "A1111AA")
    recorder = Recorder()
    merged = make_case_note("A1111AA", type="KA", sub_type="KS", location_id="MDI")
    ignored = make_case_note("A1111AA", type="KA", sub_type="KS", location_id="TRN")
    not_in_delius = make_case_note("Z9999ZZ", type="KA", sub_type="KS")
    alert = make_alert("A1111AA", code="VI")
    source.add_alert(alert)
    gone = make_alert("A1111AA", code="VI")
    bodies = [
        created_event(source, merged),
        created_event(source, ignored),
        created_event(source, not_in_delius),
        ev.alert_event_for(alert, alerts_url=source.alerts_url),
        ev.alert_event_for(gone, alerts_url=source.alerts_url),
        ev.case_note_event("A1111AA", str(uuid.uuid4()), "GEN", "HIS", case_notes_url=source.case_notes_url),
    ]
    run(queue, source, delius, bodies, recorder)
    note_keys = ["caseNoteId", "type", "subType", "eventId", "created", "occurrence", "location"]
    alert_keys = ["alertUuid", "type", "subType", "created", "activeFrom"]
    assert sorted(recorder.names) == sorted(
        ["CaseNoteMerged", "CaseNoteIgnored", "CaseNoteMergeFailed", "AlertMerged", "AlertNotFound"]
    )  # nothing for the type not of interest
    assert list(recorder.named("CaseNoteMerged")[0]) == note_keys + ["crn", "noms", "action"]
    assert list(recorder.named("CaseNoteIgnored")[0]) == note_keys + ["reason"]
    assert recorder.named("CaseNoteIgnored")[0]["reason"] == "Prisoner being transferred"
    assert list(recorder.named("CaseNoteMergeFailed")[0]) == note_keys + ["exception"]
    assert recorder.named("CaseNoteMergeFailed")[0]["exception"] == "offender not found in Delius"
    assert list(recorder.named("AlertMerged")[0]) == alert_keys + ["crn", "noms", "action"]
    assert recorder.named("AlertNotFound") == [{"detailUrl": source.alert_url(gone)}]
