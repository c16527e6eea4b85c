"""Fault injection through the real daemon path: the Delius state afterwards equals the state computed from the source.

A seeded stream of several hundred events (case notes and alerts of a few dozen people, amendments, alert updates,
alerts going inactive, duplicated and reordered events, poison messages, people not in Delius) goes through
``dagster-daemon run -w workspace.yaml`` against moto's SQS server (its own process), the stand-ins and PostgreSQL,
while it suffers, in this order:

1. 20% upstream 503s on the case-note and alert detail routes (seeded), throughout wave 1;
2. an HMPPS Auth outage (token route answers 503, the tokens held invalidated) for ~12 s;
3. the Delius database unavailable for ~10 s (DELIUS_DATABASE_URL points at a TCP proxy that drops every connection
   and refuses new ones);
4. a run worker killed with SIGKILL in the middle of its batch (found under the daemon in /proc);
5. 20% upstream timeouts (a 12 s delay, past the client's 10 s read timeout; seeded) for ~25 s while wave 2
   (updates, amendments, alerts made inactive, duplicates, old events arriving after new ones) arrives, then 503s
   again;
6. a daemon restart (SIGTERM to its process group, a new daemon on the same DAGSTER_HOME) with runs in progress;

then faults off, the queue drained, the operator's redrive of the dead-letter queue (``redrive_dlq_job``), and the
system left to go quiet. The expected Delius state is computed here from the stand-ins' final records with the
documented rules (docs/rules.md §3, §5) -- not with the project's code: per case note of interest, not filtered,
of a person in Delius, and per alert (not DOCGM) of a person in Delius, exactly one contact with the item's URN whose
notes are the latest version's (amendments included). Checked: nothing lost, nothing duplicated, no stale overwrite,
nothing unexpected, and exactly the poison messages in the DLQ, each with its ``hmpps-failure-reason``. The active
contact of an alert made inactive mid-stream may or may not exist (it depends on whether its "created" event was
processed before the change; the Alerts API serves only the current state): allowed, counted, never required.

It takes 2-4 minutes (2¼ on a quiet 2-core machine), so it runs only when asked for: ``make fault-injection`` (CI runs
it after ``make test``), i.e. ``pytest -m faults -s``; the default selection in pyproject.toml leaves it out.
Tunables (environment): FAULT_SEED (default 5), FAULT_REPORT (a path to write the JSON report to).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import select

from integration.defs.dlq.jobs import redrive_dlq_job
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.local import event_factory as ev
from integration.local.standins import deactivate_alert, make_alert, make_amendment, make_case_note
from integration.resources import EventsQueueResource
from integration_tests.harness.daemon import (
    DaemonProcess,
    SqsServer,
    TcpProxy,
    load_average,
    prepare_instance,
    process_age,
    project_env,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.sqs, pytest.mark.daemon, pytest.mark.slow]

SEED = int(os.environ.get("FAULT_SEED", "5"))
CASE_NOTE_URN = "urn:uk:gov:hmpps:prison-case-note:"
ALERT_URN = "urn:uk:gov:hmpps:prisoner-alert:"
# Case-note types this suite generates, and which of them the service takes (docs/rules.md §3.1).
OF_INTEREST = [
    ("KA", "KS"),
    ("GEN", "OSE"),
    ("OMIC", "OPEN"),
    ("PRISON", "RELEASE"),
    ("RESET", "GUIDINT"),
    ("TRANSFER", "FROMTOL"),
]
NOT_OF_INTEREST = [("NEG", "IEP_WARN"), ("GEN", "HIS")]
PRISONS = ["LEI", "MDI", "WWI"]
AUTHORS = ["Ann Officer", "Smith, Bob", "Carla Keyworker", "Dev Omic"]
OCG_TEXT = "Do not share with offender and OCG Nominal"
CONSUMER_ENV = {
    "CONSUMER_VISIBILITY_TIMEOUT": "45",
    "CONSUMER_RETRY_DELAYS": "2,4",
    "CONSUMER_MAX_ATTEMPTS": "3",
    "CONSUMER_MAX_BATCH": "60",  # small batches: a worker is killed in the middle of one
    "CONSUMER_RECEIVERS": "2",
    "CONSUMER_FETCH_WORKERS": "16",
    "CONSUMER_LIFETIME_SECONDS": "60",  # consumer runs end and hand over to their successors under the faults
    "CONSUMER_IDLE_SECONDS": "10",  # and exit soon once the queue is quiet
}


# --------------------------------------------------------------------------------------------- the world


@dataclass
class Item:
    """One source record and every version of the contact notes it has had (oldest first)."""

    kind: str  # "case_note" or "alert"
    record: dict  # the current stand-in record
    in_delius: bool
    versions: list[str] = field(default_factory=list)
    transitional_active: str | None = None  # notes of the active version of an alert made inactive mid-stream

    @property
    def source_id(self) -> str:
        return self.record["caseNoteId"] if self.kind == "case_note" else self.record["alertUuid"]


@dataclass
class World:
    people_in_delius: list[str]
    people_not_in_delius: list[str]
    items: dict[str, Item]  # by source id
    wave1: list[str]  # SQS bodies, in sending order
    wave2: list[str]
    initial: dict[str, dict]  # the store before wave 1, by source id
    wave2_updates: list[dict]  # records put into the store when wave 2 starts
    poison: dict[str, str]  # identity (SNS MessageId or raw body) -> expected reason fragment
    rng: random.Random


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _stamp(value: datetime) -> str:
    return value.strftime("%d/%m/%Y %H:%M:%S")


def expected_case_note_notes(note: dict) -> str:
    """docs/rules.md §5.2/§5.4, written out independently: "{type} {subType}", newline, text, then per
    amendment "\\n[{author} updated the case notes on dd/MM/yyyy HH:mm:ss]\\n{text}"."""
    text = note.get("text", "")
    for amendment in note.get("amendments", []):
        when = datetime.fromisoformat(amendment["creationDateTime"])
        text += (
            f"\n[{amendment['authorName']} updated the case notes on {_stamp(when)}]\n{amendment['additionalNoteText']}"
        )
    return f"{note['type']} {note['subType']}\n{text}"


def expected_alert_notes(alert: dict) -> str:
    """§5.3/§5.4: "ALERT ACTIVE|INACTIVE", the description line, newline, the alert's description."""
    state = "active" if alert["isActive"] else "inactive"
    code = alert["alertCode"]
    return (
        f"ALERT {state.upper()}\nAlert {code['alertTypeDescription']} and {code['description']} made {state}.\n"
        f"{alert.get('description') or ''}"
    )


