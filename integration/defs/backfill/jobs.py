"""``noms_backfill_job``: materializes people's partitions of ``linked_person_contacts``."""

import dagster as dg

from integration.defs.pods import BACKFILL_RESOURCES, pod_tags

from ...constants import BACKFILL_JOB, FLOW_BACKFILL, FLOW_TAG
from .assets import linked_person_contacts

noms_backfill_job = dg.define_asset_job(
    BACKFILL_JOB,
    selection=[linked_person_contacts],
    tags={FLOW_TAG: FLOW_BACKFILL, "dagster/max_runtime": "3600", **pod_tags(BACKFILL_RESOURCES)},
    description="Backfills the contacts of linked people: one partition per NOMS number.",
)
