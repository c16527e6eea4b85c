"""``reconciliation_job``: runs the reconciliation check (nightly by schedule, or by hand)."""

import dagster as dg

from integration.defs.pods import OPERATIONS_RESOURCES, pod_tags

from ...constants import FLOW_OPERATIONS, FLOW_TAG, RECONCILIATION_JOB
from .checks import delius_contacts_match_prison_records

reconciliation_job = dg.define_asset_job(
    RECONCILIATION_JOB,
    selection=dg.AssetSelection.checks(delius_contacts_match_prison_records),
    tags={FLOW_TAG: FLOW_OPERATIONS, "dagster/max_runtime": "3600", **pod_tags(OPERATIONS_RESOURCES)},
    description="Compares the Delius contacts of recently changed people with their prison records "
    "(check delius_contacts / matches_prison_records).",
)
