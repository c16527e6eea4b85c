"""The local stack: everything on one machine, no cloud account.

* moto's SQS server on 127.0.0.1 with ``prison-case-notes-to-probation-queue`` and its DLQ (redrive after 3
  receives, visibility 30 s, retention 4 days / DLQ 7 days, as production: docs/upstream-apis.md);
* the stand-in HMPPS Auth / Case Notes / Alerts services, serving a generated world (``world.py``);
* a SQLite Delius database at ``.local/delius.db`` (schema, reference data, the world's people), reused across
  starts unless ``fresh``;
* the event simulator (``simulator.py``) in a thread;
* ``dagster dev`` as a subprocess in its own process group (docs/dagster-notes.md §8), with the configuration
  variables of the README set; its output goes to ``.local/dagster.log``.

``LocalStack(StackOptions(...))`` does the work; ``python -m integration.local`` (``main``) runs it in the
foreground until Ctrl-C or SIGTERM, and stops every part it started. The terminal shows the stack's own lines: what
runs where, when the UI is ready, and once a minute what the last minute did (events, contacts created / updated /
failed, the queues, runs); Dagster's own output (its DEBUG lines, BetaWarnings...) is in the log file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import boto3
from sqlalchemy import Engine

from integration.delius.engine import create_delius_engine
from integration.delius.reference_data import SERVICE_USERNAME, seed_reference_data
from integration.delius.schema import create_schema, schema_exists
from integration.local.simulator import DEFAULT_RATE, Simulator
from integration.local.standins import SourceStore, StandIns, london_now
from integration.local.world import DEFAULT_PEOPLE, World, generate_world

log = logging.getLogger("integration.local")

QUEUE_NAME = "prison-case-notes-to-probation-queue"
DLQ_NAME = "prison-case-notes-to-probation-dlq"
REGION = "eu-west-2"
DUMMY_AWS_KEY = "local"
DEFAULT_SEED = 0
DEFAULT_POISON_RATE = 0.003  # per simulated event: about one every 3 minutes at 2 events/s
DEFAULT_MAX_QUEUE_DEPTH = 500  # the simulator pauses above this (moto slows down with depth)
DAGSTER_STOP_SECONDS = 20.0
RUNS_FINISH_SECONDS = 8.0  # on stop, how long runs under way may take to finish before dagster dev stops
REPORT_SECONDS = 60.0
# Never hand real AWS credentials or profiles to the local processes: they talk to moto with dummy keys.
_REAL_AWS_SETTINGS = frozenset({"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"})


def _holds_contract_v2(db_path: Path) -> bool:
    """Whether a local Delius database was built from contract version 2 (its NSI mapping table is the v2 one)."""
    import sqlite3

    conn = sqlite3.connect(db_path)
    try:
        return (
            conn.execute(
                "select 1 from sqlite_master where type = 'table' and name = 'r_nomis_type_nsi_type'"
            ).fetchone()
            is not None
        )
    finally:
        conn.close()


class StackError(RuntimeError):
    """The stack cannot start as asked (port in use, state built with other options...); the message says why."""


def repo_root() -> Path:
    """The project root (holds workspace.yaml and dagster.yaml): this package's checkout, else the working dir."""
    here = Path(__file__).resolve().parents[2]
    if (here / "workspace.yaml").is_file():
        return here
    return Path.cwd()


@dataclass
class StackOptions:
    root: Path = field(default_factory=repo_root)
    state_dir: Path | None = None  # default: {root}/.local
    host: str = "127.0.0.1"
    sqs_port: int = 4566  # 0: any free port
    auth_port: int = 9090
    case_notes_port: int = 9091
    alerts_port: int = 9092
    dagster_port: int = 3000
    dagster: bool = True
    rate: float = DEFAULT_RATE  # simulated events per second; 0 disables the simulator
    people: int | None = None  # None: as recorded in world.json, else DEFAULT_PEOPLE
    seed: int | None = None  # None: as recorded in world.json, else DEFAULT_SEED
    poison_rate: float = DEFAULT_POISON_RATE
    max_queue_depth: int | None = DEFAULT_MAX_QUEUE_DEPTH
    fresh: bool = False

    @property
    def state(self) -> Path:
        return self.state_dir or self.root / ".local"


