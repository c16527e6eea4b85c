"""The production profile (deploy/): PostgreSQL instance storage, the run queue limits, the code location over gRPC.

The daemon test runs the production shape on one machine: ``dagster api grpc`` serving the code location,
``dagster-daemon run -w deploy/workspace.yaml`` with ``DAGSTER_HOME`` holding ``deploy/dagster.yaml`` and
``DAGSTER_PG_URL`` pointing at a fresh PostgreSQL database; only the run launcher differs (the default one here,
``K8sRunLauncher`` in production). The daemon also ticks ``dlq_redrive_schedule`` (RUNNING by default; every minute
here through ``DLQ_REDRIVE_CRON``), whose run brings a dead-lettered event back to the queue, where the consumer
writes its contact.
"""

from __future__ import annotations

import shutil
import socket

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text

from integration.core.messages import FAILURE_REASON
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.local import event_factory as ev
from integration_tests.fixtures.postgres import create_database, drop_database
from integration_tests.harness.daemon import (
    BIN,
    ROOT,
    DaemonProcess,
    free_port,
    project_env,
    start_group,
    stop_group,
    wait_until,
)

DEPLOY = ROOT / "deploy"


def test_deploy_instance_keeps_the_local_run_queue_limits_and_uses_postgres(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    deploy = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert deploy["concurrency"] == local["concurrency"]
    assert deploy["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert deploy["run_monitoring"]["enabled"] and deploy["run_retries"]["enabled"]
    assert deploy["sensors"]["use_threads"] and deploy["retention"]["sensor"]["purge_after_days"]["skipped"] == 1

    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    config, _ = dagster_instance_config(str(tmp_path))  # validates against Dagster's schema, connects to nothing
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["location_name"] == "integration"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.postgres
@pytest.mark.sqs
@pytest.mark.daemon
def test_daemon_with_postgres_instance_storage_and_a_grpc_code_location(
    tmp_path, postgres_admin_url, sqs, standins, delius_pg
):
    add_person(delius_pg, "X400001", "A4000AA")
    notes = [
        standins.add_case_note("A4000AA", type="KA", sub_type="KS", text=f"production profile {n}") for n in range(3)
    ]
    alert = standins.add_alert("A4000AA", code="VI", prison_code="LEI")
    # The third note's event failed during an outage that is over: it waits in the DLQ for the scheduled redrive.
    sqs.events_queue().send(
        ev.case_note_event_for(notes[2], case_notes_url=standins.case_notes_url),
        {FAILURE_REASON: "case notes API answered HTTP 503"},
        queue_url=sqs.dlq_url,
    )

    dagster_db = create_database(postgres_admin_url, prefix="pcn2p_dagster")
    home, workdir = tmp_path / "dagster_home", tmp_path / "project"
    home.mkdir()
    workdir.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    shutil.copy(DEPLOY / "workspace.yaml", workdir / "workspace.yaml")
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
        extra={
            "DAGSTER_PG_URL": dagster_db,
            "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
            "DAGSTER_CODE_SERVER_PORT": str(port),
            "CONSUMER_IDLE_SECONDS": "5",
            "DLQ_REDRIVE_CRON": "* * * * *",
        },
    )
    code_server = daemon = None
    try:
        code_server = start_group(
            [
                str(BIN / "dagster"),
                "api",
                "grpc",
                "-m",
                "integration.definitions",
                "--location-name",
                "integration",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=workdir,
            env=env,
            log=tmp_path / "code_server.log",
        )
        for note in notes[:2]:
            sqs.client.send_message(
                QueueUrl=sqs.queue_url, MessageBody=ev.case_note_event_for(note, case_notes_url=standins.case_notes_url)
            )
        sqs.client.send_message(
            QueueUrl=sqs.queue_url, MessageBody=ev.alert_event_for(alert, alerts_url=standins.alerts_url)
        )
        wait_until(
            lambda: _listening(port),
            60,
            "the code server",
            diagnostics=lambda: (tmp_path / "code_server.log").read_text()[-3000:],
        )
        daemon = DaemonProcess(workdir, env, tmp_path / "daemon.log").start()

        def contacts() -> int:
            with delius_pg.connect() as conn:
                return conn.execute(select(func.count()).select_from(m.contact)).scalar_one()

        def diagnostics() -> str:
            return daemon.tail() + "\n--- code server ---\n" + (tmp_path / "code_server.log").read_text()[-3000:]

        def scheduled_redrives() -> list[str]:
            engine = create_engine(dagster_db)
            try:
                with engine.connect() as conn:
                    return list(
                        conn.execute(
                            text(
                                "select r.status from runs r join run_tags t on t.run_id = r.run_id "
                                "where r.pipeline_name = 'redrive_dlq_job' and t.key = 'dagster/schedule_name' "
                                "and t.value = 'dlq_redrive_schedule'"
                            )
                        ).scalars()
                    )
            finally:
                engine.dispose()

        wait_until(lambda: contacts() >= 3, 90, "the queue's 3 events in Delius", diagnostics=diagnostics)
        # The scheduler ticks on the minute: the redrive runs within a minute of the daemon's start.
        wait_until(
            lambda: (
                "SUCCESS" in scheduled_redrives()
                and contacts() == 4
                and sqs.depth() == 0
                and sqs.depth(sqs.dlq_url) == 0
            ),
            100,
            "a scheduled redrive run, the redriven event in Delius and both queues empty",
            diagnostics=diagnostics,
        )
    finally:
        if daemon is not None:
            daemon.stop()
        stop_group(code_server, timeout=20)

    try:
        engine = create_engine(dagster_db)
        with engine.connect() as conn:
            runs = conn.execute(text("select pipeline_name, status from runs")).all()
            events = conn.execute(text("select count(*) from event_logs")).scalar_one()
            ticks = conn.execute(text("select count(*) from job_ticks")).scalar_one()
        engine.dispose()
    finally:
        drop_database(postgres_admin_url, dagster_db)
    assert {("prison_events_job", "SUCCESS"), ("redrive_dlq_job", "SUCCESS")} <= {
        (name, status) for name, status in runs
    }
    assert events > 0 and ticks > 0  # event logs and sensor ticks in PostgreSQL too
    assert not (home / "history").exists() and not (home / "schedules").exists()  # nothing went to SQLite
