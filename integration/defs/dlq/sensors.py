"""After each DLQ redrive: tag the run with its parked messages and post its counts."""

from collections.abc import Mapping

import dagster as dg

from ...constants import PARKED_TAG, REDRIVE_OP, REDRIVE_REPORT_SENSOR
from ...core.notices import redrive_message
from ...resources import Notifier
from .jobs import redrive_dlq_job


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name=REDRIVE_REPORT_SENSOR,
    monitored_jobs=[redrive_dlq_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    # Not Dagster's 30 s: each tick opens the instance, for a run that happens once a weekday (docs/performance.md).
    minimum_interval_seconds=300,
    description="After each DLQ redrive (scheduled or by hand): tags the run with the number of parked messages "
    f"({PARKED_TAG}) and posts its counts to NOTIFY_WEBHOOK_URL when it moved or parked anything.",
)
def dlq_redrive_report_sensor(context: dg.RunStatusSensorContext, notifier: Notifier):
    run = context.dagster_run
    counts = redrive_counts(context.instance, run.run_id)
    if counts is None:
        return dg.SkipReason("the redrive run has no counts")
    if counts["parked"]:
        context.instance.add_run_tags(run.run_id, {PARKED_TAG: str(counts["parked"])})
    if not any(counts.values()):
        return dg.SkipReason("the dead-letter queue was empty")
    notifier.post(
        redrive_message(run.run_id, counts["moved"], counts["parked"], counts["failed"], notifier.run_link(run.run_id)),
        context.log,
    )
    return None


def redrive_counts(instance: dg.DagsterInstance, run_id: str) -> dict[str, int] | None:
    """moved / parked / failed, from the output metadata of the run's redrive step."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
        event = record.dagster_event
        assert event is not None  # of_type: records of Dagster events only
        if event.step_key == REDRIVE_OP:
            metadata = event.step_output_data.metadata
            return {name: _count(metadata, name) for name in ("moved", "parked", "failed")}
    return None


def _count(metadata: Mapping[str, dg.MetadataValue], name: str) -> int:
    """A count in the redrive step's output metadata (the op writes ints); 0 when absent."""
    if name not in metadata:
        return 0
    value = metadata[name].value
    if not isinstance(value, int | float | str):
        raise TypeError(f"{name} is not a number: {type(value).__name__}")
    return int(value)
