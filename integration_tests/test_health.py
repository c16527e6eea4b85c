"""Queue health (integration/health.py): the decisions, what the sensor reports, and that it never receives."""

from __future__ import annotations

import json
import time

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from integration import health
from integration.clients.queue import QueueDepth
from integration.definitions import defs
from integration.health import (CONSUMER_IS_ALIVE, DLQ_IS_EMPTY, EVENTS_QUEUE, OLDEST_MESSAGE_AGE_OK,
                                ConsumerActivity, HealthSettings, assess, next_backlog_since, select_events)
from integration.jobs import DELIUS_CONTACTS, prison_events_job
from integration.resources import EventsQueueResource

NOW = 1_800_000_000.0
SETTINGS = HealthSettings(stall_seconds=300, max_message_age_seconds=900, heartbeat_seconds=600)
EMPTY = QueueDepth(0, 0, 0)


def outcome(report, name):
    return next(c for c in report.checks if c.name == name)


def running(**kw) -> ConsumerActivity:
    return ConsumerActivity(**{"sensor_status": "running", "last_tick_at": NOW - 3, **kw})


# --------------------------------------------------------------------------------------------- decisions


def test_an_idle_healthy_queue_passes_everything():
    report = assess(EMPTY, EMPTY, running(last_received_at=NOW - 4000, last_processed_at=NOW - 3990), SETTINGS,
                    now=NOW, backlog_since=None)
    assert [c.passed for c in report.checks] == [True, True, True]
    assert "idle (queue empty)" in outcome(report, CONSUMER_IS_ALIVE).description
    assert report.oldest_message_age == 0


def test_a_non_empty_dlq_is_flagged_with_its_count_and_what_to_do():
    report = assess(EMPTY, QueueDepth(3, 1, 0), running(), SETTINGS, now=NOW, backlog_since=None)
    dlq = outcome(report, DLQ_IS_EMPTY)
    assert not dlq.passed and dlq.severity == "WARN"
    assert dlq.description.startswith("4 messages in the dead-letter queue")
    assert "peek_dlq_job" in dlq.description and "redrive_dlq_job" in dlq.description


def test_waiting_messages_with_no_consumer_activity_flag_a_stalled_consumer():
    activity = running(last_received_at=NOW - 700, last_processed_at=NOW - 650, runs_waiting=2)
    report = assess(QueueDepth(40, 0, 0), EMPTY, activity, SETTINGS, now=NOW, backlog_since=NOW - 600)
    alive = outcome(report, CONSUMER_IS_ALIVE)
    assert not alive.passed and alive.severity == "ERROR"
    assert "40 messages waiting and nothing received or processed for 600 s" in alive.description
    assert "2 batch runs are waiting to start" in alive.description
    # the messages seen 600 s ago are still there: the oldest is at least that old
    assert report.oldest_message_age == pytest.approx(600)
    assert outcome(report, OLDEST_MESSAGE_AGE_OK).passed


def test_a_new_backlog_after_a_quiet_night_is_not_a_stall():
    """Last activity hours ago, but the messages only started waiting 20 s ago."""
    report = assess(QueueDepth(3, 0, 0), EMPTY, running(last_received_at=NOW - 30000), SETTINGS, now=NOW,
                    backlog_since=NOW - 20)
    assert outcome(report, CONSUMER_IS_ALIVE).passed


def test_a_paused_consumer_is_a_warning_and_its_backlog_age_grows():
    activity = running(sensor_status="stopped", last_received_at=NOW - 1000)
    report = assess(QueueDepth(5, 0, 0), EMPTY, activity, SETTINGS, now=NOW, backlog_since=NOW - 2000)
    alive = outcome(report, CONSUMER_IS_ALIVE)
    assert not alive.passed and alive.severity == "WARN"
    assert "paused" in alive.description and "5 messages waiting" in alive.description
    age = outcome(report, OLDEST_MESSAGE_AGE_OK)
    assert not age.passed and age.severity == "WARN" and report.oldest_message_age == pytest.approx(1000)


def test_a_failed_or_silent_queue_sensor_is_flagged():
    failed = assess(EMPTY, EMPTY, running(last_tick_error="EndpointConnectionError"), SETTINGS, now=NOW,
                    backlog_since=None)
    assert "EndpointConnectionError" in outcome(failed, CONSUMER_IS_ALIVE).description
    silent = assess(EMPTY, EMPTY, running(last_tick_at=NOW - 900), SETTINGS, now=NOW, backlog_since=None)
    assert not outcome(silent, CONSUMER_IS_ALIVE).passed
    assert "has not ticked for 900 s" in outcome(silent, CONSUMER_IS_ALIVE).description


def test_the_age_at_receipt_of_recent_messages_counts_and_grades_the_severity():
    warn = assess(EMPTY, EMPTY, running(oldest_age_at_receipt=1000.0), SETTINGS, now=NOW, backlog_since=None)
    assert outcome(warn, OLDEST_MESSAGE_AGE_OK).severity == "WARN" and not outcome(warn, OLDEST_MESSAGE_AGE_OK).passed
    error = assess(EMPTY, EMPTY, running(oldest_age_at_receipt=2701.0), SETTINGS, now=NOW, backlog_since=None)
    assert outcome(error, OLDEST_MESSAGE_AGE_OK).severity == "ERROR"
    assert "age at receipt" in error.age_basis


def test_backlog_since_starts_on_the_first_sighting_and_ends_when_the_queue_shows_none():
    assert next_backlog_since(None, QueueDepth(2, 0, 0), NOW) == NOW
    assert next_backlog_since(NOW - 50, QueueDepth(2, 0, 0), NOW) == NOW - 50
    assert next_backlog_since(NOW - 50, QueueDepth(0, 7, 0), NOW) is None


