import dagster as dg

from .assets import events_queue
from .checks import queue_health_checks
from .sensors import queue_health_sensor

defs = dg.Definitions(assets=[events_queue], asset_checks=[queue_health_checks], sensors=[queue_health_sensor])
