import dagster as dg

from .assets import delius_contacts

defs = dg.Definitions(assets=[delius_contacts])
