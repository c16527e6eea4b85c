"""Run housekeeping: the nightly schedule, evaluated through Dagster, deletes only finished runs past the retention
age, in chunks."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from integration.defs.housekeeping import jobs as housekeeping
from integration.defs.housekeeping.jobs import run_housekeeping_job
from integration.defs.housekeeping.schedules import run_housekeeping_schedule


@dg.op
def succeed():
    return 1


@dg.op
def fail():
    raise dg.Failure("on purpose")


@dg.job
def ok_job():
    succeed()


@dg.job
def failing_job():
    fail()


def _finished_runs(instance, n_ok: int, n_failed: int) -> list[str]:
    ids = [ok_job.execute_in_process(instance=instance).run_id for _ in range(n_ok)]
    ids += [failing_job.execute_in_process(instance=instance, raise_on_error=False).run_id for _ in range(n_failed)]
    return ids


def _evaluate_schedule(instance) -> dg.RunRequest:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(UTC))
    result = run_housekeeping_schedule.evaluate_tick(context)
    [request] = result.run_requests
    return request


def test_schedule_deletes_finished_runs_older_than_the_retention_in_chunks(instance, monkeypatch):
    old = _finished_runs(instance, 4, 1)
    unfinished_old = instance.create_run_for_job(ok_job).run_id  # NOT_STARTED
    time.sleep(1.1)
    boundary = datetime.now(UTC)
    time.sleep(1.1)
    recent = _finished_runs(instance, 2, 1)
    # 30 days (the default retention) after `boundary`: the old runs are past it, the recent ones are not.
    monkeypatch.setattr(housekeeping, "utc_now", lambda: boundary + timedelta(days=30))
    monkeypatch.setenv("HOUSEKEEPING_CHUNK_SIZE", "2")
    monkeypatch.delenv("HOUSEKEEPING_RUN_RETENTION_DAYS", raising=False)

    request = _evaluate_schedule(instance)
    config = request.run_config["ops"]["delete_old_runs"]["config"]
    assert config["older_than_days"] == 30 and config["chunk_size"] == 2
    result = run_housekeeping_job.execute_in_process(
        run_config=request.run_config, instance=instance, tags=request.tags
    )

    assert result.success
    left = {run.run_id for run in instance.get_runs()}
    assert not set(old) & left  # past the retention: gone, event logs too
    assert set(recent) <= left and unfinished_old in left  # recent ones, and never an unfinished run
    assert result.run_id in left  # not itself
    assert not instance.all_logs(old[0])
    metadata = result.output_for_node("delete_old_runs")
    assert metadata == {"deleted": 5, "remaining_older": 0, "chunks": 3}
    [materialization] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    shown = materialization.event_specific_data.metadata
    assert shown["deleted"].value == 5 and shown["chunks"].value == 3
    assert shown["deleted_by_status"].value == {"FAILURE": 1, "SUCCESS": 4}
    assert shown["deleted_by_job"].value == {"failing_job": 1, "ok_job": 4}
    lines = [r.user_message for r in instance.all_logs(result.run_id) if r.dagster_event is None]
    assert "housekeeping_chunk chunk=3 deleted=1 deleted_so_far=5" in lines
    assert any(
        line.startswith("housekeeping deleted=5 cutoff_utc=") and "chunks=3 remaining_older=0 dry_run=false" in line
        for line in lines
    )


def test_max_runs_leaves_the_rest_for_next_time_and_dry_run_deletes_nothing(instance, monkeypatch):
    old = _finished_runs(instance, 5, 0)
    monkeypatch.setattr(housekeeping, "utc_now", lambda: datetime.now(UTC) + timedelta(days=40))

    dry = run_housekeeping_job.execute_in_process(
        instance=instance, run_config={"ops": {"delete_old_runs": {"config": {"dry_run": True}}}}
    )
    assert dry.output_for_node("delete_old_runs")["deleted"] == 0
    assert {r.run_id for r in instance.get_runs()} >= set(old)

    capped = run_housekeeping_job.execute_in_process(
        instance=instance, run_config={"ops": {"delete_old_runs": {"config": {"max_runs": 3, "chunk_size": 10}}}}
    )
    # the dry run itself is finished and old by the moved clock now: 6 candidates, 3 deleted
    assert capped.output_for_node("delete_old_runs") == {"deleted": 3, "remaining_older": 3, "chunks": 1}


def test_retention_below_the_sqs_limit_is_refused(instance, monkeypatch):
    old = _finished_runs(instance, 1, 0)
    monkeypatch.setenv("HOUSEKEEPING_RUN_RETENTION_DAYS", "7")
    monkeypatch.setattr(housekeeping, "utc_now", lambda: datetime.now(UTC) + timedelta(days=40))
    request = _evaluate_schedule(instance)
    result = run_housekeeping_job.execute_in_process(
        run_config=request.run_config, instance=instance, raise_on_error=False
    )
    assert not result.success
    assert "below 14" in result.failure_data_for_node("delete_old_runs").error.message
    assert old[0] in {r.run_id for r in instance.get_runs()}


def test_housekeeping_is_wired_into_the_code_location():
    from integration.definitions import defs

    assert defs.get_schedule_def("run_housekeeping_schedule").default_status is dg.DefaultScheduleStatus.RUNNING
    assert defs.get_job_def("run_housekeeping_job").tags["hmpps/flow"] == "operations"
