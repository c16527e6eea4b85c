import dagster as dg

from .jobs import peek_dlq_job, redrive_dlq_job
from .schedules import dlq_redrive_schedule
from .sensors import dlq_redrive_report_sensor

defs = dg.Definitions(
    jobs=[redrive_dlq_job, peek_dlq_job], schedules=[dlq_redrive_schedule], sensors=[dlq_redrive_report_sensor]
)
