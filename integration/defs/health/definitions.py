import dagster as dg

from .assets import events_queue
from .sensors import queue_health_sensor

defs = dg.Definitions(assets=[events_queue], sensors=[queue_health_sensor])
