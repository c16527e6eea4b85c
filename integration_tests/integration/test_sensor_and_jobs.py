"""The Dagster shell of the queue protocol (docs/queue-protocol.md): the supervising sensor and the consumer job,
against moto's SQS server, the stand-ins and PostgreSQL."""

from __future__ import annotations

import json
import time

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test
from sqlalchemy import select

from integration.constants import EVENTS_SENSOR as SENSOR_NAME
from integration.core.consumer import linkage_run_key
from integration.core.messages import FAILURE_REASON
from integration.definitions import defs
from integration.defs.events.jobs import prison_events_job
from integration.defs.events.sensors import prison_events_sensor
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.local import event_factory as ev
from integration.resources import ConsumerSettings
from integration_tests.fixtures.dagster import delius_resource, queue_resource, source_api_resource

pytestmark = [pytest.mark.postgres, pytest.mark.sqs]


def consumer(**overrides) -> ConsumerSettings:
    # A short idle exit so that a run ends soon after the queue is empty; generous enough for a busy machine.
    settings = dict(
        idle_seconds=5,
        wait_seconds=1,
        lifetime_seconds=120,
        visibility_timeout=30,
        retry_delays="1,1,1",
        fetch_workers=4,
        report_seconds=1,
    )
    return ConsumerSettings(**{**settings, **overrides})


def job_resources(sqs, standins, delius_pg, **settings):
    return {
        "delius": delius_resource(delius_pg),
        "events_queue": queue_resource(sqs),
        "source_api": source_api_resource(standins, retries=1),
        "consumer": consumer(**settings),
    }


def consume(instance, sqs, standins, delius_pg, **settings):
    return prison_events_job.execute_in_process(
        instance=instance, raise_on_error=False, resources=job_resources(sqs, standins, delius_pg, **settings)
    )


def tick(instance, sqs, cursor=None, **settings):
    context = dg.build_sensor_context(
        instance=instance,
        sensor_name=SENSOR_NAME,
        cursor=cursor,
        resources={"events_queue": queue_resource(sqs), "consumer": consumer(**settings)},
        definitions=defs,
    )
    return prison_events_sensor(context)


def send(sqs, body):
    return sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)["MessageId"]


def visible(sqs) -> int:
    attrs = sqs.client.get_queue_attributes(QueueUrl=sqs.queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"
    ]
    return int(attrs["ApproximateNumberOfMessages"])


def reports(result) -> list[dg.AssetMaterialization]:
    return result.asset_materializations_for_node("process_prison_events")


def outcome_rows(result) -> list[dict]:
    return [row.data for report in reports(result) for row in report.metadata["outcomes"].value.records]


def run_tags(instance, result) -> dict:
    return instance.get_run_by_id(result.run_id).tags


def test_definitions_load_and_the_sensor_runs_by_default():
    dg.Definitions.validate_loadable(defs)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status is dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds <= 10
    assert {j.name for j in sensor.targets and [t.job_def for t in sensor.targets]} >= {
        "prison_events_job",
        "noms_backfill_job",
    }


def test_the_sensor_starts_one_consumer_for_waiting_work_and_receives_nothing(instance, sqs, standins):
    send(
        sqs,
        ev.case_note_event(
            "A1000AA", "00000000-0000-4000-8000-000000000001", "GEN", "OSE", case_notes_url=standins.case_notes_url
        ),
    )
    first = tick(instance, sqs)
    [request] = first.run_requests
    assert request.job_name == "prison_events_job" and request.run_key.startswith("consumer-")
    assert not request.run_config  # no message in run config: the run receives them itself
    # The next tick, before the run is in run storage, does not request a duplicate ...
    second = tick(instance, sqs, cursor=first.cursor)
    assert not second.run_requests
    # ... nor once it is (waiting to start).
    create_run_for_test(
        instance,
        job_name="prison_events_job",
        status=dg.DagsterRunStatus.NOT_STARTED,
        tags={"dagster/run_key": request.run_key},
    )
    assert not tick(instance, sqs, cursor=second.cursor).run_requests
    [message] = sqs.drain(sqs.queue_url)
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"  # the sensor never received it


def test_an_empty_queue_starts_nothing(instance, sqs):
    result = tick(instance, sqs)
    assert not result.run_requests and "queue empty" in result.skip_reason.skip_message


