"""The numbers the docs quote, read from the code and the instance file they describe: the README's configuration
table, the operations guide's health settings, batch size, run-queue limits and schedule/sensor count, and the
schedules page's reconciliation settings. A change on one side without the other fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from integration.core.health import HealthSettings
from integration.defs.dlq.jobs import PeekConfig, RedriveConfig
from integration.defs.dlq.schedules import DEFAULT_DLQ_REDRIVE_CRON
from integration.defs.health.checks import DEFAULT_INTERVAL_SECONDS
from integration.defs.housekeeping.jobs import DEFAULT_RETENTION_DAYS
from integration.defs.housekeeping.schedules import DEFAULT_CRON as HOUSEKEEPING_CRON
from integration.defs.reconciliation.checks import ReconciliationConfig
from integration.defs.reconciliation.schedules import DEFAULT_RECONCILIATION_CRON
from integration.resources import ConsumerSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
SCHEDULES = (ROOT / "docs" / "schedules.md").read_text(encoding="utf-8")
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def table_rows(text: str, first_header: str) -> dict[str, list[str]]:
    """Rows of the Markdown table whose first column is headed ``first_header``: first cell -> the other cells."""
    rows, inside = {}, False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells and cells[0] == first_header:
            inside = True
        elif inside and cells is None:
            inside = False
        elif inside and cells and not set(cells[0]) <= {"-", ":"}:
            rows[cells[0]] = cells[1:]
    return rows


def plain(cell: str) -> str:
    return cell.replace("`", "").strip()


def number(text: str) -> float:
    return float(text.replace(",", ""))


CONSUMER_FIELDS = {name: info.default for name, info in ConsumerSettings.model_fields.items()}


@pytest.mark.parametrize("field", sorted(CONSUMER_FIELDS))
def test_the_readme_quotes_each_consumer_default(field):
    rows = table_rows(README, "variable")
    variable = f"`CONSUMER_{field.upper()}`"
    assert variable in rows, f"README's configuration table has no row for {variable}"
    quoted = plain(rows[variable][-1])
    default = CONSUMER_FIELDS[field]
    if isinstance(default, str):
        assert quoted == default
    else:
        assert number(quoted) == default


def test_the_readme_quotes_the_schedule_defaults():
    rows = table_rows(README, "variable")
    redrive = plain(rows["`DLQ_REDRIVE_CRON`, `DLQ_REDRIVE_PARK_AFTER`, `DLQ_REDRIVE_MAX_MESSAGES`"][-1])
    assert [p.strip() for p in redrive.split(",")] == [
        DEFAULT_DLQ_REDRIVE_CRON,
        str(RedriveConfig().park_after),
        str(RedriveConfig().max_messages),
    ]
    assert plain(rows["`RECONCILIATION_CRON`, `RECONCILIATION_<FIELD>`"][-1]) == DEFAULT_RECONCILIATION_CRON
    housekeeping = plain(rows["`HOUSEKEEPING_CRON`, `HOUSEKEEPING_RUN_RETENTION_DAYS`"][-1])
    assert [p.strip() for p in housekeeping.split(",")] == [HOUSEKEEPING_CRON, str(DEFAULT_RETENTION_DAYS)]


def test_the_operations_guide_quotes_the_health_settings():
    rows = table_rows(OPERATIONS, "variable")
    defaults = HealthSettings()
    assert number(rows["`HEALTH_SENSOR_INTERVAL_SECONDS`"][-1]) == DEFAULT_INTERVAL_SECONDS
    assert number(rows["`HEALTH_STALL_SECONDS`"][-1]) == defaults.stall_seconds
    assert number(rows["`HEALTH_MAX_MESSAGE_AGE_SECONDS`"][-1]) == defaults.max_message_age_seconds
    assert number(rows["`HEALTH_HEARTBEAT_SECONDS`"][-1]) == defaults.heartbeat_seconds
    assert f"every `HEALTH_SENSOR_INTERVAL_SECONDS` ({DEFAULT_INTERVAL_SECONDS})" in OPERATIONS
    assert f"`HEALTH_STALL_SECONDS` ({defaults.stall_seconds})" in OPERATIONS
    assert f"`HEALTH_MAX_MESSAGE_AGE_SECONDS` ({defaults.max_message_age_seconds})" in OPERATIONS
    assert f"`HEALTH_HEARTBEAT_SECONDS` ({defaults.heartbeat_seconds})" in OPERATIONS


def test_the_operations_guide_quotes_the_consumer_lifetime_and_the_dlq_job_defaults():
    (lifetime,) = re.findall(r"`CONSUMER_LIFETIME_SECONDS` \((\d+) min\)", OPERATIONS)
    assert int(lifetime) * 60 == ConsumerSettings().lifetime_seconds
    (idle,) = re.findall(r"`CONSUMER_IDLE_SECONDS` \((\d+) s\)", OPERATIONS)
    assert int(idle) == ConsumerSettings().idle_seconds
    redrive = table_rows(OPERATIONS, "field")
    assert number(redrive["`max_messages`"][-1]) == RedriveConfig().max_messages
    assert number(redrive["`park_after`"][-1]) == RedriveConfig().park_after
    assert f"config `max_messages`, default {PeekConfig().max_messages}" in OPERATIONS


def test_the_operations_guide_quotes_the_run_queue_limits_of_dagster_yaml():
    runs = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]
    limits = {(lim["key"], lim.get("value")): lim["limit"] for lim in runs["tag_concurrency_limits"]}
    sentence = " ".join(re.search(r"`concurrency\.runs`: (.*?)\)\.", OPERATIONS, re.S).group(1).split())
    quoted = re.match(
        r"(\w+) runs at most, (\w+) of them event batches, (\w+) backfill, (\w+) operator or scheduled "
        r"job, and (\w+) runs of Dagster backfills",
        sentence,
    )
    assert quoted, sentence
    assert [WORDS[w] for w in quoted.groups()] == [
        runs["max_concurrent_runs"],
        limits[("hmpps/flow", "events")],
        limits[("hmpps/flow", "backfill")],
        limits[("hmpps/flow", "operations")],
        limits[("dagster/backfill", None)],
    ]
    production = table_rows(OPERATIONS, "piece")["run queue"][0]
    events, backfill = limits[("hmpps/flow", "events")], limits[("hmpps/flow", "backfill")]
    assert (
        f"`hmpps/flow: events` {events}, `backfill` {backfill}, `operations` {limits[('hmpps/flow', 'operations')]}"
        f"; `dagster/backfill` {limits[('dagster/backfill', None)]}"
    ) in production


def test_the_operations_guide_counts_and_lists_every_schedule_and_sensor():
    from integration.definitions import defs

    repository = defs.get_repository_def()
    names = {s.name for s in repository.sensor_defs} | {s.name for s in repository.schedule_defs}
    (count,) = re.findall(r"starts all (\w+) as soon as a daemon runs", OPERATIONS)
    assert WORDS[count] == len(names)
    assert {plain(name) for name in table_rows(OPERATIONS, "name")} == names
    assert f"all {count} are listed in §10" in OPERATIONS


def test_the_schedules_page_quotes_the_reconciliation_defaults():
    rows = table_rows(SCHEDULES, "field")
    defaults = ReconciliationConfig()
    for field in (
        "window_hours",
        "grace_minutes",
        "max_people",
        "concurrency",
        "time_budget_seconds",
        "sweep_days",
        "max_repairs",
    ):
        quoted = rows[f"`{field}`"][-1].split()[0]
        assert number(quoted) == getattr(defaults, field), field
    assert rows["`auto_repair`"][-1] == str(defaults.auto_repair).lower()
    assert plain(rows["cron"][-1]) == DEFAULT_RECONCILIATION_CRON


def test_the_budgets_in_the_decisions_quote_the_constants_of_the_code():
    from integration.core import notices, telemetry, text
    from integration.core.messages import MAX_ATTRIBUTE_LENGTH
    from integration.defs.backfill import assets as backfill_assets
    from integration.defs.backfill import jobs as backfill_jobs
    from integration.defs.events import jobs as events_jobs
    from integration.flows import batch

    decisions = (ROOT / "docs" / "decisions.md").read_text(encoding="utf-8")
    section = decisions.split("## Budgets", 1)[1].split("\n## ", 1)[0]
    quoted = {name: int(number(value)) for name, value in re.findall(r"`([A-Z_]+)` = ([\d,]+)", section)}
    assert quoted == {
        "MAX_PEOPLE_PER_RUN": backfill_jobs.MAX_PEOPLE_PER_RUN,
        "PEOPLE_IN_TAG": backfill_jobs.PEOPLE_IN_TAG,
        "MAX_CELL": events_jobs.MAX_CELL,
        "CLIP": text.CLIP,
        "MAX_TAG": events_jobs.MAX_TAG,
        "REASON_LIMIT": batch.REASON_LIMIT,
        "MAX_ATTRIBUTE_LENGTH": MAX_ATTRIBUTE_LENGTH,
        "_MAX_VALUE": telemetry._MAX_VALUE,
        "MAX_REASON_CHARS": notices.MAX_REASON_CHARS,
        "PREVIEW_ROWS": backfill_assets.PREVIEW_ROWS,
    }
    settings = {f"CONSUMER_{name.upper()}": value for name, value in CONSUMER_FIELDS.items()}
    consumer = re.findall(r"`(2 × )?(CONSUMER_[A-Z_]+)`\s+\(([\d,]+)\)", section)
    assert sorted(name for _, name, _ in consumer) == ["CONSUMER_MAX_BATCH"] * 2 + ["CONSUMER_REPORT_EVENTS"]
    for twice, name, value in consumer:
        assert int(number(value)) == (2 if twice else 1) * settings[name], name
