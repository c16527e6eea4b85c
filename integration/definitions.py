"""The code location: every definition and resource, wired in one place (design.md §3).

Each feature module exports its own ``defs`` (jobs, schedules, sensors, checks) without resources; the resources
are configured once, here, from the environment (design.md §1).
"""

import dagster as dg

from . import health
from . import housekeeping
from . import operations
from . import notifications, schedules
from .assets import delius_contacts, linked_person_contacts, noms_backfill_job
from .jobs import prison_events_job
from .resources import ConsumerSettings, DeliusDatabase, EventsQueueResource, HmppsApis
from .sensors import prison_events_sensor

RESOURCES = {
    "delius": DeliusDatabase(url=dg.EnvVar("DELIUS_DATABASE_URL")),
    "events_queue": EventsQueueResource(queue_url=dg.EnvVar("EVENTS_QUEUE_URL")),
    "source_api": HmppsApis(
        auth_url=dg.EnvVar("HMPPS_AUTH_URL"),
        client_id=dg.EnvVar("CLIENT_ID"),
        client_secret=dg.EnvVar("CLIENT_SECRET"),
        case_notes_url=dg.EnvVar("CASE_NOTES_API_URL"),
        alerts_url=dg.EnvVar("ALERTS_API_URL"),
    ),
    "consumer": ConsumerSettings(),
    "notifier": notifications.Notifier(),
}

defs = dg.Definitions.merge(
    dg.Definitions(
        assets=[delius_contacts, linked_person_contacts],
        jobs=[prison_events_job, noms_backfill_job],
        sensors=[prison_events_sensor],
    ),
    operations.defs,
    health.defs,
    schedules.defs,
    housekeeping.defs,
    dg.Definitions(resources=RESOURCES),
)
