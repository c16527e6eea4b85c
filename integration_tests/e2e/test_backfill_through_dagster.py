"""A backfill of several people launched the way an operator does (GraphQL, as the UI and the CLI do), run by the
daemon with the multi-run backfill policy, then launched again: the second run changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from integration.cli.backfill import launch_backfill, main, wait_for_backfill
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration_tests.harness.daemon import free_port, prepare_instance, project_env, start_group, stop_group, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.daemon, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dagster_dev(tmp_path, sqs, standins, delius_pg):
    home, _ = prepare_instance(tmp_path)
    port = free_port()
    env = project_env(delius_url=delius_pg.url.render_as_string(hide_password=False), queue_url=sqs.queue_url,
                      sqs_endpoint=sqs.endpoint_url, auth_url=standins.auth_url, client_id=standins.client_id,
                      client_secret=standins.client_secret, case_notes_url=standins.case_notes_url,
                      alerts_url=standins.alerts_url, dagster_home=home)
    log = tmp_path / "dagster-dev.log"
    proc = start_group(["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT,
                       env=env, log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/server_info", timeout=2).ok, 90, "dagster dev to answer",
                   diagnostics=lambda: log.read_text()[-3000:])
        yield url
    finally:
        stop_group(proc)


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

    from integration.cli.backfill import LOCATION, _graphql, wait_for_code_location

    selector = {"repositoryLocationName": LOCATION, "repositoryName": wait_for_code_location(dagster_dev)}
    answer = _graphql(dagster_dev, SCHEDULES, {"selector": selector})["schedulesOrError"]
    assert answer["__typename"] == "Schedules"
    schedules = {s["name"]: s for s in answer["results"]}
    assert set(schedules) == {"dlq_redrive_schedule", "reconciliation_schedule", "run_housekeeping_schedule"}
    assert schedules["dlq_redrive_schedule"]["cronSchedule"] == "30 5 * * 1-5"
    for schedule in schedules.values():
        assert schedule["executionTimezone"] == "Europe/London"
        assert schedule["scheduleState"]["status"] == "RUNNING"
        [tick] = schedule["futureTicks"]["results"]
        assert _time.time() < tick["timestamp"] < _time.time() + 8 * 86400
