"""Queue health against moto's SQS and a Dagster instance: what the sensor reports, that it never receives, and
the asset and its checks executed as the UI does (Materialize, Execute, Execute all)."""

from __future__ import annotations

import json
import time

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from integration.constants import (
    CONSUMER_IS_ALIVE,
    DELIUS_CONTACTS,
    DLQ_IS_EMPTY,
    EVENTS_JOB,
    HEALTH_SENSOR,
    OLDEST_MESSAGE_AGE_OK,
)
from integration.definitions import defs
from integration.defs.health.assets import events_queue
from integration.defs.health.observe import EVENTS_QUEUE_KEY as EVENTS_QUEUE
from integration.defs.health.observe import consumer_activity
from integration.defs.health.sensors import queue_health_sensor
from integration_tests.fixtures.dagster import queue_resource

# --------------------------------------------------------------------------------------------- against SQS and Dagster


@pytest.mark.sqs
def test_the_sensor_reports_depths_and_checks_without_receiving(sqs):
    for n in range(3):
        sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=json.dumps({"n": n}))
    sqs.client.send_message(QueueUrl=sqs.dlq_url, MessageBody="{not json")
    resource = queue_resource(sqs)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, sensor_name=HEALTH_SENSOR, resources={"events_queue": resource}, definitions=defs
        )
        result = queue_health_sensor(context)
        report = result.asset_events[0]  # first, so that the checks after it count for it
        assert isinstance(report, dg.AssetMaterialization) and report.asset_key == EVENTS_QUEUE
        assert report.metadata["status"].value == report.description == "DLQ not empty"
        assert report.metadata["visible"].value == 3
        assert report.metadata["dlq_messages"].value == 1
        checks = {e.check_name: e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)}
        assert set(checks) == {DLQ_IS_EMPTY, CONSUMER_IS_ALIVE, OLDEST_MESSAGE_AGE_OK}
        assert not checks[DLQ_IS_EMPTY].passed and checks[CONSUMER_IS_ALIVE].passed
        assert checks[DLQ_IS_EMPTY].severity is dg.AssetCheckSeverity.ERROR  # red in the UI
        assert "dlq=1" in result.skip_reason.skip_message and "visible=3" in result.skip_reason.skip_message
        assert json.loads(result.cursor)["backlog_since"] is not None

        # The daemon stores them as runless events: the UI shows them on events_queue.
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        assert instance.fetch_materializations(EVENTS_QUEUE, limit=1).records
        latest = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(EVENTS_QUEUE, DLQ_IS_EMPTY))
        assert latest is not None and latest.event.dagster_event.event_specific_data.passed is False

    # Nothing was received: every message is still visible and has never been delivered.
    received = sqs.client.receive_message(
        QueueUrl=sqs.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert len(received) == 3 and {m["Attributes"]["ApproximateReceiveCount"] for m in received} == {"1"}


@pytest.mark.sqs
def test_the_checks_can_be_executed_from_the_ui_and_read_the_consumers_reports(sqs):
    resource = queue_resource(sqs)
    now = time.time()
    with dg.instance_for_test() as instance:
        create_run_for_test(instance, job_name=EVENTS_JOB, status=dg.DagsterRunStatus.SUCCESS)
        # A consumer run's chunk report: one event that had waited 42 s on the queue when it was received.
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                DELIUS_CONTACTS, metadata={"events": 1, "last_received_at": now, "oldest_age_at_receipt_seconds": 42.0}
            )
        )
        activity = consumer_activity(instance, since=now - 60)
        assert activity.sensor_status == "unknown"
        assert activity.received_since == 1 and activity.oldest_age_at_receipt == pytest.approx(42, abs=1)
        assert activity.last_received_at == pytest.approx(now, abs=5)
        assert activity.last_processed_at == pytest.approx(now, abs=5)

        # Checks -> Execute all: the checks without the asset.
        result = dg.materialize(
            [events_queue],
            instance=instance,
            resources={"events_queue": resource},
            selection=dg.AssetSelection.checks_for_assets(events_queue),
        )
        results = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert set(results) == {DLQ_IS_EMPTY, CONSUMER_IS_ALIVE, OLDEST_MESSAGE_AGE_OK}
        assert all(r.passed for r in results.values())
        assert results[OLDEST_MESSAGE_AGE_OK].metadata["oldest_message_age_seconds"].value == pytest.approx(42, abs=1)
        assert not result.get_asset_materialization_events()

        # Materialize: a report and every check.
        result = dg.materialize([events_queue], instance=instance, resources={"events_queue": resource})
        (report,) = result.asset_materializations_for_node("queue_health_checks")
        assert report.metadata["status"].value == "healthy"
        assert len(result.get_asset_check_evaluations()) == 3


def test_each_queue_check_can_be_executed_on_its_own():
    """What the UI's Execute / Execute all need: every check is its own execution set, not tied to the asset."""
    graph = defs.resolve_asset_graph()
    for name in (DLQ_IS_EMPTY, CONSUMER_IS_ALIVE, OLDEST_MESSAGE_AGE_OK):
        key = dg.AssetCheckKey(EVENTS_QUEUE, name)
        assert graph.get_execution_set_asset_and_check_keys(key) == {key}
