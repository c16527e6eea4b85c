"""The code location: every feature's definitions and the resources, wired in one place.

Each folder of ``defs/`` contributes its assets, checks, jobs, schedules and sensors (its ``definitions.py``); the
resources are configured once, here. Required settings are ``EnvVar`` (read when a run or sensor starts, never at
import time); optional ones are read through ``settings.py``. The variables are listed in README.md.
"""

import dagster as dg

from .defs.alerting import definitions as alerting
from .defs.backfill import definitions as backfill
from .defs.contacts import definitions as contacts
from .defs.dlq import definitions as dlq
from .defs.events import definitions as events
from .defs.health import definitions as health
from .defs.housekeeping import definitions as housekeeping
from .defs.reconciliation import definitions as reconciliation
from .resources import ConsumerSettings, DeliusDatabase, EventsQueueResource, HmppsApis, Notifier

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
    "notifier": Notifier(),
}

defs = dg.Definitions.merge(
    events.defs,
    contacts.defs,
    backfill.defs,
    dlq.defs,
    reconciliation.defs,
    health.defs,
    housekeeping.defs,
    alerting.defs,
    dg.Definitions(resources=RESOURCES),
)
