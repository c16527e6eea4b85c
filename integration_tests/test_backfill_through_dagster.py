"""A backfill of several people launched the way an operator does (GraphQL, as the UI and the CLI do), run by the
daemon with the multi-run backfill policy, then launched again: the second run changes nothing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from integration.backfill_cli import launch_backfill, main, wait_for_backfill
from integration.delius import models as m
from integration.delius.reference_data import add_person

pytestmark = [pytest.mark.postgres, pytest.mark.daemon, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path, sqs, standins, delius_pg):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PYTEST"))},
           "DAGSTER_HOME": str(home),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DELIUS_DATABASE_URL": delius_pg.url.render_as_string(hide_password=False),
           "EVENTS_QUEUE_URL": sqs.queue_url, "AWS_ENDPOINT_URL": sqs.endpoint_url, "AWS_REGION": "eu-west-2",
           "HMPPS_AUTH_URL": standins.auth_url, "CLIENT_ID": standins.client_id,
           "CLIENT_SECRET": standins.client_secret, "CASE_NOTES_API_URL": standins.case_notes_url,
           "ALERTS_API_URL": standins.alerts_url}
    log = tmp_path / "dagster-dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        else:
            raise AssertionError("dagster dev did not answer:\n" + log.read_text()[-3000:])
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_backfill_of_several_people_through_the_backfill_daemon_and_rerun(dagster_dev, standins, delius_pg, capsys):
    people = [f"A50{n:02d}AA" for n in range(6)]
    for n, noms in enumerate(people):
        if n < 5:
            add_person(delius_pg, f"X5000{n:02d}", noms)
        for kind in ("KS", "KE"):
            standins.add_case_note(noms, type="KA", sub_type=kind)
        standins.add_alert(noms, code="VI")

    backfill_id = launch_backfill(dagster_dev, people)
    assert wait_for_backfill(dagster_dev, backfill_id, timeout=240) == "COMPLETED_SUCCESS"

    def totals():
        with delius_pg.connect() as conn:
            return (conn.execute(select(func.count()).select_from(m.contact)).scalar_one(),
                    conn.execute(select(func.count()).select_from(m.audited_interaction)).scalar_one())

    assert totals() == (15, 15)      # 5 people in Delius x (2 case notes + 1 alert); the sixth is not in Delius

    # The command-line entry point, launched again over the same people, waits and changes nothing.
    assert main(["--url", dagster_dev, "--wait", *people]) == 0
    assert "COMPLETED_SUCCESS" in capsys.readouterr().out
    assert totals() == (15, 15)
