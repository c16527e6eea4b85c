import dagster as dg

from .jobs import prison_events_job
from .sensors import prison_events_sensor

defs = dg.Definitions(jobs=[prison_events_job], sensors=[prison_events_sensor])
