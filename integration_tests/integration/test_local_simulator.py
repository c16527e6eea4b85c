"""The event simulator (against moto's SQS server) and the local stack launcher (as a subprocess)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

import boto3
import pytest
from sqlalchemy import select

from integration.core.events import CASE_NOTE_EVENT_TYPES, EventKind, PoisonMessage, parse_sqs_body
from integration.delius import models as m
from integration.local.simulator import DEFAULT_WEIGHTS, POISON_KINDS, Simulator
from integration.local.stack import group_alive
from integration.local.standins import SourceStore
from integration.local.world import World, generate_world

AS_OF = date(2026, 3, 16)
CASE_NOTES_URL = "http://127.0.0.1:9091"
ALERTS_URL = "http://127.0.0.1:9092"
REPO_ROOT = Path(__file__).resolve().parents[2]


class RecordingClient:
    """Stands in for boto3's SQS client: keeps the bodies, optionally checks each one as it is sent, and forwards
    to a real client when given one."""

    def __init__(self, inner=None, on_send=None) -> None:
        self.inner = inner
        self.on_send = on_send
        self.bodies: list[str] = []

    def send_message(self, *, QueueUrl: str, MessageBody: str, **kwargs):  # noqa: N803 - boto3's names
        if self.on_send is not None:
            self.on_send(MessageBody)
        self.bodies.append(MessageBody)
        if self.inner is not None:
            return self.inner.send_message(QueueUrl=QueueUrl, MessageBody=MessageBody, **kwargs)
        return {"MessageId": str(len(self.bodies))}

    def get_queue_attributes(self, **kwargs):
        return self.inner.get_queue_attributes(**kwargs)


@pytest.fixture
def world() -> World:
    return generate_world(seed=21, people=80, as_of=AS_OF)


@pytest.fixture
def loaded(world: World, delius_sqlite):
    world.load_delius(delius_sqlite)
    store = SourceStore()
    world.load_source(store)
    return world, store, delius_sqlite


def simulator(world, store, client, queue_url="q", engine=None, **kwargs) -> Simulator:
    return Simulator(
        world, store, client, queue_url, case_notes_url=CASE_NOTES_URL, alerts_url=ALERTS_URL, engine=engine, **kwargs
    )


# --- the mix, over moto's SQS server ------------------------------------------------------------------------------
def test_event_mix_over_sqs(loaded, sqs) -> None:
    world, store, engine = loaded

    def published_after_the_change(body: str) -> None:
        event = parse_sqs_body(body)
        if event.kind is EventKind.CASE_NOTE:
            note = store.get_case_note(event.additional_information["id"], event.noms_number)
            assert note is not None and event.detail_url.endswith(f"/{note['offenderIdentifier']}/{note['caseNoteId']}")
            if event.event_type == "person.case-note.updated":
                assert note.get("amendments")
        elif event.kind is EventKind.ALERT:
            alert = store.get_alert(event.additional_information["alertUuid"])
            assert alert is not None and alert["isActive"] == (event.event_type == "person.alert.created")

    client = RecordingClient(sqs.client, published_after_the_change)
    sim = simulator(world, store, client, sqs.queue_url, engine=engine, seed=1)
    results, received = [], []
    for _ in range(4):  # keep moto's queue shallow (docs/dagster-notes.md §8)
        results += [sim.step() for _ in range(60)]
        received += sqs.drain(sqs.queue_url)

    counters = sim.counters
    assert counters["steps"] == 240 and counters["errors"] == 0
    assert counters["messages"] == len(received) == len(client.bodies) == sum(r["messages"] for r in results)
    actions = Counter(r["action"] for r in results)
    assert actions == Counter(counters["actions"])
    assert set(actions) >= set(DEFAULT_WEIGHTS) - {"linkage", "case_note_moved", "prisoner_merged"}  # the rare ones
    assert "poison" not in actions
    assert 0.30 < actions["case_note_created"] / 240 < 0.60
    assert 0.05 < actions["not_of_interest"] / 240 < 0.16
    assert 0 < counters["notInDelius"] < 0.35 * 240

    events = [parse_sqs_body(m["Body"]) for m in received]  # every body parses
    types = Counter(e.event_type for e in events)
    assert types == Counter(counters["eventTypes"])
    assert types["person.alert.updated"] >= actions["alert_inactive"]
    assert types["person.alert.inactive"] >= actions["alert_inactive"]
    ignored = [e for e in events if e.ignore_reason() is not None]
    assert ignored and all(e.event_type in CASE_NOTE_EVENT_TYPES for e in ignored)
    # Duplicates are the very same body (same SNS MessageId) sent again.
    bodies = Counter(m["Body"] for m in received)
    assert sum(n - 1 for n in bodies.values()) == actions["duplicate"] > 0
    # Results carry ids and types, never text.
    texts = {n["text"] for n in store.case_notes() if n.get("text", "").strip()}
    assert not any(value in texts for r in results for value in r.values() if isinstance(value, str))


def test_alert_deactivation_sends_updated_and_inactive(loaded, sqs) -> None:
    world, store, engine = loaded
    sim = simulator(world, store, sqs.client, sqs.queue_url, seed=2, weights={"alert_inactive": 1})
    results = [sim.step() for _ in range(5)]
    assert all(r["action"] == "alert_inactive" and r["messages"] == 2 for r in results)
    events = [parse_sqs_body(m["Body"]) for m in sqs.drain(sqs.queue_url)]
    assert len(events) == 10
    for result in results:
        mine = [e for e in events if e.additional_information["alertUuid"] == result["alertUuid"]]
        assert sorted(e.event_type for e in mine) == ["person.alert.inactive", "person.alert.updated"]
        assert all(e.inner_event_type == e.event_type for e in mine)
        stored = store.get_alert(result["alertUuid"])
        assert stored["isActive"] is False and stored["activeTo"] and stored["madeInactiveAt"]
        assert stored["lastModifiedAt"] >= stored["createdAt"]


def test_linkage_sets_the_noms_number_before_publishing(loaded, sqs) -> None:
    world, store, engine = loaded
    unlinked = {p.crn: p.noms_number for p in world.unlinked_people}
    assert unlinked
    seen = []

    def noms_already_in_delius(body: str) -> None:
        event = parse_sqs_body(body)
        if event.event_type != "probation-case.prison-identifier.added":
            return
        with engine.connect() as conn:
            stored = conn.execute(select(m.offender.c.noms_number).where(m.offender.c.crn == event.crn)).scalar_one()
        assert stored == event.noms_number == unlinked[event.crn]
        seen.append(event.crn)

    sim = simulator(
        world,
        store,
        RecordingClient(sqs.client, noms_already_in_delius),
        sqs.queue_url,
        engine=engine,
        seed=3,
        weights={"linkage": 1},
    )
    results = [sim.step() for _ in range(len(unlinked))]
    assert [r["action"] for r in results] == ["linkage"] * len(unlinked)
    assert sorted(seen) == sorted(unlinked) and not world.unlinked_people
    assert len(sqs.drain(sqs.queue_url)) == len(unlinked)
    # Nobody left to link: the simulator does something else instead.
    assert sim.step()["action"] == "case_note_created"


def test_a_moved_note_is_served_under_its_new_holder_and_its_event_is_the_publishers(loaded) -> None:
    world, store, _ = loaded
    client = RecordingClient()
    sim = simulator(world, store, client, seed=7, weights={"case_note_moved": 1})
    for _ in range(5):
        result = sim.step()
        assert result["action"] == "case_note_moved"
        event = parse_sqs_body(client.bodies[-1])
        assert event.event_type == "person.case-note.moved" and event.kind is EventKind.CASE_NOTE
        assert event.noms_number == result["noms"] != result["previousNoms"] == event.previous_noms_number
        assert event.detail_url == f"{CASE_NOTES_URL}/case-notes/{result['noms']}/{result['caseNoteId']}"
        assert (event.attributes["type"], event.attributes["subType"]) == (result["type"], result["subType"])
        info = event.additional_information
        assert isinstance(info["legacyId"], int) and info["source"] == "NOMIS"
        assert set(info) == {
            "id",
            "legacyId",
            "type",
            "subType",
            "source",
            "syncToNomis",
            "systemGenerated",
            "previousNomsNumber",
        }
        assert store.get_case_note(result["caseNoteId"], result["noms"]) is not None
        assert store.get_case_note(result["caseNoteId"], result["previousNoms"]) is None


def test_a_prisoner_merge_replaces_the_noms_number_moves_the_notes_and_resyncs_the_alerts(loaded) -> None:
    world, store, engine = loaded
    client = RecordingClient()
    sim = simulator(world, store, client, engine=engine, seed=8, weights={"prisoner_merged": 1})
    result = sim.step()
    assert result["action"] == "prisoner_merged" and result["caseNotesMoved"] > 0
    new, old, crn = result["noms"], result["previousNoms"], result["crn"]
    events = [parse_sqs_body(body) for body in client.bodies]
    assert [e.event_type for e in events] == (
        ["person.case-note.moved"] * result["caseNotesMoved"] + ["probation-case.prison-identifier.updated"]
    )
    assert all(e.noms_number == new and e.previous_noms_number == old for e in events)
    updated = events[-1]
    assert updated.kind is EventKind.LINKAGE and updated.crn == crn and updated.detail_url is None
    assert updated.attributes == {"eventType": "probation-case.prison-identifier.updated"}
    with engine.connect() as conn:
        assert conn.execute(select(m.offender.c.noms_number).where(m.offender.c.crn == crn)).scalar_one() == new
    assert store.case_notes(old) == [] and len(store.case_notes(new)) >= result["caseNotesMoved"]
    assert store.alerts(old) == []
    assert all(a.get("prisonCodeWhenCreated") is None for a in store.alerts(new))
    assert len(store.alerts(new)) == result["alertsResynced"]
    assert world.person(new).matchable and not world.person(old).in_delius


def test_linkage_needs_the_delius_engine(loaded) -> None:
    world, store, _ = loaded
    sim = simulator(world, store, RecordingClient(), seed=3, weights={"linkage": 1})
    assert sim.step()["action"] == "case_note_created"
    assert world.unlinked_people


def test_updates_add_an_amendment(loaded) -> None:
    world, store, _ = loaded
    client = RecordingClient()
    sim = simulator(world, store, client, seed=4, weights={"case_note_updated": 1})
    before = {n["caseNoteId"]: len(n.get("amendments", [])) for n in store.case_notes()}
    for _ in range(10):
        result = sim.step()
        note = store.get_case_note(result["caseNoteId"])
        assert result["action"] == "case_note_updated"
        assert len(note["amendments"]) == result["amendments"] > before[note["caseNoteId"]] - 1
        stamps = [note["creationDateTime"]] + [a["creationDateTime"] for a in note["amendments"]]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert {parse_sqs_body(b).event_type for b in client.bodies} == {"person.case-note.updated"}


def test_poison_messages(world) -> None:
    client = RecordingClient()
    sim = simulator(world, SourceStore(), client, seed=5, poison_rate=1.0)
    results = [sim.step() for _ in range(30)]
    assert {r["kind"] for r in results} == set(POISON_KINDS)
    for body in client.bodies:
        with pytest.raises(PoisonMessage):
            parse_sqs_body(body)
    quiet = simulator(world, SourceStore(), RecordingClient(), seed=5)
    assert all(quiet.step()["action"] != "poison" for _ in range(100))


def test_same_seed_same_events() -> None:
    def run(seed):
        w = generate_world(seed=21, people=80, as_of=AS_OF)
        store = SourceStore()
        w.load_source(store)
        client = RecordingClient()
        sim = simulator(w, store, client, seed=seed, poison_rate=0.05)
        results = [sim.step() for _ in range(150)]
        message_ids = [
            json.loads(b)["MessageId"] if b.startswith("{") and "MessageId" in b else b for b in client.bodies
        ]
        return results, message_ids, store.case_notes()

    first, again, other = run(9), run(9), run(10)
    assert first[0] == again[0] and first[1] == again[1]
    assert [n["caseNoteId"] for n in first[2]] == [n["caseNoteId"] for n in again[2]]
    assert first[0] != other[0]


def test_run_honours_the_rate(world) -> None:
    sim = simulator(world, SourceStore(), RecordingClient(), seed=6, rate=25)
    stop = threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,))
    started = time.monotonic()
    thread.start()
    time.sleep(1.0)
    stop.set()
    thread.join(2)
    assert not thread.is_alive() and time.monotonic() - started < 2
    assert 15 <= sim.counters["steps"] <= 35


def test_run_pauses_while_the_queue_is_deep(world, sqs) -> None:
    for i in range(5):
        sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=f"filler {i}")
    sim = simulator(world, SourceStore(), sqs.client, sqs.queue_url, seed=7, rate=50, max_queue_depth=5)
    stop = threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,))
    thread.start()
    time.sleep(0.5)
    stop.set()
    thread.join(5)
    assert sim.counters["steps"] == 0 and sim.counters["pausedForDepth"] >= 1


# --- python -m integration.local ----------------------------------------------------------------------------------
def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.mark.sqs
def test_local_stack_runs_and_stops_on_sigint(tmp_path) -> None:
    command = [
        sys.executable,
        "-m",
        "integration.local",
        "--no-dagster",
        "--state-dir",
        str(tmp_path),
        "--sqs-port",
        "0",
        "--auth-port",
        "0",
        "--case-notes-port",
        "0",
        "--alerts-port",
        "0",
        "--people",
        "60",
        "--rate",
        "20",
        "--poison-rate",
        "0",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "\n".join(output)
            output.append(line)
            if " ready: " in line:
                break
        stack_env = dict(line.split("=", 1) for line in output if "=" in line and line.split("=", 1)[0].isupper())
        assert set(stack_env) >= {
            "DELIUS_DATABASE_URL",
            "EVENTS_QUEUE_URL",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "HMPPS_AUTH_URL",
            "CLIENT_ID",
            "CLIENT_SECRET",
            "CASE_NOTES_API_URL",
            "ALERTS_API_URL",
            "DAGSTER_HOME",
        }
        assert (tmp_path / "delius.db").is_file()
        env_file = (tmp_path / "stack.env").read_text()
        assert f"EVENTS_QUEUE_URL={stack_env['EVENTS_QUEUE_URL']}" in env_file

        client = boto3.client(
            "sqs",
            endpoint_url=stack_env["AWS_ENDPOINT_URL"],
            region_name=stack_env["AWS_REGION"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        attributes = client.get_queue_attributes(
            QueueUrl=stack_env["EVENTS_QUEUE_URL"], AttributeNames=["RedrivePolicy", "VisibilityTimeout"]
        )["Attributes"]
        assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] in (3, "3")
        assert attributes["VisibilityTimeout"] == "30"
        received = []
        deadline = time.monotonic() + 10
        while len(received) < 5 and time.monotonic() < deadline:
            received += client.receive_message(
                QueueUrl=stack_env["EVENTS_QUEUE_URL"], MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
        assert len(received) >= 5
        for message in received:
            parse_sqs_body(message["Body"])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("the local stack did not stop within 15 s of SIGINT")
    assert code == 0
    deadline = time.monotonic() + 5
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(proc.pid)


def test_local_stack_reuses_its_state(tmp_path) -> None:
    from integration.local.stack import LocalStack, StackError, StackOptions

    def options(**kwargs) -> StackOptions:
        return StackOptions(
            state_dir=tmp_path,
            sqs_port=0,
            auth_port=0,
            case_notes_port=0,
            alerts_port=0,
            dagster=False,
            rate=0,
            **kwargs,
        )

    with LocalStack(options(people=40, seed=5)) as first:
        assert first.loaded["offenders"] == 28 and first.session == 1
        env = first.env()
        assert env["DELIUS_DATABASE_URL"] == f"sqlite:///{tmp_path / 'delius.db'}"
        assert env["EVENTS_QUEUE_URL"].endswith("/prison-case-notes-to-probation-queue")
        assert env["AWS_REGION"] == "eu-west-2" and env["DAGSTER_HOME"] == str(first.options.root)
        assert first.standins.store.counts()["caseNotes"] == len(first.world.case_notes)
        assert first.simulator is None  # rate 0
    with LocalStack(options()) as again:  # seed and size come from world.json
        assert again.loaded == {} and again.session == 2 and len(again.world.people) == 40
    with pytest.raises(StackError, match="--fresh"):
        LocalStack(options(seed=6)).start()
    with LocalStack(options(seed=6, people=40, fresh=True)) as fresh:
        assert fresh.loaded["offenders"] == 28 and fresh.session == 1 and fresh.seed == 6
