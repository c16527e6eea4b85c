"""Names an operator sees in the Dagster UI, and the tags the run queue limits act on (dagster.yaml).

One place for them, so that code, tests and docs agree. The health checks' names are the core's (``core/health.py``),
which also names the consumer sensor and the DLQ jobs in the checks' texts.
"""

from .core.health import CONSUMER_IS_ALIVE, DLQ_IS_EMPTY, OLDEST_MESSAGE_AGE_OK  # noqa: F401 (re-exported)

TIMEZONE = "Europe/London"      # schedules run on London time, as Delius keeps it

# jobs and their ops
EVENTS_JOB, EVENTS_OP = "prison_events_job", "process_prison_events"
BACKFILL_JOB = "noms_backfill_job"
REDRIVE_JOB, REDRIVE_OP = "redrive_dlq_job", "redrive_dead_letters"
PEEK_JOB, PEEK_OP = "peek_dlq_job", "peek_dead_letters"
RECONCILIATION_JOB = "reconciliation_job"
HOUSEKEEPING_JOB, HOUSEKEEPING_OP = "run_housekeeping_job", "delete_old_runs"

# assets, partitions and checks
DELIUS_CONTACTS = "delius_contacts"
LINKED_PERSON_CONTACTS = "linked_person_contacts"
EVENTS_QUEUE = "events_queue"
NOMS_PARTITIONS = "noms_number"
BACKFILL_CHECK = "every_item_has_one_contact"
RECONCILIATION_CHECK = "matches_prison_records"
HEALTH_CHECKS = "queue_health_checks"

# sensors and schedules
EVENTS_SENSOR = "prison_events_sensor"
HEALTH_SENSOR = "queue_health_sensor"
REPAIR_SENSOR = "reconciliation_repair_sensor"
FAILURE_SENSOR = "run_failure_notification_sensor"
REDRIVE_REPORT_SENSOR = "dlq_redrive_report_sensor"
REDRIVE_SCHEDULE = "dlq_redrive_schedule"
RECONCILIATION_SCHEDULE = "reconciliation_schedule"
HOUSEKEEPING_SCHEDULE = "run_housekeeping_schedule"

# tags (the run queue limits of dagster.yaml and deploy/dagster.yaml key on hmpps/flow)
FLOW_TAG = "hmpps/flow"
FLOW_EVENTS, FLOW_BACKFILL, FLOW_OPERATIONS = "events", "backfill", "operations"
TRIGGER_TAG = "hmpps/trigger"          # linkage | cli | schedule | reconciliation
CAUSE_TAG = "hmpps/cause"              # a backfill's CaseNotesMigrated.cause: the linkage event type, where known
EVENTS_TAG = "hmpps/events"            # messages a batch run holds
MESSAGES_TAG = "hmpps/messages"        # linkage messages behind a backfill run
PARKED_TAG = "hmpps/dlq-parked"        # messages a redrive left parked in the DLQ
RECONCILIATION_RUN_TAG = "hmpps/reconciliation-run"