# --- moto -------------------------------------------------------------------------------------------------------
def _moto_server_class():
    from moto.server import ThreadedMotoServer

    class _MotoServer(ThreadedMotoServer):
        """moto's threaded server, but a failure to bind is raised from ``start()`` (moto's own would wait forever)
        and ``stop()`` also closes the listening socket."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._error: BaseException | None = None

        def _server_entry(self) -> None:
            try:
                super()._server_entry()
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                self._error = exc
                self._server_ready_event.set()

        def start(self) -> None:
            super().start()
            if self._error is not None:
                raise self._error

        def stop(self) -> None:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)

    return _MotoServer


def create_queues(client: Any) -> tuple[str, str]:
    """The events queue and its dead-letter queue, configured as production (idempotent). Returns their URLs."""
    dlq_url = client.create_queue(QueueName=DLQ_NAME, Attributes={"MessageRetentionPeriod": str(7 * 86400)})["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = client.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            "VisibilityTimeout": "30",
            "MessageRetentionPeriod": str(4 * 86400),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
        },
    )["QueueUrl"]
    return queue_url, dlq_url


# --- process groups ---------------------------------------------------------------------------------------------
def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies do not count)."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_workers(pgid: int) -> list[int]:
    """Pids of Dagster run workers (``dagster api execute_run``) in process group ``pgid``."""
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z" and b"execute_run" in cmdline:
            found.append(int(entry.name))
    return found


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --- the stack --------------------------------------------------------------------------------------------------
class LocalStack:
    """Start with ``start()`` (everything but Dagster), then ``start_dagster()``; ``stop()`` undoes all of it."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.world: World | None = None
        self.store = SourceStore()
        self.standins: StandIns | None = None
        self.simulator: Simulator | None = None
        self.engine: Engine | None = None
        self.queue_url: str | None = None
        self.dlq_url: str | None = None
        self.sqs_endpoint: str | None = None
        self.sqs_client: Any = None
        self.db_path = options.state / "delius.db"
        self.session = 0
        self.seed: int = DEFAULT_SEED
        self.loaded: dict[str, int] = {}
        self._moto = None
        self._dagster: subprocess.Popen | None = None
        self._stopped = False

    # --- start ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto and the stand-ins: no access log lines
        try:
            self._start_sqs()
            self._prepare_world_and_delius()
            self._start_standins()
            self._start_simulator()
            self.write_env_file()
        except BaseException:
            self.stop()
            raise

    def _start_sqs(self) -> None:
        o = self.options
        # boto3 needs credentials to sign requests, even for moto.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", DUMMY_AWS_KEY)
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", DUMMY_AWS_KEY)
        server = _moto_server_class()(ip_address=o.host, port=o.sqs_port, verbose=False)
        try:
            server.start()
        except OSError as exc:
            raise StackError(
                f"cannot start moto's SQS server on {o.host}:{o.sqs_port} ({exc.strerror or exc}); "
                "pass --sqs-port (0 picks a free port)"
            ) from None
        self._moto = server
        host, port = server.get_host_and_port()
        self.sqs_endpoint = f"http://{host}:{port}"
        self.sqs_client = boto3.client(
            "sqs",
            endpoint_url=self.sqs_endpoint,
            region_name=REGION,
            aws_access_key_id=DUMMY_AWS_KEY,
            aws_secret_access_key=DUMMY_AWS_KEY,
        )
        self.queue_url, self.dlq_url = create_queues(self.sqs_client)

    def _prepare_world_and_delius(self) -> None:
        o = self.options
        state = o.state
        state.mkdir(parents=True, exist_ok=True)
        meta_path = state / "world.json"
        if o.fresh:
            for path in (self.db_path, Path(f"{self.db_path}-wal"), Path(f"{self.db_path}-shm"), meta_path):
                path.unlink(missing_ok=True)
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() and self.db_path.is_file() else None
        if meta is not None and not _holds_contract_v2(self.db_path):
            log.warning("%s holds a Delius database of contract version 1: rebuilding it (version 2)", self.db_path)
            meta = None
        if meta is not None:
            if (o.seed is not None and o.seed != meta["seed"]) or (o.people is not None and o.people != meta["people"]):
                raise StackError(
                    f"{self.db_path} holds the world of seed {meta['seed']} with {meta['people']} people; "
                    "pass --fresh to rebuild it with other options"
                )
            seed, people, as_of = meta["seed"], meta["people"], date.fromisoformat(meta["asOf"])
        else:
            seed = DEFAULT_SEED if o.seed is None else o.seed
            people = DEFAULT_PEOPLE if o.people is None else o.people
            as_of = london_now().date()
            for path in (self.db_path, Path(f"{self.db_path}-wal"), Path(f"{self.db_path}-shm")):
                path.unlink(missing_ok=True)  # a database without world.json is a half-built one of ours
            meta = {"seed": seed, "people": people, "asOf": as_of.isoformat(), "sessions": 0}
        self.seed = seed
        self.world = generate_world(seed=seed, people=people, as_of=as_of)
        self.engine = create_delius_engine(self.database_url)
        if not schema_exists(self.engine):
            create_schema(self.engine)
            seed_reference_data(self.engine)
            self.loaded = self.world.load_delius(self.engine)
        self.world.load_source(self.store)
        meta["sessions"] = self.session = int(meta.get("sessions", 0)) + 1
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")

    def _start_standins(self) -> None:
        o = self.options
        try:
            self.standins = StandIns.start(o.host, o.auth_port, o.case_notes_port, o.alerts_port, store=self.store)
        except OSError as exc:
            raise StackError(
                f"cannot start the stand-ins on {o.host} ports {o.auth_port}/{o.case_notes_port}/"
                f"{o.alerts_port} ({exc.strerror or exc}); pass --auth-port/--case-notes-port/"
                "--alerts-port (0 picks a free port)"
            ) from None

    def _start_simulator(self) -> None:
        o = self.options
        if o.rate <= 0:
            return
        # started before the simulator, in start()
        assert self.world is not None and self.standins is not None and self.queue_url is not None
        self.simulator = Simulator(
            self.world,
            self.store,
            self.sqs_client,
            self.queue_url,
            case_notes_url=self.standins.case_notes_url,
            alerts_url=self.standins.alerts_url,
            engine=self.engine,
            rate=o.rate,
            seed=f"{self.seed}:session{self.session}",
            poison_rate=o.poison_rate,
            max_queue_depth=o.max_queue_depth,
        )
        self.simulator.start()

    # --- configuration ----------------------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path.resolve()}"

    def env(self) -> dict[str, str]:
        """The configuration variables (README's configuration table) that point the project at this stack."""
        s = self.standins
        assert s is not None, "the stack is not started"
        assert self.queue_url is not None and self.dlq_url is not None and self.sqs_endpoint is not None
        return {
            "DELIUS_DATABASE_URL": self.database_url,
            "EVENTS_QUEUE_URL": self.queue_url,
            "EVENTS_DLQ_URL": self.dlq_url,
            "AWS_ENDPOINT_URL": self.sqs_endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": DUMMY_AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_AWS_KEY,
            "HMPPS_AUTH_URL": s.auth_url,
            "CLIENT_ID": s.client_id,
            "CLIENT_SECRET": s.client_secret,
            "CASE_NOTES_API_URL": s.case_notes_url,
            "ALERTS_API_URL": s.alerts_url,
            "DETAIL_URL_ALLOWLIST": f"{s.case_notes_url},{s.alerts_url}",
            "DELIUS_USERNAME": SERVICE_USERNAME,
            "DAGSTER_HOME": str(self.options.root),
        }

    @property
    def env_file(self) -> Path:
        return self.options.state / "stack.env"

    def write_env_file(self) -> Path:
        lines = [f"{k}={shlex.quote(v)}" for k, v in self.env().items()]
        self.env_file.write_text(
            "# Written by python -m integration.local; load with: set -a; . "
            f"{self.env_file}\n" + "\n".join(lines) + "\n"
        )
        return self.env_file

    @property
    def ui_url(self) -> str:
        return f"http://{self.options.host}:{self.options.dagster_port}"

    # --- dagster ----------------------------------------------------------------------------------------------
    def dagster_command(self) -> list[str]:
        exe = Path(sys.executable).with_name("dagster")
        base = [str(exe)] if exe.is_file() else [sys.executable, "-m", "dagster"]
        return base + ["dev", "-w", "workspace.yaml", "-h", self.options.host, "-p", str(self.options.dagster_port)]

    @property
    def dagster_log(self) -> Path:
        return self.options.state / "dagster.log"

    def dagster_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _REAL_AWS_SETTINGS}
        env.update(self.env())
        return env

    def start_dagster(self) -> subprocess.Popen:
        """``dagster dev`` in its own session / process group (so it can be stopped as a group), its output in
        ``dagster_log`` (the previous start's is kept as ``dagster.log.1``)."""
        log_path = self.dagster_log
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if log_path.exists():
            log_path.replace(log_path.with_name(log_path.name + ".1"))
        with open(log_path, "ab") as out:
            self._dagster = subprocess.Popen(
                self.dagster_command(),
                cwd=self.options.root,
                env=self.dagster_env(),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self._dagster

    def dagster_exit_code(self) -> int | None:
        """None while dagster dev runs (or was never started)."""
        return None if self._dagster is None else self._dagster.poll()

    def dagster_ready(self) -> bool:
        """Whether the UI answers and has loaded the code location (what an operator needs to start working)."""
        import requests

        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
        try:
            answer = requests.post(f"{self.ui_url}/graphql", json={"query": query}, timeout=2).json()
            entries = answer["data"]["workspaceOrError"]["locationEntries"]
        except Exception:  # noqa: BLE001 - not up yet
            return False
        return any(e["name"] == "integration" and e["loadStatus"] == "LOADED" for e in entries)

    def kill_dagster(self) -> None:
        """SIGKILL the whole dagster dev process group right away."""
        if self._dagster is not None:
            _signal_group(self._dagster.pid, signal.SIGKILL)

    def _stop_dagster(self) -> None:
        """A quiet stop: first let the work under way end (the simulator is already stopped: the queue empties and
        the run workers finish), so that no sensor tick is left holding run requests; then ask dagster dev itself to
        stop (it stops the daemon and the webserver before the code server); the group is signalled only if
        something is left, and killed only if that takes too long."""
        proc = self._dagster
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        if proc.poll() is None:
            self._wait_for_quiet(pgid, RUNS_FINISH_SECONDS)
            # Dagster treats SIGTERM like SIGINT: a graceful stop of the webserver, daemon and code servers.
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=DAGSTER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("dagster dev did not stop within %.0f s; killing its process group", DAGSTER_STOP_SECONDS)
                _signal_group(pgid, signal.SIGKILL)
        # What may be left of the group: a run worker launched at the last moment; it finishes, else it is stopped.
        deadline = time.monotonic() + RUNS_FINISH_SECONDS
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not group_alive(pgid):
                break
            _signal_group(pgid, sig)
            time.sleep(2)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL was sent
            pass
        self._dagster = None

    def _wait_for_quiet(self, pgid: int, timeout: float) -> None:
        """Until nothing waits on the events queue and no run worker runs, twice in a row a second apart (or
        ``timeout``)."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            quiet = quiet + 1 if not run_workers(pgid) and self._visible_messages() == 0 else 0
            time.sleep(1)

    def _visible_messages(self) -> int:
        if self.sqs_client is None or self.queue_url is None:
            return 0
        try:
            attributes = self.sqs_client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            return int(attributes["ApproximateNumberOfMessages"])
        except Exception:  # noqa: BLE001 - moto already gone: nothing more to wait for
            return 0

    # --- stop -------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything started, in reverse order; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        if self.simulator is not None:
            self.simulator.stop()
        self._stop_dagster()
        if self.standins is not None:
            self.standins.stop()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self.engine is not None:
            self.engine.dispose()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- reporting --------------------------------------------------------------------------------------------
    def banner(self) -> str:
        o, s, w = self.options, self.standins, self.world
        assert s is not None and w is not None, "the stack is not started"
        summary = w.summary()
        sim = (
            f"{o.rate:g} events/s, poison {o.poison_rate:.2%} of events, seed {self.seed}, session {self.session}"
            if self.simulator
            else "off"
        )
        lines = [
            "Local stack: prison case notes -> probation",
            (
                f"  Dagster UI   {self.ui_url}  (Dagster's own output: {self.dagster_log})"
                if o.dagster
                else "  Dagster      not started (--no-dagster)"
            ),
            f"  SQS (moto)   {self.sqs_endpoint}  queue {QUEUE_NAME}, DLQ {DLQ_NAME}",
            f"  Stand-ins    {s.auth_url}  {s.case_notes_url}  {s.alerts_url}",
            f"  Delius       {self.db_path}  ({summary['inDelius']} of {summary['people']} people, "
            f"{summary['unlinked']} not yet linked; {'loaded now' if self.loaded else 'reused'})",
            f"  Source data  {summary['caseNotes']} case notes, {summary['alerts']} alerts (seed {self.seed})",
            f"  Simulator    {sim}",
            f"  Environment  {self.env_file} (another shell: set -a; . {self.env_file})",
        ]
        return "\n".join(lines)


class ActivityReport:
    """Once a minute, one line of what the last minute did: events the simulator sent, contacts created, updated
    and failed (from the ``delius_contacts`` reports in the Dagster instance, as the UI counts them), the queues,
    runs that finished, and ERROR lines in Dagster's log. Counts only; every part is best effort."""

    ERROR_LINE = re.compile(rb" - ERROR - ")

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.since = time.time()
        self.sent = 0
        self.log_offset = 0
        self._instance: Any = None

    def _dagster_instance(self):
        if self._instance is None:
            import dagster as dg

            self._instance = dg.DagsterInstance.from_config(self.stack.env()["DAGSTER_HOME"])
        return self._instance

    def line(self) -> str:
        now = time.time()
        parts = []
        if self.stack.simulator is not None:
            sent = self.stack.simulator.counters["messages"]
            parts.append(f"{sent - self.sent} events sent")
            self.sent = sent
        parts += [self._contacts(now), self._queues(), self._runs(now), self._errors()]
        self.since = now
        return f"{datetime.now():%H:%M:%S} last minute: " + " | ".join(p for p in parts if p)

    def _contacts(self, now: float) -> str:
        try:
            import dagster as dg

            records = (
                self._dagster_instance()
                .fetch_materializations(
                    dg.AssetRecordsFilter(
                        asset_key=dg.AssetKey("delius_contacts"), after_timestamp=self.since, before_timestamp=now
                    ),
                    limit=10_000,
                )
                .records
            )
        except Exception:  # noqa: BLE001 - the instance is not there yet
            return ""
        totals = {"created": 0, "updated": 0, "failed": 0}
        for record in records:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            for name in totals:
                value = getattr(metadata.get(name), "value", 0)
                totals[name] += value if isinstance(value, int) else 0
        return (
            f"contacts {totals['created']} created, {totals['updated']} updated, {totals['failed']} failed "
            f"({len(records)} reports)"
        )

    def _queues(self) -> str:
        if self.stack.sqs_client is None:
            return ""
        try:
            depths = []
            for url in (self.stack.queue_url, self.stack.dlq_url):
                attrs = self.stack.sqs_client.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
                depths.append(
                    (int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"]))
                )
        except Exception:  # noqa: BLE001
            return ""
        (visible, in_flight), (dlq_visible, dlq_in_flight) = depths
        return f"queue {visible} waiting, {in_flight} in flight; DLQ {dlq_visible + dlq_in_flight}"

    def _runs(self, now: float) -> str:
        try:
            import dagster as dg

            instance = self._dagster_instance()
            after = datetime.fromtimestamp(self.since, tz=UTC)
            ok = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS], updated_after=after))
            failed = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=after))
        except Exception:  # noqa: BLE001
            return ""
        return f"runs {ok} succeeded, {failed} failed"

    def _errors(self) -> str:
        try:
            with open(self.stack.dagster_log, "rb") as f:
                f.seek(self.log_offset)
                chunk = f.read()
                self.log_offset = f.tell()
        except OSError:
            return ""
        errors = len(self.ERROR_LINE.findall(chunk))
        return f"{errors} ERROR lines in {self.stack.dagster_log.name}" if errors else ""


