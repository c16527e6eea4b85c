"""The run-failure sensor and the webhook: Slack-shaped messages with ids and counts only, delivered to the webhook
stand-in; a missing or broken webhook is logged and never fails the sensor."""

from __future__ import annotations

import json

import dagster as dg

from integration.core.notices import failure_message, should_notify_failure, slack_message
from integration.defs.alerting.sensors import run_failure_notification_sensor
from integration.defs.backfill.assets import linked_person_contacts
from integration.delius.reference_data import add_person
from integration.resources import Notifier
from integration_tests.fixtures.dagster import delius_resource, source_api_resource

SECRET_TEXT = "PRIVATE-NOTE-TEXT"


@dg.op
def leak_in_an_exception():
    raise ValueError(f"database said: duplicate key, parameters {{'notes': '{SECRET_TEXT}'}}")


@dg.job
def job_with_an_unexpected_error():
    leak_in_an_exception()


def failure_context(instance, run_id: str, notifier: Notifier):
    run = instance.get_run_by_id(run_id)
    [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name="run_failure_notification_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        resources={"notifier": notifier},
    ).for_run_failure()


def test_a_failed_backfill_run_is_posted_with_its_reason_and_no_note_text(instance, standins, delius_pg, webhook):
    add_person(delius_pg, "X700001", "A7000AA")
    standins.add_case_note("A7000AA", type="KA", sub_type="KS", text=SECRET_TEXT)
    standins.set_fault("search_case_notes", status=503)
    instance.add_dynamic_partitions("noms_number", ["A7000AA"])
    result = dg.materialize(
        [linked_person_contacts],
        partition_key="A7000AA",
        instance=instance,
        raise_on_error=False,
        resources={"delius": delius_resource(delius_pg), "source_api": source_api_resource(standins, retries=0)},
    )
    assert not result.success

    run_failure_notification_sensor(failure_context(instance, result.run_id, Notifier(webhook_url=webhook.url)))

    [message] = webhook.messages
    assert set(message) == {"text", "blocks"}
    assert [block["type"] for block in message["blocks"]] == ["section", "section"]
    assert message["text"].startswith(f"Dagster run failed: __ephemeral_asset_job__\nRun {result.run_id} of")
    assert "linked_person_contacts: 1 of 1 backfills failed: A7000AA: case notes API" in message["text"]
    assert SECRET_TEXT not in json.dumps(message)


def test_an_unexpected_exception_is_named_by_its_class_only(instance, webhook):
    result = job_with_an_unexpected_error.execute_in_process(instance=instance, raise_on_error=False)
    notifier = Notifier(webhook_url=webhook.url, dagster_ui_url="http://dagster.example/")

    run_failure_notification_sensor(failure_context(instance, result.run_id, notifier))

    [message] = webhook.messages
    assert "- leak_in_an_exception: ValueError" in message["text"]
    assert SECRET_TEXT not in json.dumps(message) and "duplicate key" not in json.dumps(message)
    assert message["blocks"][-1]["elements"][0]["text"] == (
        f"<http://dagster.example/runs/{result.run_id}|Open the run in Dagster>"
    )


class RecordingLog:
    def __init__(self):
        self.lines: list[str] = []

    def info(self, message):
        self.lines.append(message)

    warning = info


def test_without_a_webhook_or_with_a_broken_one_the_sensor_logs_and_carries_on(instance, webhook, monkeypatch):
    result = job_with_an_unexpected_error.execute_in_process(instance=instance, raise_on_error=False)
    monkeypatch.delenv("NOTIFY_WEBHOOK_URL", raising=False)
    webhook.status = 500
    unreachable = "http://127.0.0.1:9/hook-secret"
    for notifier in (
        Notifier(),
        Notifier(webhook_url=webhook.url),
        Notifier(webhook_url=unreachable, timeout_seconds=1),
    ):
        assert run_failure_notification_sensor(failure_context(instance, result.run_id, notifier)) is None
    assert webhook.messages == []

    log = RecordingLog()
    payload = slack_message("title", ["line"])
    assert not Notifier().post(payload, log)
    assert not Notifier(webhook_url=webhook.url).post(payload, log)
    assert not Notifier(webhook_url=unreachable, timeout_seconds=1).post(payload, log)
    assert log.lines == [
        'notification_skipped reason="NOTIFY_WEBHOOK_URL is not set" text="title\\nline"',
        'notification_failed reason="webhook answered HTTP 500"',
        'notification_failed reason="webhook not reachable (ConnectionError)"',
    ]
    assert all("hook-secret" not in line for line in log.lines)  # the webhook URL is a secret
    webhook.status = 200
    assert Notifier(webhook_url=webhook.url).post(payload, log) and webhook.messages == [payload]


def test_an_outage_is_one_message_not_hundreds():
    assert [n for n in range(1, 41) if should_notify_failure(n)] == [1, 2, 3, 10, 20, 30, 40]
    message = failure_message("prison_events_job", "abc", "Steps failed", ["a: x", "b: y", "c: z", "d: w"], 12)
    assert "- and 1 more failed steps" in message["text"] and "12 failed runs of prison_events_job" in message["text"]


def test_messages_escape_slack_markup():
    message = slack_message("A <b> & c", ["x < y"])
    assert message["blocks"][0]["text"]["text"] == "*A &lt;b&gt; &amp; c*"
    assert message["text"] == "A <b> & c\nx < y"
