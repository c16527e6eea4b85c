"""Hostile inputs through the real daemon path (issue 11, "Bulkheads"): ``dagster-daemon run -w workspace.yaml`` with
only the README's variables, moto's SQS server, the stand-ins serving crafted answers, PostgreSQL built from the
contract.

One burst mixes every record-level trigger of ``integration_tests/integration/test_hostile_inputs.py`` (times with a
300-character zone id or year 9999 with an offset, a 5,000-digit legacy id, JSON nested 100,000 deep, a legacy id of
2^63, a 5,000-character case-note id, NUL and lone surrogates in texts, a 10 kB NOMS number in the event, a lone
surrogate in the event itself), linkage events with non-ASCII digits in their NOMS numbers, linkage events for more
people than the sensor may backfill in one tick, hundreds of valid events of 250 kB each, and good events, including
authors with non-ASCII names, whose other spellings come in a later burst. From what really happened (Delius rows,
the queue and its DLQ with their attributes, the runs and the ``delius_contacts`` chunk reports in the instance, the
stand-ins' request log) it checks: every good event's contact exists after one delivery; every bad one is in the DLQ
with a readable reason and was received once, or landed with the characters no database stores replaced; every
message sent is accounted for exactly once; the backfills were capped per tick; the daemon is still running.
"""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import unquote, urlsplit

import dagster as dg
import pytest
from sqlalchemy import func, select

from integration.core.events import parse_sqs_body
from integration.core.messages import ATTEMPTS, FAILURE_REASON
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.local import event_factory as ev
from integration_tests.fixtures.sqs import serialised_sqs_backend
from integration_tests.harness.daemon import DaemonProcess, stack_env, wait_until
from integration_tests.integration.test_hostile_inputs import NOMS, TRIGGERS

pytestmark = [pytest.mark.postgres, pytest.mark.sqs, pytest.mark.daemon, pytest.mark.slow]

BIG_NOMS, BIG_EVENTS, BIG_BYTES = "A4000BG", 421, 250_000  # the burst of large valid events
PEOPLE = [f"B{7100 + n}LK" for n in range(8)]  # linked in the same burst
PER_TICK = 2  # CONSUMER_MAX_BACKFILLS_PER_TICK and CONSUMER_MAX_PENDING_BACKFILLS here: 8 people are 4 ticks at least
NON_ASCII_NOMS = ["A١٢٣٤BC", "A１２３４BC"]
INVALID_NOMS = "linkage event has an invalid NOMS number"
AUTHORS = ["Émile Zola", "İlkay Gündoğan"]
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]  # in the run queue


@pytest.fixture
def serialised_sqs():
    """One delivery per receive, as SQS makes it (moto's backend, unlocked, sometimes makes two under this load)."""
    with serialised_sqs_backend():
        yield


