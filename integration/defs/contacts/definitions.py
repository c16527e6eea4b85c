import dagster as dg

from .assets import contacts_per_day, contacts_per_hour, delius_contacts
from .sensors import contacts_rollup_sensor

defs = dg.Definitions(assets=[delius_contacts, contacts_per_hour, contacts_per_day], sensors=[contacts_rollup_sensor])
