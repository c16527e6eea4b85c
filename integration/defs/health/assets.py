"""``events_queue``: the SQS queue of HMPPS domain events and its dead-letter queue, as an external asset whose
observations and checks are the queue's health in the UI."""

import dagster as dg

from ...constants import EVENTS_QUEUE

events_queue = dg.AssetSpec(
    key=EVENTS_QUEUE,
    group_name="queue",
    kinds={"sqs"},
    description="The SQS queue of HMPPS domain events that prison_events_sensor consumes, and its dead-letter queue. "
                "Observed every minute by queue_health_sensor: depth (visible, in flight, delayed), DLQ depth, "
                "estimated oldest-message age and the consumer's state. See docs/operations.md.",
)