def big_event(standins) -> str:
    """A valid case-note event of ``BIG_BYTES`` bytes (SQS takes 256 KiB): the SNS message carries a long field
    that nothing reads."""
    note = standins.add_case_note(BIG_NOMS, type="KA", sub_type="KS", text="big")
    body = json.loads(ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    inner = json.loads(body["Message"])
    inner["padding"] = ""
    size = len(json.dumps({**body, "Message": json.dumps(inner)}))
    inner["padding"] = "p" * (BIG_BYTES - size)
    body["Message"] = json.dumps(inner)
    out = json.dumps(body)
    assert len(out.encode()) == BIG_BYTES
    return out


def key_of(body: str) -> str:
    """What identifies a message across the dead-lettering (the consumer dead-letters a batch event's canonical
    envelope, a poison message's own body): the event's detail path, else the body."""
    try:
        url = parse_sqs_body(body).detail_url
    except Exception:  # noqa: BLE001 - unreadable: the body itself
        url = None
    return unquote(urlsplit(url).path) if url else body


def test_hostile_inputs_among_good_events_through_the_daemon(project_root, serialised_sqs, sqs, standins, delius_pg):
    add_person(delius_pg, "X100001", NOMS)
    add_person(delius_pg, "X400001", BIG_NOMS)
    for n, noms in enumerate(PEOPLE):
        add_person(delius_pg, f"X71{n:04d}", noms)
        standins.add_case_note(noms, type="KA", sub_type="KS", text=f"history of {noms}")

    sent: dict[str, tuple[str, object]] = {}  # SQS message id -> (what should become of it, detail)
    bad_keys: dict[str, str] = {}  # SQS message id of a message for the DLQ -> its key_of
    good_paths: list[str] = []

    def send(body: str, expect: str, detail: object = None) -> str:
        message_id = sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)["MessageId"]
        sent[message_id] = (expect, detail)
        if expect == "dlq":
            bad_keys[message_id] = key_of(body)
        return message_id

    def send_good(body: str) -> None:
        send(body, "contact")
        good_paths.append(key_of(body))

    def good_note(**fields) -> None:
        note = standins.add_case_note(NOMS, type="KA", sub_type="KS", **fields)
        send_good(ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))

    def good_alert() -> None:
        alert = standins.add_alert(NOMS, code="HA", prison_code="LEI")
        send_good(ev.alert_event_for(alert, alerts_url=standins.alerts_url))

    env = stack_env(sqs, standins, delius_pg)
    env.pop("HOME")
    # documented settings: consumers exit soon after the work; the linkage caps low enough to be seen working
    env["CONSUMER_IDLE_SECONDS"] = "5"
    env["CONSUMER_MAX_BACKFILLS_PER_TICK"] = str(PER_TICK)
    env["CONSUMER_MAX_PENDING_BACKFILLS"] = str(PER_TICK)
    log = project_root / "daemon.log"

    # The first burst, on the queue before the daemon starts: good and hostile mixed, then the big events and the
    # linkage events.
    for name in AUTHORS:
        good_note(author_name=name)
    good_note(text="good 1")
    good_alert()
    triggers = {}
    for trigger in TRIGGERS:
        body = trigger.make(standins)
        expect = "dlq" if trigger.reason else "contact"
        triggers[send(body, expect, trigger.reason)] = trigger
    good_note(text="good 2")
    good_alert()
    for noms in NON_ASCII_NOMS:
        send(ev.linkage_event(noms, "X799999"), "dlq", INVALID_NOMS)
    for n, noms in enumerate(PEOPLE):
        send(ev.linkage_event(noms, f"X71{n:04d}"), "linkage", noms)
    for _ in range(BIG_EVENTS):
        send_good(big_event(standins))
    bad = {i: detail for i, (expect, detail) in sent.items() if expect == "dlq"}
    landing = [i for i, t in triggers.items() if t.reason is None]
    first_contacts = len(good_paths) + len(landing) + len(PEOPLE)

    def contacts() -> int:
        with delius_pg.connect() as conn:
            return conn.execute(select(func.count()).select_from(m.contact)).scalar_one()

    def dlq_total() -> int:
        return sqs.depth(sqs.dlq_url)

    waiting_seen: list[int] = []

    def first_burst_done() -> bool:
        with dg.DagsterInstance.from_config(str(project_root)) as instance:
            waiting_seen.append(instance.get_runs_count(dg.RunsFilter(job_name="noms_backfill_job", statuses=WAITING)))
        return contacts() == first_contacts and sqs.depth() == 0 and dlq_total() == len(bad)

    def runs_finished() -> bool:
        with dg.DagsterInstance.from_config(str(project_root)) as instance:
            runs = instance.get_runs()
            return bool(runs) and all(r.is_finished for r in runs)

    with DaemonProcess(project_root, env, log).start() as daemon:
        wait_until(
            first_burst_done,
            420,
            f"{first_contacts} contacts, an empty queue and {len(bad)} messages in the DLQ",
            interval=2,
            diagnostics=lambda: f"contacts={contacts()} depth={sqs.depth()} dlq={dlq_total()}\n{daemon.tail()}",
        )
        # A later burst: the same authors, spelt otherwise and again, in other batches.
        for name in AUTHORS:
            good_note(author_name=name.upper())
            good_note(author_name=name)
        wait_until(
            lambda: contacts() == first_contacts + 2 * len(AUTHORS) and sqs.depth() == 0,
            180,
            "the second burst's contacts",
            diagnostics=daemon.tail,
        )
        wait_until(runs_finished, 240, "every run to finish", diagnostics=daemon.tail)
        assert daemon.alive(), daemon.tail()  # it kept running through all of it

    # The DLQ: every bad message, once, with a readable reason naming the cause (never the hostile value), received
    # once before it was dead-lettered.
    drained = sqs.drain(sqs.dlq_url)
    dead = {key_of(message["Body"]): message for message in drained}
    assert len(drained) == len(dead) == len(bad) and set(dead) == set(bad_keys.values())
    for message_id, reason in bad.items():
        message = dead[bad_keys[message_id]]
        attributes = message["MessageAttributes"]
        assert attributes[FAILURE_REASON]["StringValue"] == reason
        assert attributes[ATTEMPTS]["StringValue"] == "1"
        if message_id in triggers:
            assert triggers[message_id].marker not in reason

    # The runs and their chunk reports: one outcome per message sent, on its first delivery.
    with dg.DagsterInstance.from_config(str(project_root)) as instance:
        runs = instance.get_runs()
        consumers = [r for r in runs if r.job_name == "prison_events_job"]
        backfills = [r for r in runs if r.job_name == "noms_backfill_job"]
        reports = [
            record.asset_materialization.metadata
            for record in instance.fetch_materializations(dg.AssetKey("delius_contacts"), limit=10_000).records
        ]
    assert consumers and {r.status for r in consumers} == {dg.DagsterRunStatus.SUCCESS}  # data failures: not red
    assert sum(int(r.tags.get("hmpps/dead-lettered", "0")) for r in consumers) == len(bad)
    assert not [r for r in consumers if "hmpps/failure" in r.tags]
    rows = [row.data for metadata in reports for row in metadata["outcomes"].value.records]
    assert Counter(row["sqs_message_id"] for row in rows) == Counter(sent.keys())  # every message once: nothing lost
    outcome = {row["sqs_message_id"]: row for row in rows}
    for message_id, (expect, detail) in sent.items():
        row = outcome[message_id]
        assert row["attempt"] == 1, row  # first delivery: none redelivered
        if expect == "contact":
            assert (row["action"], row["disposition"]) == ("created", "acked"), row
        elif expect == "dlq":
            assert (row["action"], row["disposition"], row["reason"]) == ("failed", "dead-lettered", detail), row
        else:
            assert (row["action"], row["disposition"], row["noms_number"]) == (
                "linkage",
                "handed to the sensor",
                detail,
            ), row
    assert sum(metadata["replaced_characters"].value for metadata in reports) == sum(t.replaced for t in TRIGGERS)

    # Every good event's record was fetched once; every one is a contact.
    fetched = Counter(
        entry["path"] for entry in standins.request_log() if entry["route"] in ("get_case_note", "get_alert")
    )
    assert {path: fetched[path] for path in good_paths} == {path: 1 for path in good_paths}
    with delius_pg.connect() as conn:
        per_person = dict(
            conn.execute(
                select(m.offender.c.noms_number, func.count())
                .select_from(m.contact.join(m.offender, m.contact.c.offender_id == m.offender.c.offender_id))
                .group_by(m.offender.c.noms_number)
            ).all()
        )
    assert per_person == {
        NOMS: len(good_paths) - BIG_EVENTS + len(landing),
        BIG_NOMS: BIG_EVENTS,
        **{noms: 1 for noms in PEOPLE},
    }

    # The linkage burst: every person backfilled once, by at most PER_TICK runs a tick, the run queue never flooded.
    assert sorted(r.tags["hmpps/people"] for r in backfills) == sorted(PEOPLE)
    assert {r.status for r in backfills} == {dg.DagsterRunStatus.SUCCESS}
    per_tick = Counter(r.tags.get("dagster/tick") for r in backfills)
    assert None not in per_tick and max(per_tick.values()) <= PER_TICK and len(per_tick) >= len(PEOPLE) // PER_TICK
    assert max(waiting_seen) <= PER_TICK

    # Authors with non-ASCII names: one staff row each, across batches and spellings.
    with delius_pg.connect() as conn:
        for name in AUTHORS:
            forename, surname = name.split()
            staff = conn.execute(
                select(m.staff.c.staff_id).where(m.staff.c.surname.in_([surname, surname.upper()]))
            ).all()
            assert len(staff) == 1, (name, staff)
            assert (
                conn.execute(
                    select(func.count()).select_from(m.contact).where(m.contact.c.staff_id == staff[0][0])
                ).scalar_one()
                == 3
            )
