"""A micro-batch end to end without Dagster: moto's SQS server, the HTTP stand-ins and PostgreSQL, all real."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from integration.clients.hmpps import HmppsSourceApi
from integration.core.intake import plan_intake
from integration.core.messages import FAILURE_REASON
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.delius.store import DeliusStore
from integration.flows.batch import BatchSettings, process_batch
from integration.local import event_factory as ev
from integration.local.standins import deactivate_alert, make_amendment

pytestmark = [pytest.mark.postgres, pytest.mark.sqs]

SETTINGS = BatchSettings(fetch_workers=4, visibility_timeout=30, lease_margin=5, max_attempts=3, retry_delays=(1, 1, 1))


@pytest.fixture
def source(standins):
    api = HmppsSourceApi(
        standins.auth_url,
        standins.client_id,
        standins.client_secret,
        standins.case_notes_url,
        standins.alerts_url,
        timeout=(1, 2),
        backoff_factor=0.01,
    )
    yield api
    api.close()


def lease_all(sqs, expected: int):
    """Receive what is on the queue as the sensor does, and plan it into leased events."""
    queue = sqs.events_queue()
    messages = []
    deadline = time.monotonic() + 10
    while len(messages) < expected and time.monotonic() < deadline:
        messages += queue.receive(10, visibility_timeout=30)
    plan = plan_intake(messages, max_per_run=1000)
    return [e for batch in plan.batches for e in batch]


def run(sqs, source, engine, expected: int):
    events = lease_all(sqs, expected)
    assert len(events) == expected
    return process_batch(
        events, source=source, store=DeliusStore(engine), queue=sqs.events_queue(), settings=SETTINGS, run_id="test-run"
    )


def contacts(engine):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(m.contact).order_by(m.contact.c.contact_id)).mappings()]


def by_sqs_id(report):
    return {o.sqs_message_id: o for o in report.outcomes}


def send(sqs, body) -> str:
    return sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)["MessageId"]


def test_case_notes_and_alerts_become_contacts_and_messages_leave_the_queue(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    note = standins.add_case_note("A1000AA", type="KA", sub_type="KS", text="Discussed education plans.")
    alert = standins.add_alert("A1000AA", code="VI", prison_code="MDI")
    send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    send(sqs, ev.alert_event_for(alert, alerts_url=standins.alerts_url))

    report = run(sqs, source, delius_pg, 2)

    assert sorted(o.action for o in report.outcomes) == ["created", "created"]
    rows = contacts(delius_pg)
    assert {r["external_reference"] for r in rows} == {
        f"urn:uk:gov:hmpps:prison-case-note:{note['caseNoteId']}",
        f"urn:uk:gov:hmpps:prisoner-alert:active:{alert['alertUuid']}",
    }
    assert any(r["notes"] == "KA KS\nDiscussed education plans." for r in rows)
    assert sqs.depth() == 0 and sqs.depth(sqs.dlq_url) == 0
    assert standins.requests("token") == 1
    assert standins.requests("get_case_note") == 1 and standins.requests("get_alert") == 1


def test_filtered_ignored_not_found_and_unknown_people_are_acknowledged_with_reasons(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    trn = standins.add_case_note("A1000AA", type="GEN", sub_type="OSE", location_id="TRN")
    ocg = standins.add_case_note(
        "A1000AA",
        type="GEN",
        sub_type="OSE",
        text="Security. Do not share with offender and OCG Nominal - made active.",
    )
    docgm = standins.add_alert("A1000AA", code="DOCGM")
    unknown_person = standins.add_case_note("Z9999ZZ", type="GEN", sub_type="OSE")
    ids = {
        "not of interest": send(
            sqs,
            ev.case_note_event(
                "A1000AA", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "GEN", "HIS", case_notes_url=standins.case_notes_url
            ),
        ),
        "trn": send(sqs, ev.case_note_event_for(trn, case_notes_url=standins.case_notes_url)),
        "ocg": send(sqs, ev.case_note_event_for(ocg, case_notes_url=standins.case_notes_url)),
        "docgm": send(sqs, ev.alert_event_for(docgm, alerts_url=standins.alerts_url)),
        "404": send(
            sqs,
            ev.case_note_event(
                "A1000AA", "9b2f0c2e-0000-4000-8000-000000000404", "GEN", "OSE", case_notes_url=standins.case_notes_url
            ),
        ),
        "not in delius": send(sqs, ev.case_note_event_for(unknown_person, case_notes_url=standins.case_notes_url)),
        "deleted event": send(sqs, ev.sns_body({"eventType": "person.case-note.deleted", "version": 1})),
    }
    report = run(sqs, source, delius_pg, len(ids))
    outcomes = by_sqs_id(report)
    reasons = {name: (outcomes[i].action, outcomes[i].reason) for name, i in ids.items()}
    assert reasons == {
        "not of interest": ("skipped", "case note type not of interest: GEN HIS"),
        "trn": ("skipped", "Prisoner being transferred"),
        "ocg": ("skipped", "Filtered due to data sharing restrictions"),
        "docgm": ("skipped", "OCG nominal alert (DOCGM)"),
        "404": ("skipped", "case note not found (404)"),
        "not in delius": ("skipped", "offender not found in Delius"),
        "deleted event": ("skipped", "event type not handled: person.case-note.deleted"),
    }
    assert all(o.disposition == "acked" for o in report.outcomes)
    assert contacts(delius_pg) == []
    assert sqs.depth() == 0 and sqs.depth(sqs.dlq_url) == 0
    # The not-of-interest event was never fetched; the 404 was asked three times, as the reference does.
    assert standins.requests("get_case_note") == 6


def test_a_404_that_clears_on_the_second_ask_still_creates_the_contact(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    note = standins.add_case_note("A1000AA", type="KA", sub_type="KS")
    standins.set_fault("get_case_note", status=404, times=1)  # published before the API could serve it
    send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    [outcome] = run(sqs, source, delius_pg, 1).outcomes
    assert outcome.action == "created" and standins.requests("get_case_note") == 2


def test_detail_url_off_the_allow_list_is_dead_lettered_without_sending_the_token(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    body = ev.case_note_event(
        "A1000AA", "0b0c8f6e-1111-4222-8333-444455556666", "GEN", "OSE", case_notes_url="http://evil.example.com"
    )
    message_id = send(sqs, body)
    report = run(sqs, source, delius_pg, 1)
    [outcome] = report.outcomes
    assert (outcome.action, outcome.disposition) == ("failed", "dead-lettered")
    assert outcome.reason == "detailUrl host not on the allow-list: http://evil.example.com"
    [dead] = sqs.drain(sqs.dlq_url)
    assert dead["MessageAttributes"][FAILURE_REASON]["StringValue"] == outcome.reason
    assert dead["MessageAttributes"]["hmpps-failed-by"]["StringValue"] == "test-run"
    assert "evil.example.com" in dead["Body"] and message_id
    assert standins.requests() == 0 and sqs.depth() == 0


def test_upstream_outage_is_retried_with_back_off_then_dead_lettered_with_the_reason(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    note = standins.add_case_note("A1000AA", type="GEN", sub_type="OSE")
    standins.set_fault("get_case_note", status=503)
    send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))

    for attempt in (1, 2):
        [outcome] = run(sqs, source, delius_pg, 1).outcomes
        assert (outcome.action, outcome.retryable, outcome.disposition) == ("failed", True, "retry later")
        assert outcome.attempt == attempt
        assert sqs.depth() == 1 and sqs.depth(sqs.dlq_url) == 0
        time.sleep(1.2)  # the back-off (1 s here) makes it visible again
    [outcome] = run(sqs, source, delius_pg, 1).outcomes
    assert outcome.disposition == "dead-lettered" and outcome.attempt == 3
    assert "503" in outcome.reason
    [dead] = sqs.drain(sqs.dlq_url)
    assert "503" in dead["MessageAttributes"][FAILURE_REASON]["StringValue"]
    assert dead["MessageAttributes"]["hmpps-attempts"]["StringValue"] == "3"
    assert sqs.depth() == 0 and contacts(delius_pg) == []


def test_a_transient_failure_then_recovery_writes_the_contact_once(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    note = standins.add_case_note("A1000AA", type="GEN", sub_type="OSE")
    standins.set_fault("get_case_note", status=502, times=10)  # more than the client's own 3 retries
    send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    [first] = run(sqs, source, delius_pg, 1).outcomes
    assert first.disposition == "retry later"
    standins.clear_faults()
    time.sleep(1.2)
    [second] = run(sqs, source, delius_pg, 1).outcomes
    assert (second.action, second.disposition) == ("created", "acked")
    assert len(contacts(delius_pg)) == 1 and sqs.depth() == 0


def test_delius_unavailable_keeps_every_message_for_a_retry(sqs, standins, source, delius_pg):
    from integration.delius.engine import create_delius_engine

    add_person(delius_pg, "X100001", "A1000AA")
    notes = [standins.add_case_note("A1000AA", type="KA", sub_type="KS") for _ in range(3)]
    for note in notes:
        send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    broken = create_delius_engine("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    report = run(sqs, source, broken, 3)
    assert {(o.action, o.retryable, o.disposition) for o in report.outcomes} == {("failed", True, "retry later")}
    assert report.failed[0].reason == "Delius database unavailable (OperationalError)"
    assert sqs.depth() == 3 and sqs.depth(sqs.dlq_url) == 0


class FlakyStore(DeliusStore):
    """A real store whose second merge call finds the database gone (the outage hits one chunk of the batch)."""

    def __init__(self, engine):
        super().__init__(engine)
        self.calls: list[int] = []

    def merge(self, drafts):
        self.calls.append(len(drafts))
        if len(self.calls) == 2:
            from integration.core.outcomes import StoreUnavailable

            raise StoreUnavailable("Delius database unavailable (OperationalError)")
        return super().merge(drafts)


def test_a_batch_is_merged_and_acknowledged_chunk_by_chunk(sqs, standins, source, delius_pg):
    """Chunks of 2: five notes are three merges; the chunk hit by an outage alone waits for a retry, the others'
    contacts are committed and their messages deleted."""
    from dataclasses import replace

    add_person(delius_pg, "X100001", "A1000AA")
    notes = [standins.add_case_note("A1000AA", type="KA", sub_type="KS") for _ in range(5)]
    for note in notes:
        send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    events = lease_all(sqs, 5)
    store = FlakyStore(delius_pg)

    report = process_batch(
        events,
        source=source,
        store=store,
        queue=sqs.events_queue(),
        settings=replace(SETTINGS, merge_chunk=2),
        run_id="test-run",
    )

    assert store.calls == [2, 2, 1]
    outcomes = [(o.action, o.disposition) for o in report.outcomes]
    assert outcomes == [("created", "acked")] * 2 + [("failed", "retry later")] * 2 + [("created", "acked")]
    assert len(contacts(delius_pg)) == 3
    assert sqs.depth() == 2 and sqs.depth(sqs.dlq_url) == 0
    assert set(report.seconds) == {"fetch", "merge", "acknowledge", "total"}


def test_duplicates_redeliveries_and_out_of_order_updates_never_regress_a_contact(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    note = standins.add_case_note("A1000AA", type="KA", sub_type="KS", text="First version.")
    created = ev.case_note_event_for(note, case_notes_url=standins.case_notes_url)
    send(sqs, created)
    send(sqs, created)  # SNS delivers twice
    report = run(sqs, source, delius_pg, 2)
    assert sorted(o.action for o in report.outcomes) == ["created", "unchanged"]

    later = datetime.fromisoformat(note["creationDateTime"]) + timedelta(minutes=5)
    amended = dict(note, amendments=[make_amendment("Second thoughts.", author_name="Mary Major", created_at=later)])
    standins.store.put_case_note(amended)
    updated = ev.case_note_event_for(
        amended, case_notes_url=standins.case_notes_url, event_type="person.case-note.updated"
    )
    send(sqs, updated)
    send(sqs, created)  # the old "created" event arrives late
    report = run(sqs, source, delius_pg, 2)
    # Both fetch the current version: one updates, the other finds it already up to date.
    assert sorted(o.action for o in report.outcomes) == ["unchanged", "updated"]
    [row] = contacts(delius_pg)
    assert row["notes"].startswith("KA KS\nFirst version.\n[Mary Major updated the case notes on ")
    assert row["notes"].rstrip().endswith("]\nSecond thoughts.")
    with delius_pg.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.audited_interaction)).scalar_one() == 2


def test_alert_made_inactive_adds_a_second_contact_once(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    alert = standins.add_alert("A1000AA", code="HA", prison_code="LEI")
    send(sqs, ev.alert_event_for(alert, alerts_url=standins.alerts_url))
    run(sqs, source, delius_pg, 1)
    inactive = standins.store.put_alert(deactivate_alert(alert, by_display_name="Amy Officer"))
    send(sqs, ev.alert_event_for(inactive, alerts_url=standins.alerts_url, event_type="person.alert.updated"))
    send(sqs, ev.alert_event_for(inactive, alerts_url=standins.alerts_url, event_type="person.alert.inactive"))
    report = run(sqs, source, delius_pg, 2)
    assert sorted(o.action for o in report.outcomes) == ["created", "unchanged"]
    urns = sorted(r["external_reference"] for r in contacts(delius_pg))
    assert urns == sorted(
        [
            f"urn:uk:gov:hmpps:prisoner-alert:active:{alert['alertUuid']}",
            f"urn:uk:gov:hmpps:prisoner-alert:inactive:{alert['alertUuid']}",
        ]
    )


def test_resettlement_passport_and_guided_interview_notes(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA", nsis=[])
    bcst = standins.add_case_note(
        "A1000AA", type="RESET", sub_type="BCST", text="Case note summary from Accommodation report\nDetails follow."
    )
    guided = standins.add_case_note("A1000AA", type="RESET", sub_type="GUIDINT", text="Guided interview held.")
    for note in (bcst, guided):
        send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    run(sqs, source, delius_pg, 2)
    rows = {r["external_reference"].rsplit(":", 1)[1]: r for r in contacts(delius_pg)}
    assert rows[bcst["caseNoteId"]]["description"] == "BCST case note for Accommodation"
    with delius_pg.connect() as conn:
        codes = dict(conn.execute(select(m.r_contact_type.c.contact_type_id, m.r_contact_type.c.code)).all())
    assert codes[rows[bcst["caseNoteId"]]["contact_type_id"]] == "BCSP2"
    assert codes[rows[guided["caseNoteId"]]["contact_type_id"]] == "NOMIS033"


def test_a_note_moved_in_the_prison_is_fetched_under_its_new_holder_and_moved_with_a_data_cleanse(
    sqs, standins, source, delius_pg
):
    wrong = add_person(delius_pg, "X900001", "A9000AA", manager_team="N07T01")
    right = add_person(delius_pg, "X900002", "B9000BB")
    note = standins.add_case_note("A9000AA", type="KA", sub_type="KS")
    send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    assert run(sqs, source, delius_pg, 1).outcomes[0].action == "created"

    [moved] = standins.store.move_case_notes("A9000AA", "B9000BB", [note["caseNoteId"]])
    send(sqs, ev.case_note_moved_event(moved, "A9000AA", case_notes_url=standins.case_notes_url))
    [outcome] = run(sqs, source, delius_pg, 1).outcomes
    assert (outcome.event_type, outcome.action, outcome.crn, outcome.disposition) == (
        "person.case-note.moved",
        "moved",
        "X900002",
        "acked",
    )
    on_right = [c for c in contacts(delius_pg) if c["offender_id"] == right.offender_id]
    on_wrong = [c for c in contacts(delius_pg) if c["offender_id"] == wrong.offender_id]
    assert [c["external_reference"] for c in on_right] == [f"urn:uk:gov:hmpps:prison-case-note:{note['caseNoteId']}"]
    assert [c["description"] for c in on_wrong] == ["Data Cleanse"]
    assert sqs.depth() == 0