def test_a_retiring_consumer_gets_its_successor_before_it_exits_and_the_cap_holds(instance, sqs, standins):
    send(
        sqs,
        ev.case_note_event(
            "A1000AA", "00000000-0000-4000-8000-000000000001", "GEN", "OSE", case_notes_url=standins.case_notes_url
        ),
    )
    retiring = create_run_for_test(
        instance,
        job_name="prison_events_job",
        status=dg.DagsterRunStatus.STARTED,
        tags={"hmpps/consumer-until": str(int(time.time() + 10))},
    )
    assert retiring
    [successor] = tick(instance, sqs).run_requests
    assert successor.job_name == "prison_events_job"
    create_run_for_test(
        instance,
        job_name="prison_events_job",
        status=dg.DagsterRunStatus.STARTED,
        tags={"hmpps/consumer-until": str(int(time.time() + 10))},
    )
    assert not tick(instance, sqs).run_requests  # two alive: the cap (CONSUMER_MAX_RUNS 2)


def test_a_consumer_run_processes_the_queue_dead_letters_poison_and_hands_over_linkage(
    instance, sqs, standins, delius_pg
):
    add_person(delius_pg, "X100001", "A1000AA")
    notes = [standins.add_case_note("A1000AA", type="KA", sub_type="KS") for _ in range(2)]
    for note in notes:
        send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
    send(
        sqs,
        ev.case_note_event(
            "A1000AA", "11111111-2222-4333-8444-555555555555", "OMIC", "OPEN", case_notes_url=standins.case_notes_url
        ),
    )  # 404
    poison = send(sqs, "this is not json")
    linkage = send(sqs, ev.linkage_event("a2000bb", "X200002"))

    result = consume(instance, sqs, standins, delius_pg)

    assert result.success  # the poison is in the DLQ with its reason: a warning, not red
    tags = run_tags(instance, result)
    assert tags["hmpps/dead-lettered"] == "1" and "hmpps/failure" not in tags
    assert float(tags["hmpps/consumer-until"]) > time.time()
    with delius_pg.connect() as conn:
        assert len(conn.execute(select(m.contact)).all()) == 2
    totals = {
        key: sum(r.metadata[key].value for r in reports(result))
        for key in ("created", "updated", "moved", "unchanged", "skipped", "failed", "linkage")
    }
    assert totals == {"created": 2, "updated": 0, "moved": 0, "unchanged": 0, "skipped": 1, "failed": 1, "linkage": 1}
    rows = {r["sqs_message_id"]: r for r in outcome_rows(result)}
    assert (rows[poison]["action"], rows[poison]["disposition"]) == ("failed", "dead-lettered")
    assert (rows[linkage]["action"], rows[linkage]["disposition"]) == ("linkage", "handed to the sensor")
    assert "Case note text" not in json.dumps(rows)
    [dead] = sqs.drain(sqs.dlq_url)
    assert dead["Body"] == "this is not json"
    assert dead["MessageAttributes"][FAILURE_REASON]["StringValue"] == "unreadable message: body is not valid JSON"
    # The linkage message waits in flight for the sensor, which its observation names.
    assert instance.get_dynamic_partitions("noms_number") == ["A2000BB"]
    [observation] = instance.fetch_observations(dg.AssetKey("linked_person_contacts"), limit=5).records
    assert observation.partition_key == "A2000BB"
    assert observation.asset_observation.metadata["sqs_message_id"].value == linkage
    assert sqs.depth() == 1 and visible(sqs) == 0


def test_a_chunk_report_says_how_many_characters_no_database_stores_were_replaced(instance, sqs, standins, delius_pg):
    add_person(delius_pg, "X100001", "A1000AA")
    for text in ("clean", "nul\x00here", "lone \ud800 surrogate and \x00"):
        note = standins.add_case_note("A1000AA", type="KA", sub_type="KS", text=text)
        send(sqs, ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))

    result = consume(instance, sqs, standins, delius_pg)

    assert result.success
    assert sum(r.metadata["created"].value for r in reports(result)) == 3
    assert sum(r.metadata["replaced_characters"].value for r in reports(result)) == 3


def test_the_sensor_backfills_a_handed_over_linkage_message_and_deletes_it_once_the_run_exists(
    instance, sqs, standins, delius_pg
):
    linkage = send(sqs, ev.linkage_event("A2000BB", "X200002"))
    assert consume(instance, sqs, standins, delius_pg).success
    first = tick(instance, sqs)
    [request] = first.run_requests
    assert (request.job_name, request.run_key) == ("noms_backfill_job", linkage_run_key(linkage))
    assert request.run_config["ops"]["backfill_people"]["config"]["noms_numbers"] == ["A2000BB"]
    assert request.tags["hmpps/trigger"] == "linkage" and request.tags["hmpps/people"] == "A2000BB"
    assert [c["id"] for c in json.loads(first.cursor)["custody"]] == [linkage]
    second = tick(instance, sqs, cursor=first.cursor)
    assert not second.run_requests and sqs.depth() == 1  # no run yet: still held, not requested twice
    create_run_for_test(instance, job_name="noms_backfill_job", tags={"dagster/run_key": request.run_key})
    third = tick(instance, sqs, cursor=second.cursor)
    assert json.loads(third.cursor)["custody"] == [] and sqs.depth() == 0


