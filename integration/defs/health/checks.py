"""The three queue health checks of ``events_queue`` (their specs). ``queue_health_sensor`` reports them every
minute without a run; the asset's own function (``assets.py``) evaluates them in a run, each on its own or all
together (the UI's *Execute* and *Execute all*, or *Materialize*)."""

import dagster as dg

from ...constants import CONSUMER_IS_ALIVE, DLQ_IS_EMPTY, OLDEST_MESSAGE_AGE_OK
from .observe import EVENTS_QUEUE_KEY

DEFAULT_INTERVAL_SECONDS = 60

CHECK_SPECS = [
    dg.AssetCheckSpec(
        DLQ_IS_EMPTY,
        asset=EVENTS_QUEUE_KEY,
        description="The dead-letter queue is empty. Fails (ERROR) with the number of messages waiting "
        "for an operator, and stays failed until the DLQ is empty: peek_dlq_job, fix the "
        "cause (or report unreadable messages to the publisher), redrive_dlq_job.",
    ),
    dg.AssetCheckSpec(
        CONSUMER_IS_ALIVE,
        asset=EVENTS_QUEUE_KEY,
        description="Messages are not left waiting: fails (ERROR) when messages wait and nothing has "
        "been received or processed for HEALTH_STALL_SECONDS, or the queue sensor's latest "
        "tick failed or it stopped ticking; WARN while prison_events_sensor is stopped.",
    ),
    dg.AssetCheckSpec(
        OLDEST_MESSAGE_AGE_OK,
        asset=EVENTS_QUEUE_KEY,
        description="The oldest message is younger than HEALTH_MAX_MESSAGE_AGE_SECONDS (WARN; ERROR "
        "above three times that). Estimated from the SentTimestamp of received messages and "
        "the time visible messages have been waiting.",
    ),
]
