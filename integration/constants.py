"""Names an operator sees in the Dagster UI, and the tags the run queue limits act on (dagster.yaml).

One place for them, so that code, tests and docs agree. The health checks' names are the core's (``core/health.py``),
which also names the consumer sensor and the DLQ jobs in the checks' texts.
"""

from .core.health import CONSUMER_IS_ALIVE, DLQ_IS_EMPTY, OLDEST_MESSAGE_AGE_OK  # noqa: F401 (re-exported)

TIMEZONE = "Europe/London"  # schedules run on London time, as Delius keeps it

# jobs and their ops
EVENTS_JOB, EVENTS_OP = "prison_events_job", "process_prison_events"
BACKFILL_JOB, BACKFILL_OP = "noms_backfill_job", "backfill_people"
REDRIVE_JOB, REDRIVE_OP = "redrive_dlq_job", "redrive_dead_letters"
PEEK_JOB, PEEK_OP = "peek_dlq_job", "peek_dead_letters"
RECONCILIATION_JOB = "reconciliation_job"
HOUSEKEEPING_JOB, HOUSEKEEPING_OP = "run_housekeeping_job", "delete_old_runs"

# assets, partitions and checks
DELIUS_CONTACTS = "delius_contacts"
CONTACTS_PER_HOUR, CONTACTS_PER_DAY = "delius_contacts_per_hour", "delius_contacts_per_day"
LINKED_PERSON_CONTACTS = "linked_person_contacts"
EVENTS_QUEUE = "events_queue"
NOMS_PARTITIONS = "noms_number"
BACKFILL_CHECK = "every_item_has_one_contact"
RECONCILIATION_CHECK = "matches_prison_records"
HEALTH_CHECKS = "queue_health_checks"

# sensors and schedules
EVENTS_SENSOR = "prison_events_sensor"
HEALTH_SENSOR = "queue_health_sensor"
ROLLUP_SENSOR = "contacts_rollup_sensor"
REPAIR_SENSOR = "reconciliation_repair_sensor"
FAILURE_SENSOR = "run_failure_notification_sensor"
REDRIVE_REPORT_SENSOR = "dlq_redrive_report_sensor"
REDRIVE_SCHEDULE = "dlq_redrive_schedule"
RECONCILIATION_SCHEDULE = "reconciliation_schedule"
HOUSEKEEPING_SCHEDULE = "run_housekeeping_schedule"

# tags (the run queue limits of dagster.yaml and deploy/dagster.yaml key on hmpps/flow)
FLOW_TAG = "hmpps/flow"
FLOW_EVENTS, FLOW_BACKFILL, FLOW_OPERATIONS = "events", "backfill", "operations"
TRIGGER_TAG = "hmpps/trigger"  # linkage | ui | cli | schedule | reconciliation
PEOPLE_TAG = "hmpps/people"  # NOMS numbers a backfill run holds (up to a few; else their count)
CONSUMER_UNTIL_TAG = "hmpps/consumer-until"  # when a consumer run plans to exit (epoch seconds)
FAILURE_TAG = "hmpps/failure"  # why a run failed, in short (ids and counts only)
DEAD_LETTERED_TAG = "hmpps/dead-lettered"  # events a consumer run dead-lettered for their data (a warning)
CAUSE_TAG = "hmpps/cause"  # a backfill's CaseNotesMigrated.cause: the linkage event type, where known
MESSAGES_TAG = "hmpps/messages"  # linkage messages behind a backfill run
PARKED_TAG = "hmpps/dlq-parked"  # messages a redrive left parked in the DLQ
RECONCILIATION_RUN_TAG = "hmpps/reconciliation-run"
