"""``contacts_rollup_sensor``: after each clock hour and each day (Europe/London), adds up the counts of the
``delius_contacts`` reports (and of the backfills' ``linked_person_contacts`` reports) recorded in it and reports
them as a materialization of ``delius_contacts_per_hour`` / ``delius_contacts_per_day``. Launches no runs.

The cursor keeps the end of the last window reported for each kind; after a gap (the daemon down) the missed
windows are reported, at most ``core.rollup.MAX_CATCH_UP`` of each. Counts only.
"""

import json
import time
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from ...constants import CONTACTS_PER_DAY, CONTACTS_PER_HOUR, DELIUS_CONTACTS, LINKED_PERSON_CONTACTS, ROLLUP_SENSOR
from ...core.logfmt import kv
from ...core.rollup import DAY, HOUR, Window, add_backfill_counts, add_counts, due_windows

ASSETS = {HOUR: dg.AssetKey(CONTACTS_PER_HOUR), DAY: dg.AssetKey(CONTACTS_PER_DAY)}
PAGE = 1000


@dg.sensor(
    name=ROLLUP_SENSOR,
    minimum_interval_seconds=300,  # an hour's report within 5 minutes of its end; a tick costs the daemon CPU
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each hour and each day (Europe/London), reports the contacts created, updated, moved, "
    "unchanged, skipped and failed in it (summed from the delius_contacts reports) as "
    "delius_contacts_per_hour and delius_contacts_per_day, which the UI plots over time. Launches no runs.",
)
def contacts_rollup_sensor(context: dg.SensorEvaluationContext):
    cursor = _load_cursor(context.cursor)
    now = time.time()
    events: list[dg.AssetMaterialization] = []
    for kind in (HOUR, DAY):
        for window in due_windows(kind, cursor.get(kind), now):
            events.append(rollup_event(context.instance, window))
            cursor[kind] = window.end
    if not events:
        return dg.SkipReason("no hour or day has ended since the last report")
    for event in events:
        context.log.info(
            kv(
                "contacts_rollup",
                window=event.description,
                **{k: v.value for k, v in event.metadata.items() if k in ("events", "created", "failed")},
            )
        )
    return dg.SensorResult(asset_events=events, cursor=json.dumps(cursor))


def rollup_event(instance: dg.DagsterInstance, window: Window) -> dg.AssetMaterialization:
    counts = add_counts(_metadata(instance, DELIUS_CONTACTS, window))
    counts.update(add_backfill_counts(_metadata(instance, LINKED_PERSON_CONTACTS, window)))
    metadata: dict[str, Any] = {name: dg.MetadataValue.int(value) for name, value in counts.items()}
    metadata["window_start"] = dg.MetadataValue.timestamp(datetime.fromtimestamp(window.start, tz=UTC))
    metadata["window_end"] = dg.MetadataValue.timestamp(datetime.fromtimestamp(window.end, tz=UTC))
    return dg.AssetMaterialization(asset_key=ASSETS[window.kind], description=window.label, metadata=metadata)


def _metadata(instance: dg.DagsterInstance, asset: str, window: Window):
    """The metadata of every materialization of ``asset`` recorded in the window, read ``PAGE`` at a time."""
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset), after_timestamp=window.start, before_timestamp=window.end
            ),
            limit=PAGE,
            cursor=cursor,
        )
        for record in result.records:
            if record.asset_materialization is not None:
                yield record.asset_materialization.metadata
        if not result.has_more or not result.records:
            return
        cursor = result.cursor


def _load_cursor(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = {}
    return (
        {k: float(v) for k, v in value.items() if k in (HOUR, DAY) and isinstance(v, (int, float))}
        if isinstance(value, dict)
        else {}
    )
