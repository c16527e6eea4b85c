"""The Delius contacts table: an external asset the event flow and the backfill report their writes to."""

import dagster as dg

from ...constants import DELIUS_CONTACTS

delius_contacts = dg.AssetSpec(
    key=DELIUS_CONTACTS,
    group_name="delius",
    kinds={"postgres"},
    description="NDelius CONTACT rows made from prison case notes and alerts. Delius owns the table; "
                "prison_events_job and the linkage backfill report what they wrote as materializations.",
)
