"""Hostile inputs through the flows (issue 11): every trigger served by the HTTP stand-ins, among good events.

For each trigger, through ``process_batch`` with moto's SQS server, the stand-ins and Delius (PostgreSQL and
SQLite): the good events of the same batch land on their first delivery, the bad one is dead-lettered at once with a
readable reason (or lands with the characters no database stores replaced), and nothing is lost: the queue is
empty and every message is either in Delius or in the dead-letter queue. The same for the backfill: a bad record
fails its person's partition, never another person's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import pytest
from sqlalchemy import func, select

from integration.clients.hmpps import HmppsSourceApi
from integration.core.events import parse_sqs_body
from integration.core.intake import plan_intake
from integration.core.messages import FAILURE_REASON
from integration.defs.backfill.assets import NOT_A_NOMS_NUMBER, linked_person_contacts
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.delius.store import DeliusStore
from integration.flows.backfill import backfill_people
from integration.flows.batch import BatchSettings, process_batch
from integration.local import event_factory as ev
from integration.local.standins import make_case_note
from integration_tests.fixtures.dagster import delius_resource, source_api_resource

pytestmark = [pytest.mark.postgres, pytest.mark.sqs]

NOMS = "A1234BC"
SETTINGS = BatchSettings(
    fetch_workers=4, visibility_timeout=60, lease_margin=5, max_attempts=3, retry_delays=(30, 30, 30), merge_chunk=500
)
ZONE_300 = "Europe/" + "Z" * 293
DEEP = "[" * 100_000 + "]" * 100_000
LONG_ID = "x" * 5000
UNREADABLE = "case notes API answered with JSON too deeply nested or with a number too long to read"


@pytest.fixture
def source(standins):
    api = HmppsSourceApi(
        standins.auth_url,
        standins.client_id,
        standins.client_secret,
        standins.case_notes_url,
        standins.alerts_url,
        timeout=(2, 10),
        backoff_factor=0.01,
    )
    yield api
    api.close()


@dataclass(frozen=True)
class Trigger:
    """One hostile answer: ``make(standins)`` serves it and returns the event that points at it."""

    name: str
    make: Callable
    reason: str | None  # the dead-letter reason; None: it lands, with ``replaced`` characters replaced
    replaced: int = 0
    marker: str = "Z" * 40  # text of the hostile value that must never be in a reason


def stored_note(**fields):
    def make(standins):
        note = standins.add_case_note(NOMS, type="KA", sub_type="KS", **fields)
        return ev.case_note_event_for(note, case_notes_url=standins.case_notes_url)

    return make


def crafted_note(body_of: Callable[[dict], str], case_note_id: str | None = None):
    """A case note answered verbatim at its detailUrl: what the stand-in's store cannot hold."""

    def make(standins):
        note = make_case_note(NOMS, type="KA", sub_type="KS", case_note_id=case_note_id or str(uuid.uuid4()))
        url = f"{standins.case_notes_url}/case-notes/{NOMS}/{note['caseNoteId']}"
        standins.serve(url, body_of(note))
        return ev.case_note_event(NOMS, note["caseNoteId"], "KA", "KS", case_notes_url=standins.case_notes_url)

    return make


def stored_alert(**fields):
    def make(standins):
        alert = standins.add_alert(NOMS, code="VI", prison_code="LEI", **fields)
        return ev.alert_event_for(alert, alerts_url=standins.alerts_url)

    return make