def expected_urn(item: Item) -> str:
    if item.kind == "case_note":
        return CASE_NOTE_URN + item.source_id
    return f"{ALERT_URN}{'active' if item.record['isActive'] else 'inactive'}:{item.source_id}"


def case_note_is_expected(note: dict) -> bool:
    """Of interest (§3.1) and not filtered (§3.2: blank text, in transit, test institution, OCG text)."""
    return (
        (note["type"], note["subType"]) in OF_INTEREST
        and bool(note.get("text", "").strip())
        and note.get("locationId") != "TRN"
        and not note.get("locationId", "").startswith("ZZG")
        and OCG_TEXT not in note.get("text", "")
    )


def build_world(
    seed: int,
    case_notes_url: str,
    alerts_url: str,
    *,
    people: int = 36,
    not_in_delius: int = 6,
    notes_per_person: int = 8,
    alerts_per_person: int = 2,
) -> World:
    rng = random.Random(seed)
    everyone = [f"F{n:04d}{chr(65 + n % 26)}{chr(65 + (n // 26) % 26)}" for n in range(people)]
    in_delius, outside = everyone[: people - not_in_delius], everyone[people - not_in_delius :]
    base = datetime.now().replace(microsecond=0) - timedelta(days=5)
    items: dict[str, Item] = {}
    wave1: list[tuple[float, str]] = []  # (sort key, body): shuffled into a reordered stream
    wave2: list[tuple[float, str]] = []
    wave2_updates: list[dict] = []
    initial: dict[str, dict] = {}
    poison: dict[str, str] = {}
    clock = iter(range(1, 1_000_000))

    def mid() -> str:
        return _uuid(rng)

    def note_event(note: dict, event_type: str = "person.case-note.created") -> str:
        return ev.case_note_event(
            note["offenderIdentifier"],
            note["caseNoteId"],
            note["type"],
            note["subType"],
            case_notes_url=case_notes_url,
            event_type=event_type,
            legacy_id=note.get("legacyId"),
            message_id=mid(),
        )

    def alert_event(alert: dict, event_type: str) -> str:
        return ev.alert_event(
            alert["prisonNumber"],
            alert["alertUuid"],
            alert["alertCode"]["code"],
            alerts_url=alerts_url,
            event_type=event_type,
            message_id=mid(),
        )

    def send(wave: list, body: str, *, duplicate_chance: float = 0.1, early: bool = False) -> None:
        wave.append((-1.0 if early else rng.random(), body))
        if rng.random() < duplicate_chance:  # at-least-once delivery: the very same message twice
            wave.append((rng.random(), body))

    for person in everyone:
        person_in_delius = person in in_delius
        for _ in range(notes_per_person):
            minute = next(clock)
            created = base + timedelta(minutes=minute)
            roll = rng.random()
            note_type, sub_type = rng.choice(OF_INTEREST)
            text, location = f"Fault-injection note {minute} for {person}.", rng.choice(PRISONS)
            if roll < 0.06:
                note_type, sub_type = rng.choice(NOT_OF_INTEREST)
            elif roll < 0.08:
                text = "   "
            elif roll < 0.10:
                location = "TRN"
            elif roll < 0.12:
                location = "ZZGHI"
            elif roll < 0.13:
                text = f"Note {minute}. {OCG_TEXT}."
            note = make_case_note(
                person,
                type=note_type,
                sub_type=sub_type,
                text=text,
                case_note_id=_uuid(rng),
                legacy_id=50_000_000 + minute,
                created_at=created,
                occurred_at=created,
                author_name=rng.choice(AUTHORS),
                location_id=location,
            )
            item = Item("case_note", note, person_in_delius, [expected_case_note_notes(note)])
            items[item.source_id] = item
            amend_before = rng.random() < 0.08  # amended before its events are sent: updated may come first
            if amend_before:
                note = dict(
                    note,
                    amendments=[
                        make_amendment(
                            f"Early amendment to {minute}.",
                            created_at=created + timedelta(hours=3),
                            author_name=rng.choice(AUTHORS),
                        )
                    ],
                )
                item.record = note
                item.versions.append(expected_case_note_notes(note))
                send(wave1, note_event(note, "person.case-note.updated"), early=rng.random() < 0.5)
            send(wave1, note_event(note))
            initial[item.source_id] = note
            if rng.random() < 0.3:  # amended during wave 2, once or twice
                amendments = list(note.get("amendments", []))
                for k in range(1 if rng.random() < 0.7 else 2):
                    amendments.append(
                        make_amendment(
                            f"Amendment {k + 1} to {minute}.",
                            created_at=created + timedelta(days=1, hours=k),
                            author_name=rng.choice(AUTHORS),
                        )
                    )
                    note = dict(note, amendments=list(amendments))
                    item.versions.append(expected_case_note_notes(note))
                    send(wave2, note_event(note, "person.case-note.updated"))
                item.record = note
                wave2_updates.append(note)
                if rng.random() < 0.3:  # an old "created" event arriving after the amendment
                    wave2.append((2.0, note_event(note)))
        for _ in range(alerts_per_person):
            minute = next(clock)
            created = base + timedelta(minutes=minute)
            code = "DOCGM" if rng.random() < 0.05 else rng.choice(["VI", "PEEP", "HA", "XA", "OVI"])
            alert = make_alert(
                person,
                code=code,
                description=f"Fault-injection alert {minute}.",
                alert_uuid=_uuid(rng),
                active_from=created.date(),
                created_at=created,
                created_by_display_name=rng.choice(AUTHORS),
                prison_code=rng.choice(PRISONS[:2]),
            )
            item = Item("alert", alert, person_in_delius and code != "DOCGM", [expected_alert_notes(alert)])
            items[item.source_id] = item
            roll = rng.random()
            if roll < 0.06:  # inactive before anything is sent: only the inactive contact
                alert = deactivate_alert(alert, when=created + timedelta(hours=5), by_display_name="Ann Officer")
                item.record, item.versions = alert, [expected_alert_notes(alert)]
                send(wave1, alert_event(alert, "person.alert.inactive"))
                send(wave1, alert_event(alert, "person.alert.created"))
                initial[item.source_id] = alert
            elif roll < 0.26:  # updated (still active) during wave 2
                send(wave1, alert_event(alert, "person.alert.created"))
                initial[item.source_id] = alert
                stamp = (created + timedelta(days=1)).isoformat()
                alert = dict(
                    alert,
                    description=f"Updated alert {minute}.",
                    lastModifiedAt=stamp,
                    lastModifiedBy="BOFFICER",
                    lastModifiedByDisplayName="Bob Officer",
                )
                item.record = alert
                item.versions.append(expected_alert_notes(alert))
                wave2_updates.append(alert)
                send(wave2, alert_event(alert, "person.alert.updated"))
            elif roll < 0.46:  # made inactive during wave 2
                send(wave1, alert_event(alert, "person.alert.created"))
                initial[item.source_id] = alert
                item.transitional_active = item.versions[0]
                alert = deactivate_alert(alert, when=created + timedelta(days=2), by_display_name="Carla Keyworker")
                item.record = alert
                item.versions = [expected_alert_notes(alert)]
                wave2_updates.append(alert)
                send(wave2, alert_event(alert, "person.alert.inactive"))
            else:
                send(wave1, alert_event(alert, "person.alert.created"))
                initial[item.source_id] = alert

    # Poison: unreadable bodies (the sensor dead-letters them), events the pipeline can never process.
    for body, reason in [
        ("{not json", "not valid JSON"),
        ("[1, 2, 3]", "not a JSON object"),
        (json.dumps({"Type": "Notification", "Message": "not json either"}), "Message is not valid JSON"),
    ]:
        poison[body] = reason
        wave1.append((rng.random(), body))
    linkage_id = mid()
    poison[linkage_id] = "invalid NOMS number"
    wave1.append((rng.random(), ev.linkage_event("NOT-A-NOMS", "X999999", message_id=linkage_id)))
    no_url = json.loads(note_event(make_case_note(in_delius[0], type="KA", sub_type="KS", case_note_id=_uuid(rng))))
    inner = json.loads(no_url["Message"])
    inner.pop("detailUrl")
    no_url["Message"] = json.dumps(inner)
    poison[no_url["MessageId"]] = "no detailUrl"
    wave1.append((rng.random(), json.dumps(no_url)))
    foreign = _uuid(rng)
    foreign_id = mid()
    poison[foreign_id] = "allow-list"
    wave1.append(
        (
            rng.random(),
            ev.case_note_event(
                in_delius[1], foreign, "KA", "KS", case_notes_url="http://evil.example:8080", message_id=foreign_id
            ),
        )
    )
    broken = make_case_note(
        in_delius[2],
        type="KA",
        sub_type="KS",
        case_note_id=_uuid(rng),
        creationDateTime="not a date",
        occurrenceDateTime="not a date",
    )
    items[broken["caseNoteId"]] = Item("case_note", broken, False)  # in the store, never a contact
    initial[broken["caseNoteId"]] = broken
    broken_body = note_event(broken)
    poison[json.loads(broken_body)["MessageId"]] = "creationDateTime"
    wave1.append((rng.random(), broken_body))

    return World(
        in_delius,
        outside,
        items,
        [b for _, b in sorted(wave1, key=lambda x: x[0])],
        [b for _, b in sorted(wave2, key=lambda x: x[0])],
        initial,
        wave2_updates,
        poison,
        rng,
    )


