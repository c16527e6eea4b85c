"""Contacts per hour and per day: the windows (core/rollup.py) and the sensor that reports them, on a Dagster
instance in a temporary folder. No network."""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg
import pytest

from integration.constants import (
    CONTACTS_PER_DAY,
    CONTACTS_PER_HOUR,
    DELIUS_CONTACTS,
    LINKED_PERSON_CONTACTS,
    ROLLUP_SENSOR,
)
from integration.core import rollup
from integration.core.times import LONDON
from integration.defs.contacts.sensors import contacts_rollup_sensor, rollup_event


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


def test_only_complete_windows_are_due_and_the_first_time_only_the_latest():
    now = at("2026-06-10 14:20")
    (first,) = rollup.due_windows(rollup.HOUR, None, now)
    assert (first.start, first.end) == (at("2026-06-10 13:00"), at("2026-06-10 14:00"))
    assert first.label == "2026-06-10 13:00-14:00"
    assert rollup.due_windows(rollup.HOUR, first.end, now) == []
    later = rollup.due_windows(rollup.HOUR, first.end, at("2026-06-10 17:01"))
    assert [w.label for w in later] == ["2026-06-10 14:00-15:00", "2026-06-10 15:00-16:00", "2026-06-10 16:00-17:00"]
    (day,) = rollup.due_windows(rollup.DAY, None, now)
    assert day.label == "2026-06-09" and day.end == at("2026-06-10 00:00")


def test_days_follow_london_time_across_the_clock_change_and_catch_up_is_bounded():
    (day,) = rollup.due_windows(rollup.DAY, None, at("2026-03-30 08:00"))  # clocks went forward on the 29th
    assert day.label == "2026-03-29" and day.end - day.start == 23 * 3600
    many = rollup.due_windows(rollup.HOUR, at("2026-06-01 00:00"), at("2026-06-10 00:30"))
    assert len(many) == rollup.MAX_CATCH_UP[rollup.HOUR] and many[-1].end == at("2026-06-10 00:00")


def test_counts_are_added_up_from_numbers_or_metadata_values():
    reports = [
        {"created": 3, "updated": dg.MetadataValue.int(2), "failed": 1, "dispositions": {"acked": 5}},
        {"created": dg.MetadataValue.int(4), "skipped": 7, "moved": True},
    ]
    assert rollup.add_counts(reports) == {
        "created": 7,
        "updated": 2,
        "moved": 0,
        "unchanged": 0,
        "skipped": 7,
        "failed": 1,
        "events": 17,
        "reports": 2,
    }
    backfills = [{"case_notes_created": 2, "alerts_created": 1, "alerts_updated": 1}]
    assert rollup.add_backfill_counts(backfills) == {
        "created_by_backfill": 3,
        "updated_by_backfill": 1,
        "moved_by_backfill": 0,
        "people_backfilled": 1,
    }


def test_the_sensor_reports_each_finished_hour_once_with_the_sums_of_its_reports():
    with dg.instance_for_test() as instance:
        for created in (3, 4):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    DELIUS_CONTACTS,
                    metadata={"created": created, "updated": 1, "moved": 0, "unchanged": 0, "skipped": 2, "failed": 1},
                )
            )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(LINKED_PERSON_CONTACTS, partition="A1234BC", metadata={"case_notes_created": 5})
        )
        records = instance.fetch_materializations(dg.AssetKey(DELIUS_CONTACTS), limit=10).records
        window = rollup.Window(
            rollup.HOUR, min(r.timestamp for r in records) - 1, max(r.timestamp for r in records) + 1
        )
        event = rollup_event(instance, window)
        assert event.asset_key == dg.AssetKey(CONTACTS_PER_HOUR)
        values = {k: v.value for k, v in event.metadata.items()}
        assert {k: values[k] for k in ("created", "updated", "skipped", "failed", "events", "reports")} == {
            "created": 7,
            "updated": 2,
            "skipped": 4,
            "failed": 2,
            "events": 15,
            "reports": 2,
        }
        assert values["created_by_backfill"] == 5 and values["people_backfilled"] == 1

        context = dg.build_sensor_context(instance=instance, sensor_name=ROLLUP_SENSOR)
        result = contacts_rollup_sensor(context)
        assert {e.asset_key for e in result.asset_events} == {
            dg.AssetKey(CONTACTS_PER_HOUR),
            dg.AssetKey(CONTACTS_PER_DAY),
        }
        again = contacts_rollup_sensor(
            dg.build_sensor_context(instance=instance, sensor_name=ROLLUP_SENSOR, cursor=result.cursor)
        )
        assert isinstance(again, dg.SkipReason)
        assert set(json.loads(result.cursor)) == {"hour", "day"}


@pytest.mark.parametrize("raw", [None, "", "not json", "[1]", '{"hour": "x"}'])
def test_a_missing_or_damaged_cursor_starts_from_the_latest_window(raw):
    with dg.instance_for_test() as instance:
        result = contacts_rollup_sensor(
            dg.build_sensor_context(instance=instance, sensor_name=ROLLUP_SENSOR, cursor=raw)
        )
        assert len(result.asset_events) == 2