def test_ages_at_receipt_come_from_the_batch_runs_config():
    config = {"ops": {"process_prison_events": {"config": {"events": [
        {"sent_timestamp_ms": int((NOW - 30) * 1000), "received_at": NOW},
        {"sent_timestamp_ms": int((NOW - 5) * 1000), "received_at": NOW},
        {"sent_timestamp_ms": None, "received_at": NOW}]}}}}
    assert sorted(health.ages_at_receipt([config, {}, None])) == pytest.approx([5, 30])


def test_results_are_reported_when_they_change_and_on_a_heartbeat_only():
    def report(dlq: int, at: float):
        return assess(QueueDepth(0, 0, 0), QueueDepth(dlq, 0, 0), running(last_received_at=at - 10), SETTINGS,
                      now=at, backlog_since=None)

    first, cursor = select_events(report(0, NOW), {}, SETTINGS)
    assert len(first) == 4                                             # observation + 3 checks
    same, cursor = select_events(report(0, NOW + 60), cursor, SETTINGS)
    assert same == []
    changed, cursor = select_events(report(2, NOW + 120), cursor, SETTINGS)
    assert {type(e).__name__ for e in changed} == {"AssetObservation", "AssetCheckEvaluation"}
    assert [e.check_name for e in changed if isinstance(e, dg.AssetCheckEvaluation)] == [DLQ_IS_EMPTY]
    quiet, cursor = select_events(report(2, NOW + 180), cursor, SETTINGS)
    assert quiet == []
    refreshed, cursor = select_events(report(2, NOW + 250), cursor, SETTINGS)    # failing: again after 120 s
    assert [e.check_name for e in refreshed] == [DLQ_IS_EMPTY]
    beat, _ = select_events(report(2, NOW + 600), cursor, SETTINGS)
    assert len(beat) == 4


# --------------------------------------------------------------------------------------------- against SQS and Dagster


@pytest.mark.sqs
def test_the_sensor_reports_depths_and_checks_without_receiving(sqs):
    for n in range(3):
        sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=json.dumps({"n": n}))
    sqs.client.send_message(QueueUrl=sqs.dlq_url, MessageBody="{not json")
    resource = EventsQueueResource(queue_url=sqs.queue_url, dlq_url=sqs.dlq_url, endpoint_url=sqs.endpoint_url,
                                   region_name="eu-west-2")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, sensor_name=health.HEALTH_SENSOR,
                                          resources={"events_queue": resource}, definitions=defs)
        result = health.queue_health_sensor(context)
        observation = next(e for e in result.asset_events if isinstance(e, dg.AssetObservation))
        assert observation.asset_key == EVENTS_QUEUE
        assert observation.metadata["visible"].value == 3
        assert observation.metadata["dlq_messages"].value == 1
        checks = {e.check_name: e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)}
        assert set(checks) == {DLQ_IS_EMPTY, CONSUMER_IS_ALIVE, OLDEST_MESSAGE_AGE_OK}
        assert not checks[DLQ_IS_EMPTY].passed and checks[CONSUMER_IS_ALIVE].passed
        assert "dlq=1" in result.skip_reason.skip_message and "visible=3" in result.skip_reason.skip_message
        assert json.loads(result.cursor)["backlog_since"] is not None

        # The daemon stores them as runless events: the UI shows them on events_queue.
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        assert instance.fetch_observations(EVENTS_QUEUE, limit=1).records
        latest = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(EVENTS_QUEUE, DLQ_IS_EMPTY))
        assert latest is not None and latest.event.dagster_event.event_specific_data.passed is False

    # Nothing was received: every message is still visible and has never been delivered.
    received = sqs.client.receive_message(QueueUrl=sqs.queue_url, MaxNumberOfMessages=10,
                                          MessageSystemAttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert len(received) == 3 and {m["Attributes"]["ApproximateReceiveCount"] for m in received} == {"1"}


@pytest.mark.sqs
def test_the_checks_can_be_executed_from_the_ui_and_read_the_consumers_runs(sqs):
    resource = EventsQueueResource(queue_url=sqs.queue_url, dlq_url=sqs.dlq_url, endpoint_url=sqs.endpoint_url,
                                   region_name="eu-west-2")
    now = time.time()
    with dg.instance_for_test() as instance:
        config = {"ops": {"process_prison_events": {"config": {"events": [
            {"sqs_message_id": "m1", "receipt_handle": "h", "body": "{}", "received_at": now,
             "sent_timestamp_ms": int((now - 42) * 1000)}]}}}}
        create_run_for_test(instance, job_name=prison_events_job.name, run_config=config,
                            status=dg.DagsterRunStatus.SUCCESS)
        instance.report_runless_asset_event(dg.AssetMaterialization(DELIUS_CONTACTS))
        activity = health.consumer_activity(instance, since=now - 60)
        assert activity.sensor_status == "unknown"
        assert activity.received_since == 1 and activity.oldest_age_at_receipt == pytest.approx(42, abs=1)
        assert activity.last_received_at == pytest.approx(now, abs=5)
        assert activity.last_processed_at == pytest.approx(now, abs=5)

        context = dg.build_asset_check_context(instance=instance, resources={"events_queue": resource})
        results = {r.check_name: r for r in health.queue_health_checks(context)}
        assert all(r.passed for r in results.values())
        assert results[OLDEST_MESSAGE_AGE_OK].metadata["oldest_message_age_seconds"].value == pytest.approx(42, abs=1)
