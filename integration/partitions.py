"""Partitions: one dynamic partition per linked NOMS number (added by the sensor or by an operator)."""

import dagster as dg

noms_partitions = dg.DynamicPartitionsDefinition(name="noms_number")