def hostile_event(standins):
    """A good case note whose event names a 10 kB NOMS number and id (they end up in run metadata, capped)."""
    note = standins.add_case_note(NOMS, type="KA", sub_type="KS")
    body = json.loads(ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    inner = json.loads(body["Message"])
    inner["personReference"]["identifiers"] = [{"type": "NOMS", "value": "Z" * 10_000}]
    inner["additionalInformation"]["id"] = "Z" * 10_000
    inner["detailUrl"] = standins.case_note_url(note)
    body["Message"] = json.dumps(inner)
    return json.dumps(body)


def surrogate_event(standins):
    """An event whose SNS ``Message`` carries a lone surrogate (escaped in the SQS body, real once parsed) and whose
    detailUrl is off the allow-list: it must reach the dead-letter queue, which takes no lone surrogates."""
    body = json.loads(ev.case_note_event(NOMS, str(uuid.uuid4()), "KA", "KS", case_notes_url="http://evil.example"))
    inner = json.loads(body["Message"])
    inner["description"] = "broken \ud800 surrogate"
    body["Message"] = json.dumps(inner, ensure_ascii=False)
    return json.dumps(body)


TRIGGERS = [
    Trigger(
        "zone id of 300 characters (OSError)",
        stored_note(created_at=f"2025-03-01T10:00:00[{ZONE_300}]"),
        "case note has an invalid creationDateTime",
    ),
    Trigger(
        "year 9999 with an offset (OverflowError)",
        stored_note(created_at="9999-12-31T23:30:00-05:00"),
        "case note has an invalid creationDateTime",
    ),
    Trigger(
        "legacyId of 5,000 digits in a string (ValueError)",
        stored_note(legacyId="9" * 5000),
        "case note has an invalid legacyId",
        marker="9" * 40,
    ),
    Trigger(
        "legacyId of 5,000 digits as a JSON number (ValueError)",
        crafted_note(lambda note: json.dumps(note)[:-1] + ', "legacyId": ' + "9" * 5000 + "}"),
        f"{UNREADABLE} (ValueError)",
        marker="9" * 40,
    ),
    Trigger(
        "JSON nested 100,000 deep (RecursionError)",
        crafted_note(lambda note: json.dumps(note)[:-1] + ', "deep": ' + DEEP + "}"),
        f"{UNREADABLE} (RecursionError)",
        marker="[[[[",
    ),
    Trigger(
        "legacyId of 2^63 (SQLite OverflowError)",
        stored_note(legacy_id=2**63),
        "case note has an invalid legacyId",
        marker="9223372036854775808",
    ),
    Trigger(
        "case-note id of 5,000 characters (DataError)",
        crafted_note(json.dumps, case_note_id=LONG_ID),
        "case note id too long: its URN does not fit contact.external_reference (4000 bytes)",
        marker="x" * 40,
    ),
    Trigger("NUL in the text (PostgreSQL)", stored_note(text="before\x00after"), None, replaced=1),
    Trigger(
        "lone surrogate in the text (UnicodeEncodeError)", stored_note(text="broken \ud800 pair"), None, replaced=1
    ),
    Trigger(
        "NUL and a lone surrogate in the author's name", stored_note(author_name="Ann\x00 Zo\udc00la"), None, replaced=2
    ),
    Trigger(
        "alert createdAt with a zone id of 300 characters",
        stored_alert(created_at=f"2025-03-01T10:00:00[{ZONE_300}]"),
        "alert has an invalid createdAt",
    ),
    Trigger("NUL in an alert's description", stored_alert(description="alert\x00text"), None, replaced=1),
    Trigger("10 kB NOMS number and id in the event", hostile_event, None),
    Trigger(
        "lone surrogate in the event, dead-lettered",
        surrogate_event,
        "detailUrl host not on the allow-list: http://evil.example",
    ),
]


def send(sqs, body: str) -> str:
    return sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)["MessageId"]


def lease_all(sqs, expected: int):
    """Receive what is on the queue as a consumer does, and plan it into leased events (generous wait)."""
    queue = sqs.events_queue()
    messages = []
    deadline = time.monotonic() + 60
    while len(messages) < expected and time.monotonic() < deadline:
        messages += queue.receive(10, visibility_timeout=60)
    assert len(messages) == expected
    return [e for batch in plan_intake(messages, max_per_run=1000).batches for e in batch]


