"""The Delius contacts table: an external asset the event flow reports its writes to, and its hourly and daily
rollups (reported by ``contacts_rollup_sensor``), whose numbers the UI plots over time."""

from datetime import timedelta

import dagster as dg

from ...constants import CONTACTS_PER_DAY, CONTACTS_PER_HOUR, DELIUS_CONTACTS

delius_contacts = dg.AssetSpec(
    key=DELIUS_CONTACTS,
    group_name="delius",
    kinds={"postgres"},
    description="NDelius CONTACT rows made from prison case notes and alerts. Delius owns the table; "
    "prison_events_job reports what it wrote as materializations (counts per batch). Per hour and per "
    "day: delius_contacts_per_hour, delius_contacts_per_day.",
)

_ROLLUP = (
    "Counts created, updated, moved, unchanged, skipped, failed, events (their sum) and reports (how many "
    "delius_contacts reports were added up), and what backfills wrote (created_by_backfill, "
    "updated_by_backfill, moved_by_backfill, people_backfilled). Reported by contacts_rollup_sensor; "
    "Metadata -> Plots shows them over time. Counts only."
)

contacts_per_hour = dg.AssetSpec(
    key=CONTACTS_PER_HOUR,
    group_name="delius",
    deps=[DELIUS_CONTACTS],
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=3), warn_window=timedelta(hours=2)),
    description="Contacts written per clock hour (Europe/London), one report a few minutes after each hour. " + _ROLLUP,
)

contacts_per_day = dg.AssetSpec(
    key=CONTACTS_PER_DAY,
    group_name="delius",
    deps=[DELIUS_CONTACTS],
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=50), warn_window=timedelta(hours=26)),
    description="Contacts written per day (Europe/London), one report shortly after midnight. " + _ROLLUP,
)
