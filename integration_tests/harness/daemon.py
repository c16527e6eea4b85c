"""Out-of-process parts for the tests and benchmarks that drive the real daemon path.

``dagster-daemon run -w workspace.yaml`` in its own process group (with its own DAGSTER_HOME), moto's or fauxqs's
SQS server as a subprocess, the stand-ins as a subprocess (seeded and faulted through ``/__admin/``), a TCP proxy that
can take the Delius database away, and the ``/proc`` walking needed to find (and SIGKILL) a run worker.

Every process is started with ``start_new_session=True`` and stopped by process group
(docs/dagster-notes.md §8: Dagster ignores SIGTERM from a script without job control otherwise). Callers stop
everything in ``finally`` blocks; the classes are context managers for that.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import requests

from integration_tests.fixtures.network import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REGION = "eu-west-2"


# --------------------------------------------------------------------------------------------- small helpers


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    interval: float = 0.5,
    diagnostics: Callable[[], str] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError with diagnostics after
    ``timeout`` seconds. Exceptions from the predicate count as "not yet" (a server may be restarting)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last one
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    extra = f"\nlast error: {type(last_error).__name__}: {last_error}" if last_error else ""
    if diagnostics is not None:
        try:
            extra += "\n" + diagnostics()
        except Exception as exc:  # noqa: BLE001
            extra += f"\n(diagnostics failed: {exc})"
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")


def start_group(
    args: list[str], *, cwd: Path | str | None = None, env: Mapping[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    """Start ``args`` as the leader of a new process group (session), output to ``log`` (or discarded)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log:
            out.close()


