"""The Dagster shell: the queue sensor's protocol and the event job, against moto's SQS server, stand-ins and PostgreSQL."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test
from sqlalchemy import select

from integration.core.messages import FAILURE_REASON
from integration.definitions import defs
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.defs.events.jobs import prison_events_job
from integration.local import event_factory as ev
from integration.resources import ConsumerSettings
from integration.constants import EVENTS_SENSOR as SENSOR_NAME
from integration.defs.events.sensors import prison_events_sensor
from integration_tests.fixtures.dagster import delius_resource, queue_resource, source_api_resource

pytestmark = [pytest.mark.postgres, pytest.mark.sqs]


def consumer(**overrides) -> ConsumerSettings:
    settings = dict(max_events_per_run=2, tick_seconds=5, visibility_timeout=30, retry_delays="1,1,1",
                    fetch_workers=4)
    return ConsumerSettings(**{**settings, **overrides})


def job_resources(sqs, standins, delius_pg):
    return {
        "delius": delius_resource(delius_pg),
        "events_queue": queue_resource(sqs),
        "source_api": source_api_resource(standins, retries=3),
        "consumer": consumer(),
    }


def tick(instance, sqs, cursor=None, **settings):
    context = dg.build_sensor_context(instance=instance, sensor_name=SENSOR_NAME, cursor=cursor,
                                      resources={"events_queue": queue_resource(sqs), "consumer": consumer(**settings)},
                                      definitions=defs)
    return prison_events_sensor(context)


def send(sqs, body):
    return sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)["MessageId"]


def visible(sqs) -> int:
    attrs = sqs.client.get_queue_attributes(QueueUrl=sqs.queue_url,
                                            AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def test_definitions_load_and_the_sensor_runs_by_default():
    dg.Definitions.validate_loadable(defs)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status is dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds <= 10
    assert {j.name for j in sensor.targets and [t.job_def for t in sensor.targets]} >= {"prison_events_job",
                                                                                         "noms_backfill_job"}


def test_a_tick_leases_batches_dead_letters_poison_and_turns_linkage_into_a_backfill(instance, sqs, standins):
    ids = [send(sqs, ev.case_note_event("A1000AA", f"00000000-0000-4000-8000-00000000000{n}", "GEN", "OSE",
                                        case_notes_url=standins.case_notes_url)) for n in range(3)]
    poison = send(sqs, "this is not json")
    linkage = send(sqs, ev.linkage_event("a2000bb", "X200002"))

    result = tick(instance, sqs)

    batches = [r for r in result.run_requests if r.job_name == "prison_events_job"]
    backfills = [r for r in result.run_requests if r.job_name == "noms_backfill_job"]
    assert [len(r.run_config["ops"]["process_prison_events"]["config"]["events"]) for r in batches] == [2, 1]
    leased = [e["message_id"] for r in batches for e in r.run_config["ops"]["process_prison_events"]["config"]["events"]]
    assert sorted(leased) == sorted(ids)
    first = batches[0].run_config["ops"]["process_prison_events"]["config"]
    assert first["dead_lettered"] == [{"sqs_message_id": poison, "reason": "unreadable message: body is not valid JSON"}]
    for request in batches:
        assert dg.validate_run_config(prison_events_job, request.run_config)
        body = json.dumps(request.run_config)
        assert "Case note text" not in body
    [backfill] = backfills
    assert backfill.run_config["ops"]["backfill_people"]["config"]["noms_numbers"] == ["A2000BB"]
    assert backfill.tags["hmpps/trigger"] == "linkage" and backfill.tags["hmpps/people"] == "A2000BB"
    assert result.dynamic_partitions_requests[0].partition_keys == ["A2000BB"]
    custody = json.loads(result.cursor)["custody"]
    assert [c["id"] for c in custody] == [linkage] and custody[0]["k"] == backfill.run_key
    # Leased messages stay in flight (the runs delete them); the poison one went to the DLQ with its reason.
    assert visible(sqs) == 0 and sqs.depth() == 4
    [dead] = sqs.drain(sqs.dlq_url)
    assert dead["Body"] == "this is not json"
    assert dead["MessageAttributes"][FAILURE_REASON]["StringValue"] == "unreadable message: body is not valid JSON"


def test_linkage_message_is_deleted_only_once_its_backfill_run_exists(instance, sqs):
    send(sqs, ev.linkage_event("A2000BB", "X200002"))
    first = tick(instance, sqs)
    [request] = first.run_requests
    second = tick(instance, sqs, cursor=first.cursor)
    assert sqs.depth() == 1                     # no run yet: still in custody of the sensor's lease
    assert json.loads(second.cursor)["custody"]
    create_run_for_test(instance, job_name="noms_backfill_job", tags={"dagster/run_key": request.run_key})
    third = tick(instance, sqs, cursor=second.cursor)
    assert json.loads(third.cursor)["custody"] == []
    assert sqs.depth() == 0


def test_back_pressure_leaves_messages_on_the_queue_while_batch_runs_wait(instance, sqs, standins):
    send(sqs, ev.case_note_event("A1000AA", "00000000-0000-4000-8000-000000000001", "GEN", "OSE",
                                 case_notes_url=standins.case_notes_url))
    for _ in range(2):
        create_run_for_test(instance, job_name="prison_events_job", status=dg.DagsterRunStatus.NOT_STARTED)
    result = tick(instance, sqs)
    assert not result.run_requests and "back-pressure" in result.skip_reason.skip_message
    assert visible(sqs) == 1
    [message] = sqs.drain(sqs.queue_url)
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"     # never received by the sensor


def test_the_job_runs_a_leased_batch_and_reports_outcomes_and_asset_counts(instance, sqs, standins, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    notes = [standins.add_case_note("A1000AA", type="KA", sub_type="KS") for _ in range(2)]
    for note in notes:
        send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    send(sqs, ev.case_note_event("A1000AA", "11111111-2222-4333-8444-555555555555", "OMIC", "OPEN",
                                 case_notes_url=standins.case_notes_url))   # 404
    [request] = tick(instance, sqs, max_events_per_run=10).run_requests

    result = prison_events_job.execute_in_process(run_config=request.run_config, instance=instance,
                                                  resources=job_resources(sqs, standins, delius_pg))

    assert result.success
    with delius_pg.connect() as conn:
        assert conn.execute(select(m.contact.c.external_reference)).scalars().all() != []
        assert len(conn.execute(select(m.contact)).all()) == 2
    assert sqs.depth() == 0
    [materialization] = result.asset_materializations_for_node("process_prison_events")
    assert materialization.asset_key == dg.AssetKey("delius_contacts")
    assert materialization.metadata["created"].value == 2 and materialization.metadata["skipped"].value == 1
    outcomes = result.get_step_success_events()[0]
    output_events = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    table = output_events[0].event_specific_data.metadata["outcomes"].value
    assert sorted(r.data["action"] for r in table.records) == ["created", "created", "skipped"]
    assert outcomes


def test_a_failed_event_fails_the_run_with_its_reason_and_good_events_still_land(instance, sqs, standins, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    good = standins.add_case_note("A1000AA", type="KA", sub_type="KS")
    send(sqs, ev.case_note_event_for(good, case_notes_url=standins.case_notes_url))
    send(sqs, ev.case_note_event("A1000AA", "0b0c8f6e-1111-4222-8333-444455556666", "GEN", "OSE",
                                 case_notes_url="http://elsewhere.example.org"))
    [request] = tick(instance, sqs, max_events_per_run=10).run_requests

    result = prison_events_job.execute_in_process(run_config=request.run_config, instance=instance,
                                                  resources=job_resources(sqs, standins, delius_pg),
                                                  raise_on_error=False)

    assert not result.success
    [failure] = [e for e in result.all_node_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.event_specific_data.user_failure_data.description
    assert description == ("1 of 2 events failed: 1 x detailUrl host not on the allow-list: "
                           "http://elsewhere.example.org -> dead-lettered")
    with delius_pg.connect() as conn:
        assert len(conn.execute(select(m.contact)).all()) == 1
    assert sqs.depth() == 0 and len(sqs.drain(sqs.dlq_url)) == 1


def test_the_code_location_loads_as_the_daemon_loads_it():
    """One Definitions object at module scope (Dagster refuses two), loadable by module name."""
    from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module

    targets = loadable_targets_from_python_module("integration.definitions", working_directory=None)
    assert [t.attribute for t in targets] == ["defs"]


def test_the_local_instance_config_caps_everything_but_the_live_flow(tmp_path):
    """dagster.yaml: two of the run slots always remain for prison_events_job, and dequeueing is quick."""
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).resolve().parents[2] / "dagster.yaml", tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        queue = instance.get_concurrency_config().run_queue_config
        limits = {(limit["key"], limit.get("value")): limit["limit"] for limit in queue.tag_concurrency_limits}
        assert limits[("hmpps/flow", "events")] == 2
        others = sum(n for (key, value), n in limits.items() if (key, value) != ("hmpps/flow", "events"))
        assert queue.max_concurrent_runs - others >= 2
        assert instance.run_coordinator.dequeue_interval_seconds <= 2
        assert instance.run_monitoring_enabled


def test_a_tick_is_split_into_as_few_equal_batches_as_the_maximum_allows():
    from integration.core.intake import split_evenly

    assert [len(b) for b in split_evenly(list(range(1200)), 1000)] == [600, 600]
    assert [len(b) for b in split_evenly(list(range(7)), 3)] == [3, 2, 2]
    assert split_evenly([], 10) == []
    assert sum(split_evenly(list(range(2001)), 1000), []) == list(range(2001))

