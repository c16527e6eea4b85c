import dagster as dg

from .jobs import run_housekeeping_job
from .schedules import run_housekeeping_schedule

defs = dg.Definitions(jobs=[run_housekeeping_job], schedules=[run_housekeeping_schedule])
