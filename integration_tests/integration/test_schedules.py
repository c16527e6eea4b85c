"""The schedules as the daemon sees them (crons, time zone, next ticks, running by default), and the scheduled DLQ
redrive evaluated and run through Dagster against moto's SQS server, with its report to the webhook stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from integration.constants import PARKED_TAG
from integration.core.messages import REDRIVE_COUNT, QueueMessage
from integration.definitions import defs
from integration.defs.dlq.jobs import redrive_dlq_job
from integration.defs.dlq.schedules import DEFAULT_DLQ_REDRIVE_CRON, dlq_redrive_schedule
from integration.defs.dlq.sensors import dlq_redrive_report_sensor
from integration.defs.reconciliation.schedules import reconciliation_schedule
from integration.local import event_factory as ev
from integration.resources import EventsQueueResource, Notifier
from integration.settings import cron

LONDON = ZoneInfo("Europe/London")


def next_ticks(schedule: dg.ScheduleDefinition, after: datetime, count: int = 2) -> list[datetime]:
    ticks = cron_string_iterator(after.timestamp(), schedule.cron_schedule, schedule.execution_timezone)
    return [next(ticks).astimezone(UTC) for _ in range(count)]


def test_schedules_and_sensors_load_running_by_default_with_their_next_ticks():
    dg.Definitions.validate_loadable(defs)
    redrive = defs.resolve_schedule_def("dlq_redrive_schedule")
    nightly = defs.resolve_schedule_def("reconciliation_schedule")
    assert (redrive.cron_schedule, redrive.execution_timezone, redrive.job_name) == (
        "30 5 * * 1-5",
        "Europe/London",
        "redrive_dlq_job",
    )
    assert (nightly.cron_schedule, nightly.execution_timezone, nightly.job_name) == (
        "0 2 * * *",
        "Europe/London",
        "reconciliation_job",
    )
    assert redrive.default_status is nightly.default_status is dg.DefaultScheduleStatus.RUNNING
    for name in ("run_failure_notification_sensor", "dlq_redrive_report_sensor", "reconciliation_repair_sensor"):
        assert defs.resolve_sensor_def(name).default_status is dg.DefaultSensorStatus.RUNNING

    friday_evening = datetime(2026, 7, 3, 18, 0, tzinfo=LONDON)  # summer time: London is UTC+1
    assert next_ticks(redrive, friday_evening) == [
        datetime(2026, 7, 6, 4, 30, tzinfo=UTC),
        datetime(2026, 7, 7, 4, 30, tzinfo=UTC),
    ]
    assert next_ticks(nightly, friday_evening, 1) == [datetime(2026, 7, 4, 1, 0, tzinfo=UTC)]
    winter_friday = datetime(2026, 11, 6, 6, 0, tzinfo=LONDON)
    assert next_ticks(redrive, winter_friday, 1) == [datetime(2026, 11, 9, 5, 30, tzinfo=UTC)]


def test_the_operations_guide_lists_every_schedule_and_sensor_with_its_default_and_its_off_switch():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = guide.split("## 10. What runs by default and how to turn it off", 1)[1]
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[1:-1]
        for line in section.splitlines()
        if line.startswith("| `")
    }
    repository = defs.get_repository_def()
    defaults = {s.name: s.default_status.value for s in repository.schedule_defs}
    defaults.update({s.name: s.default_status.value for s in repository.sensor_defs})
    assert set(rows) == set(defaults)
    for name, (_, kind, default, _, _, off) in rows.items():
        assert default.strip().startswith(defaults[name]), name
        assert f"dagster {'schedule' if 'schedule' in kind else 'sensor'} stop {name}" in off, name


def test_crons_come_from_the_environment_and_a_bad_one_falls_back_to_the_default(monkeypatch):
    monkeypatch.setenv("DLQ_REDRIVE_CRON", "0 6 * * 1-5")
    assert cron("DLQ_REDRIVE_CRON", DEFAULT_DLQ_REDRIVE_CRON) == "0 6 * * 1-5"
    monkeypatch.setenv("DLQ_REDRIVE_CRON", "every morning")
    assert cron("DLQ_REDRIVE_CRON", DEFAULT_DLQ_REDRIVE_CRON) == DEFAULT_DLQ_REDRIVE_CRON


def test_schedule_settings_are_read_at_each_tick_into_the_run_config(monkeypatch):
    monkeypatch.setenv("RECONCILIATION_AUTO_REPAIR", "yes")
    monkeypatch.setenv("RECONCILIATION_MAX_PEOPLE", "not a number")
    monkeypatch.setenv("DLQ_REDRIVE_MAX_MESSAGES", "500")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance)
        nightly = reconciliation_schedule(context)
        redrive = dlq_redrive_schedule(context)
    config = nightly.run_config["ops"]["delius_contacts_matches_prison_records"]["config"]
    assert config["auto_repair"] is True and config["max_people"] == 2000
    assert redrive.run_config["ops"]["redrive_dead_letters"]["config"] == {"max_messages": 500, "park_after": 3}
    assert dg.validate_run_config(redrive_dlq_job, redrive.run_config)


# ----------------------------------------------------------------------------------------------- scheduled redrive


def dead_letter(sqs, body: str, reason: str) -> None:
    queue = sqs.events_queue()
    sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)
    [message] = queue.receive(1)
    queue.dead_letter(message, reason)


def consume_main_queue(sqs, failing_body: str) -> None:
    """What the consumer does with redriven messages here: the good one lands, the bad one fails again."""
    queue = sqs.events_queue()
    received: list[QueueMessage] = []
    while batch := queue.receive(10):
        received += batch
    for message in received:
        if message.body == failing_body:
            queue.dead_letter(message, "HTTP 503 from case notes API")
        else:
            queue.delete([(message.message_id, message.receipt_handle)])


def scheduled_redrive(instance, sqs, when: datetime):
    request = dlq_redrive_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    result = redrive_dlq_job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        tags=request.tags,
        resources={
            "events_queue": EventsQueueResource(
                queue_url=sqs.queue_url, dlq_url=sqs.dlq_url, endpoint_url=sqs.endpoint_url
            )
        },
    )
    assert result.success
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    return result, {name: metadata[name].value for name in ("moved", "parked", "failed")}


@pytest.mark.sqs
def test_the_scheduled_redrive_moves_messages_back_and_parks_repeat_failures(sqs, webhook, monkeypatch):
    monkeypatch.setenv("DLQ_REDRIVE_PARK_AFTER", "2")
    failing = ev.case_note_event(
        "A1000AA", "0b0c8f6e-1111-4222-8333-444455556666", "KA", "KS", case_notes_url="http://127.0.0.1:9"
    )
    good = ev.alert_event("A1000AA", "01954cfe-9f5a-7ea3-837b-a1770b389c5b", "VI", alerts_url="http://127.0.0.1:9")
    dead_letter(sqs, failing, "HTTP 503 from case notes API")
    dead_letter(sqs, good, "HTTP 503 from alerts API")

    with dg.instance_for_test() as instance:
        mornings = [datetime(2026, 11, day, 5, 30, tzinfo=LONDON) for day in (9, 10, 11)]
        _, first = scheduled_redrive(instance, sqs, mornings[0])
        assert first == {"moved": 2, "parked": 0, "failed": 0}
        consume_main_queue(sqs, failing)
        _, second = scheduled_redrive(instance, sqs, mornings[1])
        assert second == {"moved": 1, "parked": 0, "failed": 0}
        consume_main_queue(sqs, failing)
        third_run, third = scheduled_redrive(instance, sqs, mornings[2])
        assert third == {"moved": 0, "parked": 1, "failed": 0}

        [parked] = sqs.drain(sqs.dlq_url)  # parked: still in the DLQ, never deleted
        assert parked["Body"] == failing and parked["MessageAttributes"][REDRIVE_COUNT]["StringValue"] == "2"
        assert sqs.depth(sqs.queue_url) == 0

        run = instance.get_run_by_id(third_run.run_id)
        [success] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
        context = dg.build_run_status_sensor_context(
            sensor_name="dlq_redrive_report_sensor",
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=success.dagster_event,
            resources={"notifier": Notifier(webhook_url=webhook.url)},
        )
        dlq_redrive_report_sensor(context)
        assert instance.get_run_by_id(run.run_id).tags[PARKED_TAG] == "1"
        assert run.tags["hmpps/trigger"] == "schedule"

    [message] = webhook.messages
    assert message["text"].startswith("DLQ redrive: messages parked")
    assert f"Run {run.run_id}: 0 moved back to the events queue, 1 parked, 0 could not be moved." in message["text"]
    assert "A1000AA" not in json.dumps(message)