def stop_group(proc: subprocess.Popen | None, *, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal the process group of ``proc`` (its leader started it with a new session), escalate to SIGKILL."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    # The leader may exit before its children have finished shutting down (a run worker recording that its run
    # was interrupted): give the whole group the rest of ``timeout``, then SIGKILL whatever is left of it.
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot reap
        pass


def group_alive(pgid: int) -> bool:
    return any(_stat(pid) and _stat(pid)[2] == pgid for pid in _pids())


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, pgid) from /proc/<pid>/stat, or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return int(rest[1]), rest[0], int(rest[2])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_age(pid: int) -> float | None:
    """Seconds since the process started (from /proc), or None if it is gone."""
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat:
            children.setdefault(stat[0], []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_worker_pids(root: int) -> list[int]:
    """Run workers under ``root`` (the daemon): the code server starts each run in a multiprocessing "spawn" child
    (``... spawn_main ... --multiprocessing-fork``); a ``dagster api execute_run`` process counts too."""
    workers = []
    for pid in descendants(root):
        line = cmdline(pid)
        stat = _stat(pid)
        if stat is None or stat[1] == "Z":
            continue
        if ("spawn_main" in line and "multiprocessing-fork" in line) or "api execute_run" in line:
            workers.append(pid)
    return workers


# --------------------------------------------------------------------------------------------- Dagster


def prepare_instance(base: Path, instance_yaml: Path = ROOT / "dagster.yaml") -> tuple[Path, Path]:
    """(DAGSTER_HOME with a copy of ``instance_yaml`` as dagster.yaml, a working directory with workspace.yaml)."""
    home, workdir = base / "dagster_home", base / "project"
    home.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(instance_yaml, home / "dagster.yaml")
    shutil.copy(ROOT / "workspace.yaml", workdir / "workspace.yaml")
    return home, workdir


def project_env(
    *,
    delius_url: str,
    queue_url: str,
    sqs_endpoint: str,
    auth_url: str,
    client_id: str,
    client_secret: str,
    case_notes_url: str,
    alerts_url: str,
    dagster_home: Path | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Only the configuration variables of README.md (plus PATH, local AWS credentials, DAGSTER_HOME and ``extra``)."""
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "DELIUS_DATABASE_URL": delius_url,
        "EVENTS_QUEUE_URL": queue_url,
        "AWS_ENDPOINT_URL": sqs_endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "HMPPS_AUTH_URL": auth_url,
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": client_secret,
        "CASE_NOTES_API_URL": case_notes_url,
        "ALERTS_API_URL": alerts_url,
    }
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    env.update(extra or {})
    return env


def stack_env(sqs: Any, standins: Any, delius: Any, **kwargs: Any) -> dict[str, str]:
    """``project_env`` for the test session's parts: the SQS fixture, the stand-ins and a Delius engine."""
    return project_env(
        delius_url=delius.url.render_as_string(hide_password=False),
        queue_url=sqs.queue_url,
        sqs_endpoint=sqs.endpoint_url,
        auth_url=standins.auth_url,
        client_id=standins.client_id,
        client_secret=standins.client_secret,
        case_notes_url=standins.case_notes_url,
        alerts_url=standins.alerts_url,
        **kwargs,
    )


class DaemonProcess:
    """``dagster-daemon run -w workspace.yaml`` in ``workdir`` as a process group; restartable on the same home."""

    def __init__(self, workdir: Path, env: Mapping[str, str], log: Path):
        self.workdir, self.env, self.log = workdir, dict(env), log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> DaemonProcess:
        with open(self.log, "ab") as out:
            out.write(f"\n===== daemon start {self.starts + 1} at {time.strftime('%H:%M:%S')} =====\n".encode())
        self.proc = start_group(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=self.workdir, env=self.env, log=self.log
        )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the process group (daemon, code server, run workers), SIGKILL what is left after ``timeout``."""
        proc, self.proc = self.proc, None
        stop_group(proc, timeout=timeout)

    def restart(self, timeout: float = 30) -> None:
        self.stop(timeout)
        self.start()

    def workers(self) -> list[int]:
        return run_worker_pids(self.pid) if self.alive() else []

    def tail(self, chars: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------- SQS servers


class SqsServer:
    """A local SQS-compatible server in its own process group: ``moto`` (moto_server) or ``fauxqs`` (Node)."""

    def __init__(self, kind: str = "moto", *, fauxqs_dir: Path | None = None, log: Path | None = None):
        if kind not in ("moto", "fauxqs"):
            raise ValueError("kind is moto or fauxqs")
        self.kind, self.fauxqs_dir, self.log = kind, fauxqs_dir, log
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._script: Path | None = None

    def start(self, timeout: float = 30) -> SqsServer:
        if self.kind == "moto":
            args = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        else:
            module = find_fauxqs(self.fauxqs_dir)
            # Its own CLI listens on every interface (docs/dagster-notes.md §8): a few lines of Node bind it to
            # 127.0.0.1.
            self._script = Path(os.environ.get("TMPDIR", "/tmp")) / f"fauxqs-{os.getpid()}-{self.port}.mjs"
            self._script.write_text(
                f"import {{ buildApp }} from {json.dumps(str(module))};\n"
                f"const app = buildApp({{ logger: false, host: 'localhost', defaultRegion: '{REGION}' }});\n"
                f"await app.listen({{ host: '127.0.0.1', port: {self.port} }});\n"
            )
            args = ["node", str(self._script)]
        self.proc = start_group(args, log=self.log)
        wait_until(self._answers, timeout, f"{self.kind} SQS server on port {self.port}", interval=0.2)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}")
        self.client().list_queues()
        return True

    def client(self, **config: Any):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "sqs",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, **config),
        )

    def create_queue_pair(self, name: str, *, visibility_timeout: int = 30, max_receive_count: int = 3):
        """A queue with a dead-letter queue (RedrivePolicy), as production and the test fixtures have."""
        from integration_tests.fixtures.sqs import create_queue_pair

        return create_queue_pair(
            self.client(),
            self.endpoint_url,
            name,
            visibility_timeout=visibility_timeout,
            max_receive_count=max_receive_count,
        )

    def stop(self) -> None:
        stop_group(self.proc, timeout=10)
        self.proc = None
        if self._script is not None:
            self._script.unlink(missing_ok=True)

    def __enter__(self) -> SqsServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def find_fauxqs(directory: Path | None = None) -> Path:
    """``dist/app.js`` of an npm-installed fauxqs 1.x (``npm install --prefix DIR fauxqs@1``)."""
    candidates = [directory] if directory else []
    candidates += [Path(p) for p in (os.environ.get("FAUXQS_DIR"),) if p]
    candidates += [Path.home() / ".cache" / "pcn2p-fauxqs"]
    for base in candidates:
        for app in (base / "node_modules" / "fauxqs" / "dist" / "app.js", base / "dist" / "app.js"):
            if app.is_file():
                return app
    raise FileNotFoundError(
        "fauxqs not found: npm install --prefix ~/.cache/pcn2p-fauxqs fauxqs@1 (or pass its directory / set FAUXQS_DIR)"
    )


# --------------------------------------------------------------------------------------------- stand-ins


class StandInsProcess:
    """``python -m integration.local.standins`` on free ports, in its own process (no GIL shared with the caller),
    seeded and faulted through ``/__admin/``."""

    def __init__(self, *, log: Path | None = None, client_secret: str | None = None):
        self.ports = {"auth": free_port(), "case_notes": free_port(), "alerts": free_port()}
        self.client_id = "prison-case-notes-to-probation"
        self.client_secret = client_secret or secrets.token_urlsafe(16)
        self.auth_url = f"http://127.0.0.1:{self.ports['auth']}/auth"
        self.case_notes_url = f"http://127.0.0.1:{self.ports['case_notes']}"
        self.alerts_url = f"http://127.0.0.1:{self.ports['alerts']}"
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()

    def start(self, timeout: float = 30) -> StandInsProcess:
        self.proc = start_group(
            [
                sys.executable,
                "-m",
                "integration.local.standins",
                "--host",
                "127.0.0.1",
                "--auth-port",
                str(self.ports["auth"]),
                "--case-notes-port",
                str(self.ports["case_notes"]),
                "--alerts-port",
                str(self.ports["alerts"]),
                "--client-id",
                self.client_id,
                "--client-secret",
                self.client_secret,
            ],
            cwd=ROOT,
            log=self.log,
        )
        wait_until(
            lambda: all(
                self.http.get(f"{url}/__admin/health", timeout=2).ok
                for url in (self.case_notes_url, self.alerts_url, self.auth_url.rsplit("/auth", 1)[0])
            ),
            timeout,
            "the stand-ins",
            interval=0.2,
        )
        return self

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"{self.case_notes_url}/__admin/{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json() if response.content else None

    def put_case_notes(self, notes: list[dict]) -> None:
        for i in range(0, len(notes), 1000):
            self._admin("PUT", "case-notes", notes[i : i + 1000])

    def put_alerts(self, alerts: list[dict]) -> None:
        for i in range(0, len(alerts), 1000):
            self._admin("PUT", "alerts", alerts[i : i + 1000])

    def set_fault(self, route: str, **spec: Any) -> None:
        self._admin("PUT", f"faults/{route}", spec)

    def clear_faults(self) -> None:
        self._admin("DELETE", "faults")

    def serve(self, url: str, body: str, *, status: int = 200) -> None:
        """Answer requests for ``url`` (or a path) with ``body`` verbatim (``StandIns.serve``), until a reset."""
        from urllib.parse import unquote, urlsplit

        path = unquote(urlsplit(url).path) if "://" in url else url
        self._admin("PUT", "answers", {"path": path, "body": body, "status": status})

    def request_counts(self) -> dict[str, int]:
        return self._admin("GET", "requests")["counts"]

    def stop(self) -> None:
        stop_group(self.proc, timeout=10)
        self.proc = None

    def __enter__(self) -> StandInsProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """127.0.0.1:<port> -> ``target``; ``down()`` drops every connection and refuses new ones until ``up()``.

    Used to take the Delius database away from the pipeline for a while (point DELIUS_DATABASE_URL at the proxy).
    """

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._down = False
        self._stop = threading.Event()
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def url_for(self, url: str) -> str:
        """``url`` (an SQLAlchemy URL) with host and port replaced by the proxy's."""
        from sqlalchemy.engine import make_url

        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def down(self) -> None:
        with self._lock:
            self._down = True
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            _close(*pair)

    def up(self) -> None:
        with self._lock:
            self._down = False

    @property
    def is_down(self) -> bool:
        return self._down

    def stop(self) -> None:
        self._stop.set()
        self.down()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                down = self._down
            if down:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            self.accepted += 1
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        a, b = pair
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.5)
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _close(a, b)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------- machine


def machine_info() -> dict[str, str]:
    """nproc, RAM, CPU model and load, for benchmark reports."""
    info = {"nproc": str(os.cpu_count())}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    info["load"] = load_average()
    return info


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def chunks(items: Iterable, size: int) -> list[list]:
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]
