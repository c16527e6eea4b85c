import dagster as dg

from .checks import delius_contacts_match_prison_records
from .jobs import reconciliation_job
from .schedules import reconciliation_schedule
from .sensors import reconciliation_repair_sensor

defs = dg.Definitions(
    asset_checks=[delius_contacts_match_prison_records],
    jobs=[reconciliation_job],
    schedules=[reconciliation_schedule],
    sensors=[reconciliation_repair_sensor],
)