def good_events(standins, sqs) -> list[str]:
    notes = [standins.add_case_note(NOMS, type="KA", sub_type="KS", text=f"good {n}") for n in range(3)]
    alert = standins.add_alert(NOMS, code="HA", prison_code="LEI")
    ids = [send(sqs, ev.case_note_event_for(n, case_notes_url=standins.case_notes_url)) for n in notes]
    ids.append(send(sqs, ev.alert_event_for(alert, alerts_url=standins.alerts_url)))
    return ids


def contact_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(m.contact)).scalar_one()


def assert_landed_first_time(outcomes, ids):
    for message_id in ids:
        outcome = outcomes[message_id]
        assert (outcome.action, outcome.disposition, outcome.attempt) == ("created", "acked", 1), outcome


@pytest.mark.parametrize("trigger", TRIGGERS, ids=[t.name for t in TRIGGERS])
def test_one_hostile_answer_among_good_events(trigger, sqs, standins, source, delius):
    add_person(delius, "X100001", NOMS)
    first = good_events(standins, sqs)
    bad_body = trigger.make(standins)
    bad = send(sqs, bad_body)
    last = good_events(standins, sqs)

    report = process_batch(
        lease_all(sqs, 9),
        source=source,
        store=DeliusStore(delius),
        queue=sqs.events_queue(),
        settings=SETTINGS,
        run_id="hostile",
    )

    outcomes = {o.sqs_message_id: o for o in report.outcomes}
    assert_landed_first_time(outcomes, first + last)
    outcome = outcomes[bad]
    dead = sqs.drain(sqs.dlq_url)
    if trigger.reason is None:
        assert (outcome.action, outcome.disposition) == ("created", "acked")
        assert outcome.replaced_characters == trigger.replaced
        assert dead == [] and contact_count(delius) == 9
    else:
        assert (outcome.action, outcome.retryable, outcome.disposition) == ("failed", False, "dead-lettered")
        assert outcome.reason == trigger.reason and trigger.marker not in outcome.reason
        [message] = dead
        assert message["MessageAttributes"][FAILURE_REASON]["StringValue"] == trigger.reason
        assert parse_sqs_body(message["Body"]).detail_url == parse_sqs_body(bad_body).detail_url  # the event itself
        assert contact_count(delius) == 8
    assert sqs.depth() == 0  # nothing left in flight, nothing lost
    assert all(len(o.source_id or "") <= 200 and len(o.noms_number or "") <= 20 for o in report.outcomes)


def test_every_trigger_in_one_batch(sqs, standins, source, delius_pg):
    add_person(delius_pg, "X100001", NOMS)
    good = good_events(standins, sqs)
    bad = {send(sqs, trigger.make(standins)): trigger for trigger in TRIGGERS}
    good += good_events(standins, sqs)

    report = process_batch(
        lease_all(sqs, len(good) + len(bad)),
        source=source,
        store=DeliusStore(delius_pg),
        queue=sqs.events_queue(),
        settings=SETTINGS,
        run_id="hostile",
    )

    outcomes = {o.sqs_message_id: o for o in report.outcomes}
    assert_landed_first_time(outcomes, good)
    landing = [i for i, t in bad.items() if t.reason is None]
    assert {outcomes[i].action for i in landing} == {"created"}
    assert {i: outcomes[i].reason for i, t in bad.items() if t.reason} == {
        i: t.reason for i, t in bad.items() if t.reason
    }
    assert len(sqs.drain(sqs.dlq_url)) == len(bad) - len(landing)
    assert contact_count(delius_pg) == len(good) + len(landing) and sqs.depth() == 0
    assert report.replaced_characters == sum(t.replaced for t in TRIGGERS)


# --------------------------------------------------------------------------------------------- backfill