def test_linkage_backfills_are_capped_per_tick_and_by_the_runs_waiting(instance, sqs, standins, delius_pg):
    people = [f"A{2000 + n}BB" for n in range(5)]
    for n, noms in enumerate(people):
        send(sqs, ev.linkage_event(noms, f"X20000{n}"))
    assert consume(instance, sqs, standins, delius_pg).success
    first = tick(instance, sqs, max_backfills_per_tick=2, max_pending_backfills=3)
    assert len(first.run_requests) == 2
    for request in first.run_requests:
        create_run_for_test(
            instance,
            job_name="noms_backfill_job",
            status=dg.DagsterRunStatus.NOT_STARTED,
            tags={"dagster/run_key": request.run_key, "hmpps/trigger": "linkage"},
        )
    second = tick(instance, sqs, cursor=first.cursor, max_backfills_per_tick=2, max_pending_backfills=3)
    assert len(second.run_requests) == 1  # 2 waiting in the run queue, 3 at most
    requested = {r.tags["hmpps/people"] for r in first.run_requests + second.run_requests}
    assert len(requested) == 3 and sqs.depth() == 3  # the first two settled; the third in custody; two untaken


def test_a_retryable_failure_fails_the_run_with_its_reason_and_good_events_still_land(
    instance, sqs, standins, delius_pg
):
    add_person(delius_pg, "X100001", "A1000AA")
    good = standins.add_case_note("A1000AA", type="KA", sub_type="KS")
    bad = standins.add_case_note("A1000AA", type="KA", sub_type="KS")
    send(sqs, ev.case_note_event_for(good, case_notes_url=standins.case_notes_url))
    send(
        sqs,
        ev.case_note_event(
            "A1000AA",
            "0b0c8f6e-1111-4222-8333-444455556666",
            "GEN",
            "OSE",
            case_notes_url="http://elsewhere.example.org",
        ),
    )  # data: not on the allow-list
    result = consume(instance, sqs, standins, delius_pg)

    assert result.success  # the allow-list failure is data, in the DLQ with its reason
    assert run_tags(instance, result)["hmpps/dead-lettered"] == "1"
    with delius_pg.connect() as conn:
        assert len(conn.execute(select(m.contact)).all()) == 1
    [dead] = sqs.drain(sqs.dlq_url)
    assert "allow-list" in dead["MessageAttributes"][FAILURE_REASON]["StringValue"]

    # An outage: the event is left for a retry, so the run could not do its job: red, with the reason as a tag.
    standins.set_fault("get_case_note", status=503)
    send(sqs, ev.case_note_event_for(bad, case_notes_url=standins.case_notes_url))
    failed = consume(instance, sqs, standins, delius_pg, idle_seconds=3)
    assert not failed.success
    [failure] = [e for e in failed.all_node_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.event_specific_data.user_failure_data.description
    assert "case notes API answered HTTP 503 -> retry later" in description
    assert "HTTP 503" in run_tags(instance, failed)["hmpps/failure"]


def test_a_paused_sensor_makes_a_consumer_run_exit_without_receiving(instance, sqs, standins, delius_pg, monkeypatch):
    from integration.defs.events import jobs

    monkeypatch.setattr(jobs, "sensor_stopped", lambda instance: True)  # an operator stopped the sensor
    send(
        sqs,
        ev.case_note_event(
            "A1000AA", "00000000-0000-4000-8000-000000000001", "GEN", "OSE", case_notes_url=standins.case_notes_url
        ),
    )
    result = consume(instance, sqs, standins, delius_pg, idle_seconds=600, wait_seconds=0)
    assert result.success
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    assert output.event_specific_data.metadata["exit_reason"].value == "paused"
    assert not outcome_rows(result) and visible(sqs) == 1


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


def test_the_code_location_loads_as_the_daemon_loads_it():
    """One Definitions object at module scope (Dagster refuses two), loadable by module name."""
    from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module

    targets = loadable_targets_from_python_module("integration.definitions", working_directory=None)
    assert [t.attribute for t in targets] == ["defs"]
