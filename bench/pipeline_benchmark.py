#!/usr/bin/env python
"""Pipeline benchmark: the real daemon path against a bare sequential loop, on the same queue, stand-ins and database.

    .venv/bin/python bench/pipeline_benchmark.py                 # 2,000 events each, moto
    .venv/bin/python bench/pipeline_benchmark.py --sqs fauxqs    # fauxqs 1.x (npm) instead of moto
    .venv/bin/python bench/pipeline_benchmark.py --events 3000 --consumer MAX_BATCH=500 --json out.json
    .venv/bin/python bench/pipeline_benchmark.py --sqs fauxqs --steady 2 --seconds 120 --idle 180   # a trickle
    .venv/bin/python bench/pipeline_benchmark.py --sqs fauxqs --delius sqlite --events 10000       # SQLite Delius
    .venv/bin/python bench/pipeline_benchmark.py --sqs fauxqs --delius sqlite --standins light --events 10000

What it starts (and stops, by process group, whatever happens): an SQS server (moto_server, or fauxqs from npm:
``npm install --prefix ~/.cache/pcn2p-fauxqs fauxqs@1``), the stand-ins (``python -m integration.local.standins``,
their own process), a fresh Delius database on the PostgreSQL server at ``TEST_POSTGRES_URL`` or
``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres`` (schema, reference data and people from the project's
helpers; dropped at the end), and for the pipeline ``dagster-daemon run -w workspace.yaml`` with its own DAGSTER_HOME
(a temporary copy of the root dagster.yaml) and only the README's required variables plus the CONSUMER_* tunables.

Both contenders consume N ``person.case-note.created`` events for N distinct case notes (of interest, people in
Delius), fed by a feeder thread that keeps the queue between ``--depth-low`` and ``--depth-high`` messages (moto slows
down with depth; see docs/performance.md for which depth is counted):

* bare loop: receive 10 -> GET each case note with the project's HmppsSourceApi -> INSERT one minimal contact row
  each -> COMMIT -> delete the 10; sequential, one process, no Dagster.
* pipeline: the queue sensor starts long-lived ``prison_events_job`` consumer runs, which receive, fetch
  concurrently, merge in bulk with every rule and acknowledge per chunk; measured after a warm-up event has gone
  through (a warm daemon, its consumer still alive), so the daemon's start is not counted in the rate (it is
  reported separately as the cold start).

``--steady RATE --seconds N --idle M`` measures a trickle instead, through the pipeline only: the daemon starts, one
event is sent at once (daemon start -> first contact), then RATE events per second for N seconds, then nothing for M
seconds. Printed: enqueue -> committed contact latency p50 / p95 / max, ``prison_events_job`` runs per hour, and the
CPU seconds per hour of the daemon's whole process tree (daemon, code server, run workers; from /proc), loaded and
idle. ``--load-procs K`` runs K CPU-bound processes meanwhile (a busy machine).

Rates are N / (last contact committed - first event sent). Printed: both rates, their ratio, the time from the first
send to the first contact, and where the pipeline's time went (runs, events per run, start latency, phase seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402

from integration.clients.hmpps import HmppsSourceApi  # noqa: E402
from integration.delius import models as m  # noqa: E402
from integration.delius.engine import create_delius_engine  # noqa: E402
from integration.delius.reference_data import add_person, seed_reference_data  # noqa: E402
from integration.delius.schema import create_schema  # noqa: E402
from integration.local import event_factory as ev  # noqa: E402
from integration.local.standins import make_case_note  # noqa: E402
from integration_tests.fixtures.postgres import DEFAULT_ADMIN_URL, create_database, drop_database  # noqa: E402
from integration_tests.harness.daemon import (  # noqa: E402
    DaemonProcess,
    SqsServer,
    StandInsProcess,
    load_average,
    machine_info,
    prepare_instance,
    project_env,
    start_group,
    wait_until,
)

URN_PREFIX = "urn:uk:gov:hmpps:prison-case-note:"
NOTE_TYPES = [("KA", "KS"), ("GEN", "OSE"), ("OMIC", "OPEN"), ("PRISON", "RELEASE")]
AUTHORS = ["Alex Benchmark", "Sam Benchmark", "Jo Benchmark", "Kim Benchmark"]
# The pipeline runs with the shipped ConsumerSettings defaults unless --tuned (these per-SQS values) or --consumer
# NAME=VALUE says otherwise. moto slows down with every message it holds (docs/performance.md), so fewer receivers
# and smaller batches there; fauxqs receives almost for free.
TUNED_CONSUMER = {
    "moto": {"RECEIVERS": "1", "MAX_BATCH": "250", "FETCH_WORKERS": "8"},
    "fauxqs": {"RECEIVERS": "3", "MAX_BATCH": "1000", "FETCH_WORKERS": "16"},
}


class LightStandInsProcess(StandInsProcess):
    """``bench/light_standins.py`` in its own process: token and case-note GETs only, HTTP/1.1 keep-alive, fast."""

    def start(self, timeout: float = 30) -> LightStandInsProcess:
        self.case_notes_url = f"http://127.0.0.1:{self.ports['case_notes']}"
        self.alerts_url = self.case_notes_url
        self.proc = start_group(
            [
                sys.executable,
                str(ROOT / "bench" / "light_standins.py"),
                "--auth-port",
                str(self.ports["auth"]),
                "--case-notes-port",
                str(self.ports["case_notes"]),
                "--client-id",
                self.client_id,
                "--client-secret",
                self.client_secret,
            ],
            cwd=ROOT,
            log=self.log,
        )
        wait_until(
            lambda: self.http.get(f"{self.case_notes_url}/__admin/health", timeout=2).ok,
            timeout,
            "the light stand-ins",
            interval=0.2,
        )
        return self

    def set_fault(self, route: str, **spec) -> None:
        raise SystemExit("--standins light has no faults (no --api-latency-ms)")


# --------------------------------------------------------------------------------------------- feeding


class Feeder(threading.Thread):
    """Sends ``bodies`` in batches of 10, keeping the queue between ``low`` and ``high`` messages.

    ``metric`` "visible" counts ApproximateNumberOfMessages (the backlog waiting to be received); "total" adds the
    messages in flight (leased by a consumer) and delayed ones.
    """

    def __init__(self, client, queue_url: str, bodies: list[str], *, low: int, high: int, metric: str):
        super().__init__(name="feeder", daemon=True)
        self.client, self.queue_url, self.bodies = client, queue_url, bodies
        self.low, self.high, self.metric = low, high, metric
        self.first_send: float | None = None
        self.sent = 0
        self.depths: list[int] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def depth(self) -> int:
        names = ["ApproximateNumberOfMessages"]
        if self.metric == "total":
            names += ["ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
        attrs = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        return sum(int(attrs.get(n, 0)) for n in names)

    def run(self) -> None:
        try:
            while self.sent < len(self.bodies) and not self._halt.is_set():
                depth = self.depth()
                self.depths.append(depth)
                if depth >= self.low:
                    time.sleep(0.1)
                    continue
                room = self.high - depth
                while room > 0 and self.sent < len(self.bodies):
                    chunk = self.bodies[self.sent : self.sent + min(10, room)]
                    if self.first_send is None:
                        self.first_send = time.monotonic()
                    self.client.send_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
                    )
                    self.sent += len(chunk)
                    room -= len(chunk)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def stop(self) -> None:
        self._halt.set()


def queue_total(client, queue_url: str) -> int:
    attrs = client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


# --------------------------------------------------------------------------------------------- data


def make_notes(count: int, people: list[str], rng: random.Random, label: str) -> list[dict]:
    base = datetime(2026, 1, 5, 9, 0, 0)
    notes = []
    for i in range(count):
        note_type, sub_type = NOTE_TYPES[i % len(NOTE_TYPES)]
        created = base + timedelta(seconds=17 * i)
        notes.append(
            make_case_note(
                people[i % len(people)],
                type=note_type,
                sub_type=sub_type,
                text=f"Benchmark {label} case note {i}.",
                case_note_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                legacy_id=10_000_000 + rng.getrandbits(40),
                created_at=created,
                occurred_at=created,
                author_name=AUTHORS[i % len(AUTHORS)],
                location_id="LEI",
            )
        )
    return notes


def events_for(notes: list[dict], case_notes_url: str) -> list[str]:
    return [ev.case_note_event_for(note, case_notes_url=case_notes_url) for note in notes]


def count_contacts(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(m.contact).where(m.contact.c.external_reference.like(URN_PREFIX + "%"))
        ).scalar_one()


# --------------------------------------------------------------------------------------------- bare loop


def run_bare(args, sqs: SqsServer, queue_url: str, standins: StandInsProcess, engine, notes: list[dict]) -> dict:
    client = sqs.client()
    api = HmppsSourceApi(
        standins.auth_url, standins.client_id, standins.client_secret, standins.case_notes_url, standins.alerts_url
    )
    with engine.connect() as conn:
        offenders = dict(conn.execute(select(m.offender.c.noms_number, m.offender.c.offender_id)).all())
        type_id = conn.execute(
            select(m.r_contact_type.c.contact_type_id).where(m.r_contact_type.c.code == "NOMISD")
        ).scalar_one()
        user_id = conn.execute(select(m.user_.c.user_id)).scalar_one()
    before = count_contacts(engine)
    feeder = Feeder(
        sqs.client(),
        queue_url,
        events_for(notes, standins.case_notes_url),
        low=args.depth_low,
        high=args.depth_high,
        metric=args.depth_metric,
    )
    feeder.start()
    processed, first_contact, empty_receives = 0, None, 0
    deadline = time.monotonic() + args.timeout
    try:
        while processed < len(notes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare loop: {processed} of {len(notes)} after {args.timeout} s")
            if feeder.error:
                raise feeder.error
            messages = client.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=60
            ).get("Messages", [])
            if not messages:
                empty_receives += 1
                continue
            rows = []
            for message in messages:
                event = json.loads(json.loads(message["Body"])["Message"])
                note = api.get_case_note(event["detailUrl"])
                assert note is not None, f"bare loop: no case note at {event['detailUrl']}"
                when = datetime.fromisoformat(note["creationDateTime"])
                rows.append(
                    {
                        "offender_id": offenders[note["offenderIdentifier"]],
                        "contact_type_id": type_id,
                        "contact_date": when,
                        "contact_start_time": when,
                        "created_by_user_id": user_id,
                        "last_updated_user_id": user_id,
                        "notes": f"{note['type']} {note['subType']}\n{note['text']}",
                        "external_reference": URN_PREFIX + note["caseNoteId"],
                        "created_datetime": when,
                        "last_updated_datetime": when,
                    }
                )
            with engine.begin() as conn:
                for row in rows:  # one INSERT per row, one COMMIT per batch
                    conn.execute(insert(m.contact).values(**row))
            if first_contact is None:
                first_contact = time.monotonic()
            client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": msg["ReceiptHandle"]} for i, msg in enumerate(messages)],
            )
            processed += len(messages)
        done = time.monotonic()
    finally:
        feeder.stop()
        feeder.join(timeout=10)
        api.close()
    assert count_contacts(engine) - before == len(notes), "bare loop: contact count mismatch"
    assert feeder.first_send is not None and first_contact is not None, "bare loop: no events"
    elapsed = done - feeder.first_send
    return {
        "events": len(notes),
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(notes) / elapsed, 1),
        "first_contact_s": round(first_contact - feeder.first_send, 2),
        "empty_receives": empty_receives,
        "max_depth": max(feeder.depths or [0]),
        "load_after": load_average(),
    }


# --------------------------------------------------------------------------------------------- pipeline


def run_pipeline(
    args,
    sqs: SqsServer,
    queue_url: str,
    standins: StandInsProcess,
    engine,
    db_url: str,
    warmup: dict,
    notes: list[dict],
    workdir_base: Path,
) -> dict:
    client = sqs.client()
    consumer = dict(TUNED_CONSUMER[args.sqs]) if args.tuned else {}
    for item in args.consumer:
        name, _, value = item.partition("=")
        consumer[name.upper().removeprefix("CONSUMER_")] = value
    home, workdir = prepare_instance(workdir_base)
    extra_env = {f"CONSUMER_{k}": v for k, v in consumer.items()}
    env = project_env(
        delius_url=db_url,
        queue_url=queue_url,
        sqs_endpoint=sqs.endpoint_url,
        auth_url=standins.auth_url,
        client_id=standins.client_id,
        client_secret=standins.client_secret,
        case_notes_url=standins.case_notes_url,
        alerts_url=standins.alerts_url,
        dagster_home=home,
        extra=extra_env,
    )
    daemon = DaemonProcess(workdir, env, workdir_base / "daemon.log")
    try:
        started = time.monotonic()
        daemon.start()
        before = count_contacts(engine)
        client.send_message(
            QueueUrl=queue_url, MessageBody=ev.case_note_event_for(warmup, case_notes_url=standins.case_notes_url)
        )
        wait_until(
            lambda: count_contacts(engine) > before or not daemon.alive(),
            args.timeout,
            "the warm-up event's contact",
            interval=0.25,
            diagnostics=daemon.tail,
        )
        if not daemon.alive():
            raise RuntimeError("the daemon exited:\n" + daemon.tail())
        cold_start = time.monotonic() - started
        wait_until(lambda: queue_total(client, queue_url) == 0, 120, "the warm-up message to be deleted")
        before = count_contacts(engine)

        feeder = Feeder(
            sqs.client(),
            queue_url,
            events_for(notes, standins.case_notes_url),
            low=args.depth_low,
            high=args.depth_high,
            metric=args.depth_metric,
        )
        feeder.start()
        first_contact = last_contact = None
        seen = 0
        deadline = time.monotonic() + args.timeout
        try:
            while seen < len(notes):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"pipeline: {seen} of {len(notes)} contacts after {args.timeout} s\n" + daemon.tail()
                    )
                if feeder.error:
                    raise feeder.error
                if not daemon.alive():
                    raise RuntimeError("the daemon exited:\n" + daemon.tail())
                now_seen = count_contacts(engine) - before
                now = time.monotonic()
                if now_seen > seen:
                    if first_contact is None:
                        first_contact = now
                    last_contact, seen = now, now_seen
                time.sleep(0.25)
        finally:
            feeder.stop()
            feeder.join(timeout=10)
        wait_until(lambda: queue_total(client, queue_url) == 0, 120, "the queue to be empty")
        drained = time.monotonic()
        # Let the last runs finish (their log lines and metadata come after the commit and the deletes) before the
        # daemon is stopped, so that their statistics are complete.
        wait_until(lambda: not active_runs(home), 180, "the last runs to finish", interval=1)
    finally:
        daemon.stop()
    assert feeder.first_send is not None and first_contact is not None and last_contact is not None, "no events"
    elapsed = last_contact - feeder.first_send
    result = {
        "events": len(notes),
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(notes) / elapsed, 1),
        "first_contact_s": round(first_contact - feeder.first_send, 2),
        "queue_empty_s": round(drained - feeder.first_send, 2),
        "cold_start_s": round(cold_start, 1),
        "max_depth": max(feeder.depths or [0]),
        "consumer": consumer,
        "load_after": load_average(),
    }
    result.update(run_statistics(home))
    return result


def active_runs(home: Path) -> int:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return instance.get_runs_count(
            dg.RunsFilter(
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.NOT_STARTED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                ]
            )
        )


def run_statistics(home: Path) -> dict:
    """Anatomy of the prison_events_job runs (consumers) from the benchmark's instance: events per run (their chunk
    reports), queue-to-start wait, worker process start (STARTING -> START), run duration, and the phases the chunk
    reports add up (fetch, merge, acknowledge; they overlap)."""
    import dagster as dg

    def mean(xs):
        return round(statistics.mean(xs), 2) if xs else None

    sizes, waits, starts, durations, reports = [], [], [], [], []
    statuses: dict[str, int] = {}
    phases: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(dg.RunsFilter(job_name="prison_events_job"))
        for record in records:
            run = record.dagster_run
            statuses[run.status.value] = statuses.get(run.status.value, 0) + 1
            if record.start_time:
                waits.append(record.start_time - record.create_timestamp.timestamp())
                if record.end_time:
                    durations.append(record.end_time - record.start_time)
            first: dict[str, float] = {}
            events = chunks = 0
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                first.setdefault(event.event_type_value, entry.timestamp)
                if event.event_type_value == "ASSET_MATERIALIZATION":
                    metadata = event.step_materialization_data.materialization.metadata
                    chunks += 1
                    count = metadata["events"].value if "events" in metadata else 0
                    assert isinstance(count, int), "a chunk report's events is a count"
                    events += count
                    seconds = metadata.get("seconds")
                    phase_seconds = seconds.value if seconds else {}
                    assert isinstance(phase_seconds, dict), "a chunk report's seconds is a JSON object"
                    for key, value in phase_seconds.items():
                        phases[key] = phases.get(key, 0.0) + float(value)
            sizes.append(events)
            reports.append(chunks)
            if "PIPELINE_STARTING" in first and "PIPELINE_START" in first:
                starts.append(first["PIPELINE_START"] - first["PIPELINE_STARTING"])
    return {
        "runs": len(records),
        "run_statuses": statuses,
        "events_per_run_mean": mean(sizes),
        "reports_per_run_mean": mean(reports),
        "run_queue_to_start_s_mean": mean(waits),
        "worker_process_start_s_mean": mean(starts),
        "run_duration_s_mean": mean(durations),
        "op_phase_s_total": {k: round(v, 2) for k, v in sorted(phases.items())},
    }


# --------------------------------------------------------------------------------------------- steady mode


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and its live descendants, including the children they have reaped
    (cutime/cstime: finished run workers are reaped by the code server)."""
    from integration_tests.harness.daemon import descendants

    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in [root] + descendants(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
    return total


class ContactWatcher(threading.Thread):
    """Polls the contact table for new integration contacts and records when each URN was first seen."""

    def __init__(self, engine, interval: float = 0.1):
        super().__init__(name="watcher", daemon=True)
        self.engine, self.interval = engine, interval
        self.seen: dict[str, float] = {}
        self._last_id = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                with self.engine.connect() as conn:
                    rows = conn.execute(
                        select(m.contact.c.contact_id, m.contact.c.external_reference)
                        .where(m.contact.c.contact_id > self._last_id)
                        .order_by(m.contact.c.contact_id)
                    ).all()
            except Exception:  # the database is busy: try again
                rows = []
            now = time.monotonic()
            for contact_id, urn in rows:
                self._last_id = max(self._last_id, contact_id)
                if urn:
                    self.seen.setdefault(urn, now)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()


def burn(seconds: float) -> None:  # a CPU-bound process: the load of another engineer's test suite
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x = (x * 31 + 7) % 1000003


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))], 2)


