"""The idle daemon's CPU, per process: where ``--idle`` of pipeline_benchmark.py says how much, this says who.

Starts fauxqs (an empty events queue and its DLQ), the stand-ins, a SQLite Delius file and ``dagster-daemon run -w
workspace.yaml`` (its own ``DAGSTER_HOME`` with a copy of the root ``dagster.yaml``, or of ``--instance``), waits
``--warm`` seconds (start, first ticks, the code server's imports), then samples ``/proc`` for ``--seconds``: CPU
seconds per hour of the daemon, of each code server and of everything else in the daemon's tree (reaped children
included). No event is ever sent, so no consumer run starts: this is the queue-idle state of docs/performance.md.

    .venv/bin/python bench/idle_probe.py                         # the shipped dagster.yaml, SQLite instance storage
    .venv/bin/python bench/idle_probe.py --postgres              # the same with PostgreSQL instance storage
    .venv/bin/python bench/idle_probe.py --set run_queue.dequeue_interval_seconds=5 --py-spy out

``--postgres`` adds a ``storage: postgres`` section (a fresh database on the test server, dropped afterwards), the
production shape of deploy/dagster.yaml; the PostgreSQL server's own CPU is not in the daemon's tree and is
reported from the postmaster's reaped children, which counts every other client of that server too (read it only on
a quiet server). ``--set KEY.PATH=VALUE`` edits the instance copy (YAML values). ``--py-spy PREFIX`` records a raw
profile of the daemon and the code server meanwhile (``pip install py-spy``; not a project dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from integration.delius.engine import create_delius_engine  # noqa: E402
from integration.delius.reference_data import seed_reference_data  # noqa: E402
from integration.delius.schema import create_schema  # noqa: E402
from integration_tests.fixtures.postgres import DEFAULT_ADMIN_URL, create_database, drop_database  # noqa: E402
from integration_tests.harness.daemon import (  # noqa: E402
    BIN,
    DaemonProcess,
    SqsServer,
    StandInsProcess,
    cmdline,
    descendants,
    load_average,
    prepare_instance,
    project_env,
)


def cpu_of(pid: int) -> float:
    """User + system seconds of ``pid`` and of the children it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def role(pid: int, daemon: int) -> str:
    line = cmdline(pid)
    if pid == daemon:
        return "daemon"
    if "api grpc" in line or "code-server" in line or "grpc" in line:
        return "code server"
    if "multiprocessing-fork" in line or "execute_run" in line:
        return "run worker"
    return "other"


def postmaster_cpu() -> float | None:
    """CPU seconds of the local PostgreSQL server's postmaster and its reaped backends (every client's)."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        line = cmdline(pid)
        if ("postgres -D" in line or line.endswith("postgres")) and "postgres:" not in line:
            try:
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == 1 or "bin/postgres" in line:
                return cpu_of(pid)
    return None


def edit(instance: dict, assignment: str) -> None:
    path, _, raw = assignment.partition("=")
    keys = path.split(".")
    node = instance
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = yaml.safe_load(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", type=float, default=90, help="seconds after the daemon's start before sampling")
    parser.add_argument("--seconds", type=float, default=180, help="seconds sampled")
    parser.add_argument("--instance", type=Path, default=ROOT / "dagster.yaml", help="the instance file to copy")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="edit the copy")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instance storage (a fresh database)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="for the daemon")
    parser.add_argument("--py-spy", dest="py_spy", default=None, metavar="PREFIX", help="raw profiles to PREFIX.*")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    admin_url = os.environ.get("TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL
    tmp = Path(tempfile.mkdtemp(prefix="pcn2p-idle-"))
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": load_average(), "set": args.set}
    with ExitStack() as stack:
        sqs = stack.enter_context(SqsServer("fauxqs", log=tmp / "sqs.log"))
        pair = sqs.create_queue_pair("idle-events", visibility_timeout=60)
        standins = stack.enter_context(StandInsProcess(log=tmp / "standins.log"))
        db_url = f"sqlite:///{tmp / 'delius.db'}"
        engine = create_delius_engine(db_url)
        create_schema(engine)
        seed_reference_data(engine)
        engine.dispose()
        home, workdir = prepare_instance(tmp / "daemon", args.instance)
        instance = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
        extra = dict(i.partition("=")[::2] for i in args.env)
        if args.postgres:
            pg_url = create_database(admin_url, prefix="pcn2p_idle")
            stack.callback(drop_database, admin_url, pg_url)
            instance["storage"] = {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
            extra["DAGSTER_PG_URL"] = pg_url
        for assignment in args.set:
            edit(instance, assignment)
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance, sort_keys=False))
        env = project_env(
            delius_url=db_url,
            queue_url=pair.queue_url,
            sqs_endpoint=sqs.endpoint_url,
            auth_url=standins.auth_url,
            client_id=standins.client_id,
            client_secret=standins.client_secret,
            case_notes_url=standins.case_notes_url,
            alerts_url=standins.alerts_url,
            dagster_home=home,
            extra=extra,
        )
        daemon = stack.enter_context(DaemonProcess(workdir, env, tmp / "daemon.log").start())
        time.sleep(args.warm)
        if not daemon.alive():
            raise RuntimeError("the daemon exited:\n" + daemon.tail())
        spies = []
        if args.py_spy:
            for pid in [daemon.pid] + descendants(daemon.pid):
                name = role(pid, daemon.pid).replace(" ", "_")
                if name in ("daemon", "code_server"):
                    spies.append(
                        subprocess.Popen(
                            [str(BIN / "py-spy"), "record", "-p", str(pid), "-f", "raw", "-r", "50", "--idle"]
                            + ["-d", str(int(args.seconds)), "-o", f"{args.py_spy}.{name}.{pid}.txt"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
        pm0 = postmaster_cpu() if args.postgres else None
        start = {pid: cpu_of(pid) for pid in [daemon.pid] + descendants(daemon.pid)}
        t0 = time.monotonic()
        time.sleep(args.seconds)
        hours = (time.monotonic() - t0) / 3600
        pm1 = postmaster_cpu() if args.postgres else None
        per_role: dict[str, float] = {}
        for pid in [daemon.pid] + descendants(daemon.pid):
            used = cpu_of(pid) - start.get(pid, 0.0)
            name = role(pid, daemon.pid)
            per_role[name] = per_role.get(name, 0.0) + used
        for spy in spies:
            spy.wait(timeout=60)
        result.update(
            {
                "warm_s": args.warm,
                "seconds": args.seconds,
                "storage": "postgres" if args.postgres else "sqlite",
                "cpu_s_per_hour": {k: round(v / hours, 1) for k, v in sorted(per_role.items())},
                "cpu_s_per_hour_total": round(sum(per_role.values()) / hours, 1),
                "load_after": load_average(),
            }
        )
        if pm0 is not None and pm1 is not None:
            result["postgres_server_cpu_s_per_hour_all_clients"] = round((pm1 - pm0) / hours, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
