import dagster as dg

from .assets import linked_person_contacts
from .jobs import noms_backfill_job

defs = dg.Definitions(assets=[linked_person_contacts], jobs=[noms_backfill_job])