def identity(body: str) -> str:
    """How a message is recognised in the DLQ: its SNS MessageId (kept when the pipeline re-sends an event), else
    the raw body (unreadable messages are dead-lettered as they came)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and isinstance(data.get("MessageId"), str):
        return data["MessageId"]
    return body


# --------------------------------------------------------------------------------------------- the run


class Stack:
    """What the test drives: moto, stand-ins, the DB proxy, the daemon; and the observations it needs."""

    def __init__(self, sqs: SqsServer, pair, standins, engine, proxy: TcpProxy, daemon: DaemonProcess, home: Path):
        self.sqs, self.pair, self.standins, self.engine = sqs, pair, standins, engine
        self.proxy, self.daemon, self.home = proxy, daemon, home
        self.client = sqs.client()
        self.sent = 0
        self.zombies: set[str] = set()
        self.timeline: list[tuple[float, str]] = []
        self.t0 = time.monotonic()

    def note(self, what: str) -> None:
        self.timeline.append((round(time.monotonic() - self.t0, 1), what))
        print(f"[fault-injection +{time.monotonic() - self.t0:6.1f}s] {what} (load {load_average()})", flush=True)

    def send(self, bodies: list[str], *, max_depth: int = 250) -> None:
        """Send in batches of 10, never letting the queue grow past ``max_depth`` (moto slows down with depth)."""
        for i in range(0, len(bodies), 10):
            wait_until(
                lambda: self.depth() < max_depth, 300, "room on the queue", interval=0.5, diagnostics=self.diagnostics
            )
            chunk = bodies[i : i + 10]
            self.client.send_message_batch(
                QueueUrl=self.pair.queue_url,
                Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(chunk)],
            )
            self.sent += len(chunk)

    def depth(self, url: str | None = None) -> int:
        attrs = self.client.get_queue_attributes(
            QueueUrl=url or self.pair.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def contacts(self) -> int:
        with self.engine.connect() as conn:
            return len(
                conn.execute(
                    select(m.contact.c.contact_id).where(m.contact.c.external_reference.like("urn:uk:gov:hmpps:%"))
                ).all()
            )

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def active_runs(self) -> list[dg.DagsterRun]:
        """Runs not finished yet, except "zombies": STARTED runs whose worker process is gone without recording the
        run's end (the local DefaultRunLauncher cannot health-check run workers; deploy/README.md). They are counted
        in ``self.zombies`` and reported: the data checks do not depend on them."""
        active = []
        with self.instance() as instance:
            for run in instance.get_runs(
                dg.RunsFilter(
                    statuses=[
                        dg.DagsterRunStatus.QUEUED,
                        dg.DagsterRunStatus.NOT_STARTED,
                        dg.DagsterRunStatus.STARTING,
                        dg.DagsterRunStatus.STARTED,
                        dg.DagsterRunStatus.CANCELING,
                    ]
                )
            ):
                if run.status is dg.DagsterRunStatus.STARTED:
                    pids = [
                        e.dagster_event.pid
                        for e in instance.all_logs(run.run_id)
                        if e.dagster_event is not None and e.dagster_event.pid
                    ]
                    if pids and not Path(f"/proc/{pids[-1]}").exists():
                        self.zombies.add(run.run_id)
                        continue
                active.append(run)
        return active

    def diagnostics(self) -> str:
        try:
            runs = self.active_runs()
        except Exception as exc:  # noqa: BLE001
            runs = [f"(instance unreadable: {exc})"]
        return (
            f"queue depth {self.depth()}, DLQ {self.depth(self.pair.dlq_url)}, contacts {self.contacts()}, "
            f"active runs {[(getattr(r, 'run_id', r)[:8], getattr(r, 'status', '')) for r in runs]}\n"
            f"--- daemon log tail ---\n{self.daemon.tail()}"
        )


def kill_a_worker_mid_batch(stack: Stack, bodies: list[str]) -> dict:
    """Slow the detail routes down so batches take a while, send ``bodies``, then SIGKILL a run worker that is in
    the middle of its batch (its step started and has not finished)."""
    stack.standins.set_fault("get_case_note", latency_ms=700)
    stack.standins.set_fault("get_alert", latency_ms=700)
    stack.send(bodies)

    def busy_worker():
        with stack.instance() as instance:
            for run in instance.get_runs(
                dg.RunsFilter(job_name="prison_events_job", statuses=[dg.DagsterRunStatus.STARTED])
            ):
                logs = instance.all_logs(run.run_id)
                step_started = [e for e in logs if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"]
                finished = [
                    e
                    for e in logs
                    if e.dagster_event and e.dagster_event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")
                ]
                if not step_started or finished:
                    continue
                pid = step_started[-1].dagster_event.pid
                if pid and pid in stack.daemon.workers() and (process_age(pid) or 0) > 1:
                    return run.run_id, pid
        return None

    def fetching() -> int:
        return sum(1 for r in stack.standins.request_log() if r["status"] is None)

    try:
        run_id, pid = wait_until(
            lambda: fetching() and busy_worker(),
            150,
            "a run worker in the middle of its batch",
            interval=0.3,
            diagnostics=stack.diagnostics,
        )
        in_flight = fetching()
        os.kill(pid, signal.SIGKILL)
        stack.note(f"SIGKILLed run worker {pid} of run {run_id[:8]} mid-batch ({in_flight} requests in flight)")
    finally:
        stack.standins.clear_faults()
    return {"run_id": run_id, "pid": pid, "requests_in_flight": in_flight}


def restart_daemon(stack: Stack) -> None:
    stack.note("SIGTERM to the daemon's process group")
    stack.daemon.stop(timeout=60)
    stack.note("daemon stopped; starting a new one on the same DAGSTER_HOME")
    stack.daemon.start()


def quiet(stack: Stack, what: str, timeout: float) -> None:
    """The queue is empty (nothing visible, in flight or delayed) and no run is active, twice in a row."""
    streak = {"n": 0}

    def settled() -> bool:
        ok = stack.depth() == 0 and not stack.active_runs()
        streak["n"] = streak["n"] + 1 if ok else 0
        return streak["n"] >= 3

    wait_until(settled, timeout, what, interval=1.0, diagnostics=stack.diagnostics)


# --------------------------------------------------------------------------------------------- verification


def verify(world: World, stack: Stack, store_records: dict[str, dict]) -> dict:
    with stack.engine.connect() as conn:
        rows = conn.execute(
            select(m.contact.c.external_reference, m.contact.c.notes, m.offender.c.noms_number)
            .join(m.offender, m.offender.c.offender_id == m.contact.c.offender_id)
            .where(m.contact.c.external_reference.like("urn:uk:gov:hmpps:%"))
        ).all()
    found: dict[str, list[tuple[str, str]]] = {}
    for urn, notes, noms in rows:
        found.setdefault(urn, []).append((notes or "", noms))

    expected: dict[str, tuple[Item, str]] = {}
    optional: dict[str, tuple[Item, str]] = {}
    for item in world.items.values():
        record = store_records[item.source_id]  # the stand-in's final record, read back over HTTP
        if not item.in_delius or (item.kind == "case_note" and not case_note_is_expected(record)):
            continue
        latest = expected_case_note_notes(record) if item.kind == "case_note" else expected_alert_notes(record)
        assert latest == item.versions[-1], f"the world's version history is out of step for {item.source_id}"
        expected[expected_urn(Item(item.kind, record, True))] = (item, latest)
        if item.transitional_active is not None:
            optional[f"{ALERT_URN}active:{item.source_id}"] = (item, item.transitional_active)

    lost, stale, wrong, wrong_person, duplicated = [], [], [], [], []
    for urn, (item, latest) in expected.items():
        contacts = found.get(urn, [])
        if not contacts:
            lost.append(urn)
            continue
        if len(contacts) > 1:
            duplicated.append(urn)
        notes, noms = contacts[0]
        person = item.record.get("offenderIdentifier") or item.record.get("prisonNumber")
        if noms != person:
            wrong_person.append(urn)
        stored = notes.rstrip(" ")  # notes are right-padded, never shortened (§5.4)
        if stored != latest:
            (stale if stored in item.versions[:-1] else wrong).append(urn)
    optional_found = 0
    for urn, (_item, active_notes) in optional.items():
        contacts = found.get(urn, [])
        if contacts:
            optional_found += 1
            if len(contacts) > 1:
                duplicated.append(urn)
            if contacts[0][0].rstrip(" ") != active_notes:
                wrong.append(urn)
    unexpected = sorted(set(found) - set(expected) - set(optional))

    dlq = []
    while True:
        batch = stack.client.receive_message(
            QueueUrl=stack.pair.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=300, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            break
        dlq += batch
    dlq_by_identity: dict[str, list[str]] = {}
    for message in dlq:
        reason = message.get("MessageAttributes", {}).get("hmpps-failure-reason", {}).get("StringValue", "")
        dlq_by_identity.setdefault(identity(message["Body"]), []).append(reason)
    poison_ok = {
        key: any(fragment in reason for reason in dlq_by_identity.get(key, []))
        for key, fragment in world.poison.items()
    }
    return {
        "contacts_expected": len(expected),
        "contacts_found": sum(len(v) for k, v in found.items() if k in expected),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "stale": len(stale),
        "wrong_notes": len(wrong),
        "wrong_person": len(wrong_person),
        "unexpected": len(unexpected),
        "transitional_active_alert_contacts": f"{optional_found} of {len(optional)} (allowed, not required)",
        "poison_sent": len(world.poison),
        "poison_in_dlq_with_reason": sum(poison_ok.values()),
        "dlq_messages": len(dlq),
        "dlq_not_poison": len([k for k in dlq_by_identity if k not in world.poison]),
        "dlq_reasons": sorted({reason for reasons in dlq_by_identity.values() for reason in reasons}),
        "_details": {
            "lost": lost[:20],
            "stale": stale[:20],
            "wrong": wrong[:20],
            "unexpected": unexpected[:20],
            "duplicated": duplicated[:20],
            "wrong_person": wrong_person[:20],
            "poison_missing": [k[:60] for k, ok in poison_ok.items() if not ok],
            "dlq_not_poison": [k[:60] for k in dlq_by_identity if k not in world.poison][:20],
        },
    }


def run_summary(home: Path, killed: dict | None) -> dict:
    summary: dict[str, Any] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="prison_events_job"))
        by_status: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for run in runs:
            by_status[run.status.value] = by_status.get(run.status.value, 0) + 1
            if run.status is dg.DagsterRunStatus.FAILURE:
                for record in instance.all_logs(run.run_id):
                    event = record.dagster_event
                    if event is not None and event.event_type_value == "STEP_FAILURE":
                        message = event.step_failure_data.error.message if event.step_failure_data.error else ""
                        for key in (
                            "Delius database unavailable",
                            "HMPPS Auth",
                            "answered HTTP 503",
                            "timeout calling",
                            "unreadable",
                            "detailUrl",
                        ):
                            if key in message:
                                reasons[key] = reasons.get(key, 0) + 1
        summary["runs"] = by_status
        summary["failed_runs_mentioning"] = reasons
        if killed:
            run = instance.get_run_by_id(killed["run_id"])
            summary["killed_run_status"] = run.status.value if run else "?"
    return summary


# --------------------------------------------------------------------------------------------- the test


def test_faults_lose_nothing_duplicate_nothing_and_poison_ends_in_the_dlq(tmp_path, standins, delius_pg):
    world = build_world(SEED, standins.case_notes_url, standins.alerts_url)
    for n, noms in enumerate(world.people_in_delius):
        add_person(delius_pg, f"X{800000 + n}", noms)
    for source_id, record in world.initial.items():  # the versions wave 1 sees; wave 2's arrive with it
        if world.items[source_id].kind == "case_note":
            standins.store.put_case_note(record)
        else:
            standins.store.put_alert(record)

    home, workdir = prepare_instance(tmp_path)
    report: dict[str, Any] = {"seed": SEED, "load_before": load_average()}
    with (
        SqsServer("moto", log=tmp_path / "moto.log") as sqs,
        TcpProxy(delius_pg.url.host, delius_pg.url.port or 5432) as proxy,
    ):
        pair = sqs.create_queue_pair("fault-events", visibility_timeout=30, max_receive_count=3)
        env = project_env(
            delius_url=proxy.url_for(delius_pg.url.render_as_string(hide_password=False)),
            queue_url=pair.queue_url,
            sqs_endpoint=sqs.endpoint_url,
            auth_url=standins.auth_url,
            client_id=standins.client_id,
            client_secret=standins.client_secret,
            case_notes_url=standins.case_notes_url,
            alerts_url=standins.alerts_url,
            dagster_home=home,
            extra=CONSUMER_ENV,
        )
        daemon = DaemonProcess(workdir, env, tmp_path / "daemon.log")
        stack = Stack(sqs, pair, standins, delius_pg, proxy, daemon, home)
        killed = None
        try:
            daemon.start()
            stack.note("daemon started; 20% 503s on the detail routes")
            standins.set_fault("get_case_note", status=503, probability=0.2, seed=SEED)
            standins.set_fault("get_alert", status=503, probability=0.2, seed=SEED + 1)
            wave1 = world.wave1
            quarter = len(wave1) // 4
            stack.send(wave1[:quarter])
            wait_until(lambda: stack.contacts() >= 20, 180, "the first contacts", diagnostics=stack.diagnostics)

            stack.note("HMPPS Auth outage (token route answers 503; the tokens held are invalidated)")
            standins.set_fault("token", status=503)
            # A long-lived consumer holds a token for its lifetime: rotating the signing keys makes every API answer
            # 401 to it, so it must ask HMPPS Auth again during the outage (as when a token expires mid-outage).
            standins.rotate_keys()
            stack.send(wave1[quarter : 2 * quarter])
            outage_for(12, lambda: token_refusals(standins) > 0, "a token request refused")
            standins.clear_faults("token")
            stack.note(f"HMPPS Auth back ({token_refusals(standins)} token requests refused)")

            before = stack.contacts()
            wait_until(
                lambda: stack.contacts() > before + 10,
                180,
                "progress after the Auth outage",
                diagnostics=stack.diagnostics,
            )
            stack.note("Delius database unavailable (proxy drops and refuses connections)")
            proxy.down()
            stack.send(wave1[2 * quarter : 3 * quarter])
            outage_for(10, lambda: proxy.refused > 0, "a Delius connection refused")
            proxy.up()
            stack.note(f"Delius database back ({proxy.refused} connections refused)")

            killed = kill_a_worker_mid_batch(stack, wave1[3 * quarter :])

            stack.note("wave 2: updates, amendments, alerts made inactive; 20% timeouts on the detail routes")
            for record in world.wave2_updates:
                if "caseNoteId" in record:
                    standins.store.put_case_note(record)
                else:
                    standins.store.put_alert(record)
            standins.set_fault("get_case_note", latency_ms=12_000, probability=0.2, seed=SEED + 2)
            standins.set_fault("get_alert", latency_ms=12_000, probability=0.2, seed=SEED + 3)
            timeouts_from = time.monotonic()
            half = len(world.wave2) // 2
            stack.send(world.wave2[:half])
            # Each timeout costs the client's 10 s read timeout: keep them for ~25 s, then 503s again.
            time.sleep(max(0.0, 25 - (time.monotonic() - timeouts_from)))
            standins.set_fault("get_case_note", status=503, probability=0.2, seed=SEED + 4)
            standins.set_fault("get_alert", status=503, probability=0.2, seed=SEED + 5)
            stack.note(f"timeouts off, 503s again ({slow_responses(standins)} requests held past the timeout)")
            # Restart once the requests already held have timed out: an interrupted run worker finishes its in-flight
            # fetches before it records the run's end, and a SIGKILL after the grace period would leave it STARTED.
            time.sleep(10)
            wait_until(lambda: stack.active_runs(), 60, "a run to restart the daemon under")
            restart_daemon(stack)
            stack.send(world.wave2[half:])

            wait_until(lambda: stack.depth() < 40, 240, "wave 2 to be mostly consumed", diagnostics=stack.diagnostics)
            standins.clear_faults()
            stack.note("faults off; waiting for the queue to drain")
            quiet(stack, "the queue to drain after the faults", 240)

            dlq_before = stack.depth(pair.dlq_url)
            stack.note(f"operator redrives the DLQ ({dlq_before} messages)")
            queue_resource = EventsQueueResource(
                queue_url=pair.queue_url, dlq_url=pair.dlq_url, endpoint_url=sqs.endpoint_url, region_name="eu-west-2"
            )
            result = redrive_dlq_job.execute_in_process(resources={"events_queue": queue_resource})
            assert result.success
            moved = result.output_for_node("redrive_dead_letters")["moved"]
            stack.note(f"redrive moved {len(moved)}; waiting for quiet")
            quiet(stack, "the redriven messages to be processed", 240)
            report.update({"events_sent": stack.sent, "dlq_before_redrive": dlq_before, "redriven": len(moved)})
        finally:
            daemon.stop()

        store_records = {
            **{n["caseNoteId"]: n for n in standins.store.case_notes()},
            **{a["alertUuid"]: a for a in standins.store.alerts()},
        }
        report.update(verify(world, stack, store_records))
        report.update(run_summary(home, killed))
        report["proxy_connections_refused"] = proxy.refused
        report["token_requests_refused"] = token_refusals(standins)
        report["detail_requests_held_past_timeout"] = slow_responses(standins)
        report["killed_worker_mid_batch"] = killed
        report["zombie_runs"] = sorted(run_id[:8] for run_id in stack.zombies)
        report["standin_responses"] = _status_counts(standins)
        report["timeline"] = stack.timeline
        report["load_after"] = load_average()

    details = report.pop("_details")
    print("\nfault-injection report:\n" + json.dumps(report, indent=2), flush=True)
    if os.environ.get("FAULT_REPORT"):
        Path(os.environ["FAULT_REPORT"]).write_text(json.dumps({**report, "details": details}, indent=2))
    problems = {
        k: report[k]
        for k in ("lost", "duplicated", "stale", "wrong_notes", "wrong_person", "unexpected", "dlq_not_poison")
        if report[k]
    }
    assert not problems, f"{problems}\n{json.dumps(details, indent=2)}"
    assert report["poison_in_dlq_with_reason"] == report["poison_sent"], json.dumps(details, indent=2)
    assert report["contacts_found"] == report["contacts_expected"]
    # The faults did happen.
    assert report["token_requests_refused"] and report["proxy_connections_refused"]
    assert report["killed_run_status"] == "FAILURE" and report["detail_requests_held_past_timeout"]


def outage_for(seconds: float, hit: Any, what: str, longest: float = 60) -> None:
    """Keep an outage on for ``seconds``, and longer (up to ``longest``) until ``hit()`` shows it was noticed."""
    time.sleep(seconds)
    wait_until(hit, longest - seconds, what, interval=0.5)


def token_refusals(standins) -> int:
    return sum(1 for entry in standins.request_log("token") if entry["status"] == 503)


def slow_responses(standins) -> int:
    return sum(
        1
        for route in ("get_case_note", "get_alert")
        for entry in standins.request_log(route)
        if (entry["durationMs"] or 0) >= 10_000
    )


def _status_counts(standins) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for entry in standins.request_log():
        route = counts.setdefault(entry["route"], {})
        key = str(entry["status"])
        route[key] = route.get(key, 0) + 1
    return counts


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-s", "-p", "no:cacheprovider"]))
