"""A backfill of several people launched the way an operator does (GraphQL, as the UI and the CLI do): a
``noms_backfill_job`` run under the run queue's backfill limit, then launched again: the second run changes
nothing. And the DLQ commands through the same webserver."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from integration.cli import redrive
from integration.cli.backfill import launch_backfill, main
from integration.cli.webserver import LOCATION, Webserver
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration_tests.harness.daemon import (
    free_port,
    prepare_instance,
    project_env,
    start_group,
    stop_group,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.daemon, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dagster_dev(tmp_path, sqs, standins, delius_pg):
    home, _ = prepare_instance(tmp_path)
    port = free_port()
    env = project_env(
        delius_url=delius_pg.url.render_as_string(hide_password=False),
        queue_url=sqs.queue_url,
        sqs_endpoint=sqs.endpoint_url,
        auth_url=standins.auth_url,
        client_id=standins.client_id,
        client_secret=standins.client_secret,
        case_notes_url=standins.case_notes_url,
        alerts_url=standins.alerts_url,
        dagster_home=home,
    )
    log = tmp_path / "dagster-dev.log"
    proc = start_group(
        ["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, log=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: requests.get(f"{url}/server_info", timeout=2).ok,
            90,
            "dagster dev to answer",
            diagnostics=lambda: log.read_text()[-3000:],
        )
        yield url
    finally:
        stop_group(proc)


def test_backfill_of_several_people_through_the_run_queue_and_rerun(dagster_dev, standins, delius_pg, capsys):
    people = [f"A50{n:02d}AA" for n in range(6)]
    for n, noms in enumerate(people):
        if n < 5:
            add_person(delius_pg, f"X5000{n:02d}", noms)
        for kind in ("KS", "KE"):
            standins.add_case_note(noms, type="KA", sub_type=kind)
        standins.add_alert(noms, code="VI")

    server = Webserver(dagster_dev)
    [run_id] = launch_backfill(server, people)
    assert server.wait([run_id], timeout=240) == {run_id: "SUCCESS"}

    def totals():
        with delius_pg.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(m.contact)).scalar_one(),
                conn.execute(select(func.count()).select_from(m.audited_interaction)).scalar_one(),
            )

    assert totals() == (15, 15)  # 5 people in Delius x (2 case notes + 1 alert); the sixth is not in Delius

    # The command-line entry point, launched again over the same people, waits and changes nothing.
    assert main(["--url", dagster_dev, "--wait", *people]) == 0
    out = capsys.readouterr().out
    assert "noms_backfill_job run " in out and f"{dagster_dev}/runs/" in out and ": SUCCESS" in out
    assert totals() == (15, 15)

    # The DLQ commands: a peek run, its id and link printed.
    assert redrive.main(["--url", dagster_dev, "--peek", "--wait"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("peek_dlq_job run ") and ": SUCCESS" in out


SCHEDULES = """
query Schedules($selector: RepositorySelector!) {
  schedulesOrError(repositorySelector: $selector) {
    __typename
    ... on Schedules { results { name cronSchedule executionTimezone scheduleState { status }
                                 futureTicks(limit: 1) { results { timestamp } } } }
  }
}"""


def test_the_ui_lists_the_schedules_running_with_their_next_tick(dagster_dev):
    """What the UI's Schedules page asks the webserver: every schedule RUNNING by default, with a next tick."""
    import time as _time

    server = Webserver(dagster_dev)
    selector = {"repositoryLocationName": LOCATION, "repositoryName": server.repository()}
    answer = server.graphql(SCHEDULES, {"selector": selector})["schedulesOrError"]
    assert answer["__typename"] == "Schedules"
    schedules = {s["name"]: s for s in answer["results"]}
    assert set(schedules) == {"dlq_redrive_schedule", "reconciliation_schedule", "run_housekeeping_schedule"}
    assert schedules["dlq_redrive_schedule"]["cronSchedule"] == "30 5 * * 1-5"
    for schedule in schedules.values():
        assert schedule["executionTimezone"] == "Europe/London"
        assert schedule["scheduleState"]["status"] == "RUNNING"
        [tick] = schedule["futureTicks"]["results"]
        assert _time.time() < tick["timestamp"] < _time.time() + 8 * 86400