def run_steady(
    args,
    sqs: SqsServer,
    queue_url: str,
    standins: StandInsProcess,
    engine,
    db_url: str,
    notes: list[dict],
    first: dict,
    workdir_base: Path,
) -> dict:
    import multiprocessing

    import dagster as dg

    client = sqs.client()
    consumer = {k.upper().removeprefix("CONSUMER_"): v for k, v in (i.partition("=")[::2] for i in args.consumer)}
    home, workdir = prepare_instance(workdir_base)
    env = project_env(
        delius_url=db_url,
        queue_url=queue_url,
        sqs_endpoint=sqs.endpoint_url,
        auth_url=standins.auth_url,
        client_id=standins.client_id,
        client_secret=standins.client_secret,
        case_notes_url=standins.case_notes_url,
        alerts_url=standins.alerts_url,
        dagster_home=home,
        extra={f"CONSUMER_{k}": v for k, v in consumer.items()},
    )
    daemon = DaemonProcess(workdir, env, workdir_base / "daemon.log")
    watcher = ContactWatcher(engine)
    watcher.start()
    burners = []
    sent: dict[str, float] = {}
    total = args.steady_seconds + args.idle + 300
    try:
        for _ in range(args.load_procs):
            proc = multiprocessing.Process(target=burn, args=(total,), daemon=True)
            proc.start()
            burners.append(proc)
        started = time.monotonic()
        daemon.start()
        urn = URN_PREFIX + first["caseNoteId"]
        client.send_message(
            QueueUrl=queue_url, MessageBody=ev.case_note_event_for(first, case_notes_url=standins.case_notes_url)
        )
        wait_until(
            lambda: urn in watcher.seen or not daemon.alive(),
            args.timeout,
            "the first contact",
            interval=0.1,
            diagnostics=daemon.tail,
        )
        if not daemon.alive():
            raise RuntimeError("the daemon exited:\n" + daemon.tail())
        first_contact = watcher.seen[urn] - started
        wait_until(lambda: queue_total(client, queue_url) == 0, 120, "the first message to be deleted")

        bodies = events_for(notes, standins.case_notes_url)
        cpu0, t0 = tree_cpu_seconds(daemon.pid), time.monotonic()
        created0 = time.time()
        interval = 1.0 / args.steady
        for n, (note, body) in enumerate(zip(notes, bodies)):
            due = t0 + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[URN_PREFIX + note["caseNoteId"]] = time.monotonic()
            client.send_message(QueueUrl=queue_url, MessageBody=body)
        wait_until(
            lambda: all(u in watcher.seen for u in sent),
            300,
            "every steady event's contact",
            interval=0.5,
            diagnostics=daemon.tail,
        )
        loaded_end = max(watcher.seen[u] for u in sent)
        cpu1, t1 = tree_cpu_seconds(daemon.pid), time.monotonic()
        created1 = time.time()
        quiet_at = quiet_cpu = None  # when the last consumer run had exited (idle exit), and the CPU then
        while time.monotonic() < t1 + args.idle:
            if quiet_at is None and not active_runs(home):
                quiet_at, quiet_cpu = time.monotonic(), tree_cpu_seconds(daemon.pid)
            time.sleep(1)
        cpu2, t2 = tree_cpu_seconds(daemon.pid), time.monotonic()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            records = instance.get_run_records(dg.RunsFilter(job_name="prison_events_job"))
            statuses: dict[str, int] = {}
            for record in records:
                statuses[record.dagster_run.status.value] = statuses.get(record.dagster_run.status.value, 0) + 1
            loaded_runs = [r for r in records if created0 <= r.create_timestamp.timestamp() <= created1]
            idle_runs = [r for r in records if r.create_timestamp.timestamp() > created1]
            exits = {}
            for record in records:
                if record.end_time and record.start_time:
                    exits[record.dagster_run.run_id[:8]] = round(record.end_time - record.start_time, 1)
    finally:
        watcher.stop()
        daemon.stop()
        for proc in burners:
            proc.terminate()
    latencies = [watcher.seen[u] - t for u, t in sent.items()]
    loaded_hours = (t1 - t0) / 3600
    idle_hours = (t2 - t1) / 3600
    # Runs alive during the loaded phase: those created in it, plus the one that was already consuming.
    alive_loaded = len(loaded_runs) + 1
    return {
        "rate_per_s": args.steady,
        "seconds": args.steady_seconds,
        "idle_seconds": args.idle,
        "events": len(sent),
        "load_procs": args.load_procs,
        "consumer": consumer,
        "daemon_start_to_first_contact_s": round(first_contact, 2),
        "latency_s": {
            "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95),
            "max": round(max(latencies), 2),
        },
        "runs": {
            "created_loaded": len(loaded_runs),
            "created_idle": len(idle_runs),
            "total": len(records),
            "statuses": statuses,
            "durations_s": exits,
        },
        "runs_per_hour_loaded": round(alive_loaded / loaded_hours, 1),
        "cpu_s_per_hour_loaded": round((cpu1 - cpu0) / loaded_hours, 1),
        "cpu_s_per_hour_idle": round((cpu2 - cpu1) / idle_hours, 1),
        "cpu_s_per_hour_idle_after_consumer_exit": (
            round((cpu2 - quiet_cpu) * 3600 / (t2 - quiet_at), 1)
            if quiet_at is not None and quiet_cpu is not None and t2 - quiet_at > 10
            else None
        ),
        "consumer_exited_after_idle_s": round(quiet_at - t1, 1) if quiet_at is not None else None,
        "loaded_phase_s": round(t1 - t0, 1),
        "last_contact_after_last_send_s": round(loaded_end - max(sent.values()), 2),
        "load_after": load_average(),
    }


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000, help="events per contender (default 2000)")
    parser.add_argument("--people", type=int, default=50, help="people in Delius the notes belong to")
    parser.add_argument("--sqs", choices=["moto", "fauxqs"], default="moto")
    parser.add_argument("--fauxqs-dir", type=Path, default=None, help="npm prefix where fauxqs@1 is installed")
    parser.add_argument(
        "--api-latency-ms",
        type=int,
        default=0,
        help="added to every case-note GET on the stand-ins (a remote API's latency; default 0)",
    )
    parser.add_argument("--mode", choices=["both", "bare", "pipeline"], default="both")
    parser.add_argument("--order", choices=["bare-first", "pipeline-first"], default="bare-first")
    parser.add_argument("--depth-low", type=int, default=100, help="refill when the queue holds fewer than this")
    parser.add_argument("--depth-high", type=int, default=200, help="refill up to this many messages")
    parser.add_argument(
        "--depth-metric",
        choices=["visible", "total"],
        default="visible",
        help="count only visible messages (the backlog) or visible + in flight",
    )
    parser.add_argument(
        "--consumer",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a CONSUMER_* tunable for the pipeline, e.g. MAX_BATCH=500 (repeatable)",
    )
    parser.add_argument(
        "--tuned",
        action="store_true",
        help="start from this benchmark's per-SQS tuned values instead of the shipped defaults",
    )
    parser.add_argument(
        "--project-defaults",
        action="store_true",
        help="the shipped ConsumerSettings defaults (the default; kept for old command lines)",
    )
    parser.add_argument(
        "--standins",
        choices=["project", "light"],
        default="project",
        help="the project's stand-ins (faithful, Connection: close) or bench/light_standins.py "
        "(token and case-note GETs only, keep-alive, fast)",
    )
    parser.add_argument(
        "--delius",
        choices=["postgres", "sqlite"],
        default="postgres",
        help="the Delius database: a fresh PostgreSQL database, or a SQLite file",
    )
    parser.add_argument(
        "--steady",
        type=float,
        default=None,
        metavar="RATE",
        help="steady mode: RATE events per second through the pipeline only (see the docstring)",
    )
    parser.add_argument(
        "--seconds",
        dest="steady_seconds",
        type=float,
        default=120,
        help="steady mode: seconds of sending (default 120)",
    )
    parser.add_argument("--idle", type=float, default=180, help="steady mode: idle seconds afterwards (default 180)")
    parser.add_argument("--load-procs", type=int, default=0, help="steady mode: CPU-bound processes meanwhile")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per contender")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory (daemon log)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.depth_high < args.depth_low:
        parser.error("--events must be positive and --depth-high >= --depth-low")

    rng = random.Random(args.seed)
    admin_url = os.environ.get("TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_info(),
        "sqs": args.sqs,
        "delius": args.delius,
        "standins": args.standins,
        "events": args.events,
        "api_latency_ms": args.api_latency_ms,
        "depth": f"{args.depth_low}-{args.depth_high} ({args.depth_metric})",
    }
    print(f"machine: {results['machine']}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="pcn2p-bench-"))
    with ExitStack() as stack:
        sqs = stack.enter_context(SqsServer(args.sqs, fauxqs_dir=args.fauxqs_dir, log=tmp / "sqs.log"))
        pair = sqs.create_queue_pair("bench-events", visibility_timeout=60)
        standins_class = LightStandInsProcess if args.standins == "light" else StandInsProcess
        standins = stack.enter_context(standins_class(log=tmp / "standins.log"))
        if args.delius == "sqlite":
            db_url = f"sqlite:///{tmp / 'delius.db'}"
        else:
            db_url = create_database(admin_url, prefix="pcn2p_bench")
            stack.callback(drop_database, admin_url, db_url)
        engine = create_delius_engine(db_url)
        stack.callback(engine.dispose)
        create_schema(engine)
        seed_reference_data(engine)
        people = [f"B{n:04d}BN" for n in range(args.people)]
        with engine.begin() as conn:
            for n, noms in enumerate(people):
                add_person(conn, f"B{n:06d}", noms, manager_team=None)
        if args.steady:
            steady_notes = make_notes(int(args.steady * args.steady_seconds), people, rng, "steady")
            first = make_notes(1, people, rng, "first")[0]
            standins.put_case_notes(steady_notes + [first])
            if args.api_latency_ms:
                standins.set_fault("get_case_note", latency_ms=args.api_latency_ms)
            results.update({"mode": "steady", "delius": args.delius})
            print(f"--- steady: {args.steady}/s for {args.steady_seconds} s, then {args.idle} s idle ...", flush=True)
            results["steady"] = run_steady(
                args, sqs, pair.queue_url, standins, engine, db_url, steady_notes, first, tmp / "steady"
            )
            print(json.dumps(results["steady"], indent=2), flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
            if not args.keep_logs:
                stack.callback(_remove_tree, tmp)
            return 0
        bare_notes = make_notes(args.events, people, rng, "bare")
        pipeline_notes = make_notes(args.events, people, rng, "pipeline")
        warmup = make_notes(1, people, rng, "warm-up")[0]
        standins.put_case_notes(bare_notes + pipeline_notes + [warmup])
        if args.api_latency_ms:
            # A latency-only fault: every GET of a case note waits this long first (a remote API's round trip).
            standins.set_fault("get_case_note", latency_ms=args.api_latency_ms)
        print(f"stack ready in {tmp} ({args.sqs} at {sqs.endpoint_url}); load {load_average()}", flush=True)

        contenders = ["bare", "pipeline"] if args.order == "bare-first" else ["pipeline", "bare"]
        for name in contenders:
            if args.mode not in ("both", name):
                continue
            print(f"--- {name}: {args.events} events ...", flush=True)
            if name == "bare":
                results["bare"] = run_bare(args, sqs, pair.queue_url, standins, engine, bare_notes)
            else:
                results["pipeline"] = run_pipeline(
                    args, sqs, pair.queue_url, standins, engine, db_url, warmup, pipeline_notes, tmp / "pipeline"
                )
            print(json.dumps(results[name], indent=2), flush=True)
        if not args.keep_logs:
            stack.callback(_remove_tree, tmp)

    print()
    print(
        f"machine: {results['machine']['nproc']} CPUs, {results['machine'].get('ram')}, "
        f"{results['machine'].get('cpu')}; load before {results['machine']['load']}"
    )
    print(
        f"SQS server: {args.sqs}; queue depth kept at {results['depth']}; {args.events} events each; "
        f"case-note GET latency added: {args.api_latency_ms} ms"
    )
    if "bare" in results:
        b = results["bare"]
        print(
            f"bare loop : {b['events_per_s']:7.1f} events/s  ({b['seconds']} s; first contact after "
            f"{b['first_contact_s']} s)"
        )
    if "pipeline" in results:
        p = results["pipeline"]
        print(
            f"pipeline  : {p['events_per_s']:7.1f} events/s  ({p['seconds']} s; first contact after "
            f"{p['first_contact_s']} s; cold start to first contact {p['cold_start_s']} s; "
            f"{p['runs']} runs, {p['events_per_run_mean']} events/run)"
        )
    if "bare" in results and "pipeline" in results:
        results["ratio"] = round(results["pipeline"]["events_per_s"] / results["bare"]["events_per_s"], 2)
        print(f"ratio pipeline/bare: {results['ratio']}  (target >= 1.0)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
