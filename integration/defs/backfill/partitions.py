"""One dynamic partition per linked NOMS number (added by the queue sensor, reconciliation, the CLI or an operator)."""

import dagster as dg

from ...constants import NOMS_PARTITIONS

noms_partitions = dg.DynamicPartitionsDefinition(name=NOMS_PARTITIONS)