# --- command line -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m integration.local",
        description="Run the local stack in the foreground: moto SQS, stand-in HMPPS APIs, a SQLite Delius, the "
        "event simulator and dagster dev. Ctrl-C stops everything.",
    )
    p.add_argument(
        "--no-dagster",
        dest="dagster",
        action="store_false",
        help="start everything except dagster dev (print the environment and wait)",
    )
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, help="simulated events per second (0: no simulator)")
    p.add_argument("--people", type=int, default=None, help=f"people in the generated world (default {DEFAULT_PEOPLE})")
    p.add_argument("--seed", type=int, default=None, help=f"world seed (default {DEFAULT_SEED})")
    p.add_argument(
        "--poison-rate",
        type=float,
        default=DEFAULT_POISON_RATE,
        help="share of simulated events replaced by an unparseable message (0 disables)",
    )
    p.add_argument(
        "--max-queue-depth",
        type=int,
        default=DEFAULT_MAX_QUEUE_DEPTH,
        help="the simulator pauses while the queue holds this many messages (0: never)",
    )
    p.add_argument("--fresh", action="store_true", help="recreate the Delius database and world")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where delius.db, world.json and stack.env live (default: .local in the repo root)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--sqs-port", type=int, default=4566, help="moto SQS server port (0: any free port)")
    p.add_argument("--auth-port", type=int, default=9090, help="stand-in HMPPS Auth port (0: any free port)")
    p.add_argument("--case-notes-port", type=int, default=9091, help="stand-in Case Notes API port (0: any free port)")
    p.add_argument("--alerts-port", type=int, default=9092, help="stand-in Alerts API port (0: any free port)")
    p.add_argument("--dagster-port", type=int, default=3000, help="Dagster UI port")
    return p