def test_a_hostile_record_fails_its_person_never_another(standins, source, delius):
    add_person(delius, "X100001", "A7000AA")
    add_person(delius, "X100002", "A7000BB")
    standins.add_case_note("A7000AA", type="KA", sub_type="KS", text="good")
    standins.add_case_note("A7000AA", type="KA", sub_type="KS", legacy_id=2**63)
    standins.add_case_note("A7000AA", type="KA", sub_type="KS", created_at=f"2025-03-01T10:00:00[{ZONE_300}]")
    standins.add_case_note("A7000AA", type="KA", sub_type="KS", text="nul\x00")
    standins.add_alert("A7000AA", code="VI", description="surrogate \udfff")
    kept = [standins.add_case_note("A7000BB", type="KA", sub_type="KS") for _ in range(3)]

    reports = {r.noms_number: r for r in backfill_people(["A7000AA", "A7000BB"], source, DeliusStore(delius))}

    hostile, other = reports["A7000AA"], reports["A7000BB"]
    assert hostile.first_failure and "invalid" in hostile.first_failure
    assert sorted(i.outcome.reason for i in hostile.failures) == [
        "case note has an invalid creationDateTime",
        "case note has an invalid legacyId",
    ]
    assert hostile.counts["case_notes_created"] == 2 and hostile.counts["alerts_created"] == 1
    assert hostile.replaced_characters == 2
    assert other.first_failure is None and other.counts["case_notes_created"] == len(kept)


def test_an_unreadable_person_fails_alone(standins, source, delius_pg):
    add_person(delius_pg, "X100001", "A7000AA")
    add_person(delius_pg, "X100002", "A7000BB")
    standins.serve("/search/case-notes/A7000AA", '{"content": ' + DEEP + "}")
    standins.add_case_note("A7000BB", type="KA", sub_type="KS")

    reports = {r.noms_number: r for r in backfill_people(["A7000AA", "A7000BB"], source, DeliusStore(delius_pg))}

    assert reports["A7000AA"].error == f"{UNREADABLE} (RecursionError)"
    assert reports["A7000BB"].error is None and reports["A7000BB"].counts["case_notes_created"] == 1


@pytest.mark.parametrize("key", ["A１２３４BC", "A١٢٣٤BC", "a1234bc", "A1234BC" * 1500])
def test_the_asset_refuses_a_partition_key_that_is_not_a_noms_number(key, instance, standins, delius_pg):
    add_person(delius_pg, "X100001", "A7000AA")
    standins.add_case_note("A7000AA", type="KA", sub_type="KS")
    instance.add_dynamic_partitions("noms_number", [key, "A7000AA"])
    resources = {"delius": delius_resource(delius_pg), "source_api": source_api_resource(standins)}
    keys = instance.get_dynamic_partitions("noms_number")

    result = dg.materialize(
        [linked_person_contacts],
        instance=instance,
        resources=resources,
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )

    assert not result.success
    [failure] = [e for e in result.all_node_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.event_specific_data.user_failure_data.description
    assert description.startswith("1 of 2 backfills failed: ") and NOT_A_NOMS_NUMBER in description
    assert len(description) < 300
    assert {e.partition for e in result.asset_materializations_for_node("linked_person_contacts")} == {"A7000AA"}
    assert [r["body"] for r in standins.search_requests] and {r["person"] for r in standins.search_requests} == {
        "A7000AA"
    }
    assert contact_count(delius_pg) == 1


@pytest.mark.parametrize("name", ["Émile Zola", "İlkay Gündoğan"])
def test_an_author_with_a_non_ascii_name_is_one_staff_row_across_batches(name, sqs, standins, source, delius):
    add_person(delius, "X100001", NOMS)
    with delius.connect() as conn:
        staff_before = conn.execute(select(func.count()).select_from(m.staff)).scalar_one()
    for spelling in (name, name.upper(), name):
        note = standins.add_case_note(NOMS, type="KA", sub_type="KS", author_name=spelling)
        send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
        [outcome] = process_batch(
            lease_all(sqs, 1), source=source, store=DeliusStore(delius), queue=sqs.events_queue(), settings=SETTINGS
        ).outcomes
        assert outcome.action == "created"
    with delius.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.staff)).scalar_one() == staff_before + 1
        assert conn.execute(select(func.count(m.contact.c.staff_id.distinct()))).scalar_one() == 1
