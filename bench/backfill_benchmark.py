"""Linkage backfill speed on PostgreSQL with the local stand-ins (issue 3): prints contacts/s.

    .venv/bin/python bench/backfill_benchmark.py              # both cases, through Dagster and the bare core
    .venv/bin/python bench/backfill_benchmark.py --core-only  # only the backfill functions, no Dagster

Case (a): one person with 2,000 case notes and 100 alerts. Case (b): 200 people with 100 items each (95 case notes,
5 alerts). "dagster" times ``noms_backfill_job`` runs of up to 100 people each, launched over GraphQL (as the
launchpad and ``integration.cli.backfill`` do) on a ``dagster dev`` instance, from the launch to the last run's end:
run queueing (one backfill at a time) and process start-up included. "core" times ``backfill_people`` in-process
(50 people per call, as one run does).
Each case runs on a fresh database and is run twice: the second run (a re-run) must change nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import requests
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from integration.cli.backfill import launch_backfill  # noqa: E402
from integration.cli.webserver import Webserver  # noqa: E402
from integration.clients.hmpps import HmppsSourceApi  # noqa: E402
from integration.delius import models as m  # noqa: E402
from integration.delius.engine import create_delius_engine  # noqa: E402
from integration.delius.reference_data import add_person, seed_reference_data  # noqa: E402
from integration.delius.schema import create_schema  # noqa: E402
from integration.delius.store import DeliusStore  # noqa: E402
from integration.flows.backfill import backfill_people  # noqa: E402
from integration.local.standins import StandIns, make_alert, make_case_note  # noqa: E402
from integration_tests.fixtures.postgres import DEFAULT_ADMIN_URL, create_database, drop_database  # noqa: E402

TYPES = [("KA", "KS"), ("KA", "KE"), ("OMIC", "OPEN"), ("PRISON", "RELEASE"), ("GEN", "OSE"), ("RESET", "BCST")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(engine, standins, people: int, notes: int, alerts: int, prefix: str) -> list[str]:
    nomses = [f"{prefix}{n:04d}{'AB'}" for n in range(people)]
    with engine.begin() as conn:
        for n, noms in enumerate(nomses):
            add_person(conn, f"{prefix}{n:06d}", noms)
    for noms in nomses:
        for i in range(notes):
            kind, sub = TYPES[i % len(TYPES)]
            standins.store.put_case_note(
                make_case_note(
                    noms,
                    type=kind,
                    sub_type=sub,
                    location_id="LEI",
                    author_name=f"Officer{i % 9} Smith",
                    text=f"Benchmark note {i}",
                )
            )
        for _ in range(alerts):
            standins.store.put_alert(make_alert(noms, code="VI", prison_code="MDI"))
    return nomses


RUNS = """
query Runs($ids: [String!]) {
  runsOrError(filter: {runIds: $ids}) {
    ... on Runs { results { runId status startTime endTime } }
  }
}"""


def run_window(url: str, run_ids: list[str]) -> tuple[int, float]:
    """(runs, seconds from the first run's start to the last run's end): the runs' own work, without the queueing
    before the first."""
    response = requests.post(f"{url}/graphql", json={"query": RUNS, "variables": {"ids": run_ids}}, timeout=30)
    runs = response.json()["data"]["runsOrError"]["results"]
    starts = [r["startTime"] for r in runs if r["startTime"]]
    ends = [r["endTime"] for r in runs if r["endTime"]]
    return len(runs), (max(ends) - min(starts)) if starts and ends else float("nan")


def contact_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(m.contact)).scalar_one()


class DagsterDev:
    def __init__(self, env: dict[str, str]):
        self.home = Path(tempfile.mkdtemp(prefix="pcn2p-bench-home-"))
        shutil.copy(ROOT / "dagster.yaml", self.home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.home / "dagster.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            cwd=ROOT,
            env={**os.environ, **env, "DAGSTER_HOME": str(self.home)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(1)
        raise RuntimeError("dagster dev did not start")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


def run_case(name: str, people: int, notes: int, alerts: int, *, admin_url: str, core_only: bool) -> list[str]:
    lines = []
    url = create_database(admin_url, "pcn2p_bench")
    engine = create_delius_engine(url)
    create_schema(engine)
    seed_reference_data(engine)
    sqs = None
    dev = None
    try:
        with StandIns.start() as standins:
            nomses = seed(engine, standins, people, notes, alerts, "B" if name == "b" else "A")
            expected = people * (notes + alerts)
            if core_only:
                api = HmppsSourceApi(
                    standins.auth_url,
                    standins.client_id,
                    standins.client_secret,
                    standins.case_notes_url,
                    standins.alerts_url,
                )
                store = DeliusStore(engine)
                for attempt in ("first run", "re-run"):
                    start = time.perf_counter()
                    for i in range(0, len(nomses), 50):
                        backfill_people(nomses[i : i + 50], api, store)
                    seconds = time.perf_counter() - start
                    lines.append(
                        f"({name}) core     {attempt:9s} {expected:6d} items {seconds:7.2f} s "
                        f"{expected / seconds:8.0f} items/s  contacts={contact_count(engine)}"
                    )
                return lines
            from moto.server import ThreadedMotoServer

            os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
            sqs_port = free_port()
            sqs = ThreadedMotoServer(ip_address="127.0.0.1", port=sqs_port, verbose=False)
            sqs.start()
            client = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{sqs_port}", region_name="eu-west-2")
            queue_url = client.create_queue(QueueName="bench-events")["QueueUrl"]
            env = {
                "DELIUS_DATABASE_URL": url,
                "EVENTS_QUEUE_URL": queue_url,
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{sqs_port}",
                "AWS_REGION": "eu-west-2",
                "HMPPS_AUTH_URL": standins.auth_url,
                "CLIENT_ID": standins.client_id,
                "CLIENT_SECRET": standins.client_secret,
                "CASE_NOTES_API_URL": standins.case_notes_url,
                "ALERTS_API_URL": standins.alerts_url,
            }
            dev = DagsterDev(env)
            for attempt in ("first run", "re-run"):
                before = contact_count(engine)
                start = time.perf_counter()
                server = Webserver(dev.url)
                run_ids = launch_backfill(server, nomses, trigger="benchmark")
                final = server.wait(run_ids, timeout=1800, poll=0.5)
                status = ",".join(sorted(set(final.values())))
                seconds = time.perf_counter() - start
                written = contact_count(engine) - before
                runs, window = run_window(dev.url, run_ids)
                lines.append(
                    f"({name}) dagster  {attempt:9s} {expected:6d} items {seconds:7.2f} s "
                    f"{expected / seconds:8.0f} items/s end to end; {runs} runs in {window:6.2f} s "
                    f"{expected / window:8.0f} items/s in runs; new contacts={written} status={status}"
                )
    finally:
        if dev:
            dev.stop()
        if sqs:
            sqs.stop()
        engine.dispose()
        drop_database(admin_url, url)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core-only", action="store_true")
    parser.add_argument("--case", choices=["a", "b", "both"], default="both")
    parser.add_argument("--admin-url", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_ADMIN_URL))
    args = parser.parse_args()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    print(
        f"machine: {os.cpu_count()} cores, {cpu}; python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    cases = {"a": (1, 2000, 100), "b": (200, 95, 5)}
    for name in ["a", "b"] if args.case == "both" else [args.case]:
        people, notes, alerts = cases[name]
        modes = [True] if args.core_only else [True, False]
        for core_only in modes:
            for line in run_case(name, people, notes, alerts, admin_url=args.admin_url, core_only=core_only):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