def options_from_args(args: argparse.Namespace) -> StackOptions:
    return StackOptions(
        state_dir=args.state_dir,
        host=args.host,
        sqs_port=args.sqs_port,
        auth_port=args.auth_port,
        case_notes_port=args.case_notes_port,
        alerts_port=args.alerts_port,
        dagster_port=args.dagster_port,
        dagster=args.dagster,
        rate=args.rate,
        people=args.people,
        seed=args.seed,
        poison_rate=args.poison_rate,
        max_queue_depth=args.max_queue_depth or None,
        fresh=args.fresh,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The stack's own warnings; the libraries it uses (alembic via Dagster's instance, boto3...) stay quiet.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    stack = LocalStack(options_from_args(args))
    stop = threading.Event()
    signals_seen = 0

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal signals_seen
        signals_seen += 1
        stop.set()
        if signals_seen > 1:  # asked twice: no more waiting for a graceful stop
            stack.kill_dagster()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    code = 0
    started = time.monotonic()
    try:
        try:
            stack.start()
        except StackError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 2
        if args.dagster and not stop.is_set():
            stack.start_dagster()
        print(stack.banner(), flush=True)
        if args.dagster:
            print(f"{datetime.now():%H:%M:%S} starting Dagster...", flush=True)
        else:  # for another shell or a debugger: the variables, as in stack.env
            print("\n".join(f"{k}={shlex.quote(v)}" for k, v in stack.env().items()), flush=True)
            print(
                f"{datetime.now():%H:%M:%S} ready: the backing services (no Dagster). Ctrl-C stops everything.",
                flush=True,
            )
        ready = not args.dagster
        report = ActivityReport(stack)
        last_report = last_check = time.monotonic()
        while not stop.wait(0.5):
            exit_code = stack.dagster_exit_code()
            if exit_code is not None:
                print(
                    f"dagster dev exited with code {exit_code} (see {stack.dagster_log}); stopping the stack",
                    file=sys.stderr,
                    flush=True,
                )
                code = 1
                break
            if not ready and time.monotonic() - last_check >= 1:
                last_check = time.monotonic()
                if stack.dagster_ready():
                    ready = True
                    print(
                        f"{datetime.now():%H:%M:%S} ready: the Dagster UI is at {stack.ui_url} "
                        f"({time.monotonic() - started:.0f} s after start). Ctrl-C stops everything.",
                        flush=True,
                    )
                    report = ActivityReport(stack)
                    last_report = time.monotonic()
            if ready and time.monotonic() - last_report >= REPORT_SECONDS:
                last_report = time.monotonic()
                print(report.line(), flush=True)
    finally:
        print(f"{datetime.now():%H:%M:%S} stopping the local stack (runs under way finish first)...", flush=True)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"{datetime.now():%H:%M:%S} local stack stopped.", flush=True)
    return code
