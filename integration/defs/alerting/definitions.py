import dagster as dg

from .sensors import run_failure_notification_sensor

defs = dg.Definitions(sensors=[run_failure_notification_sensor])
