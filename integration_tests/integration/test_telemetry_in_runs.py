"""The integration's INFO lines, the reference's telemetry events among them, land in a run's event log with the
instance settings the project ships (``python_logs`` in dagster.yaml, deploy/dagster.yaml, deploy/k8s/dagster.yaml),
and did not without ``python_log_level``: only warnings and ``context.log`` reached the run."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pytest
import yaml

from integration.clients.fakes import FakeSourceApi
from integration.constants import CAUSE_TAG, TRIGGER_TAG
from integration.defs.backfill.assets import linked_person_contacts
from integration.delius.reference_data import add_person
from integration.local.standins import make_alert, make_case_note
from integration.resources import SourceApiResource
from integration_tests.fixtures.dagster import delius_resource

ROOT = Path(__file__).resolve().parents[2]
INSTANCE_FILES = ["dagster.yaml", "deploy/dagster.yaml", "deploy/k8s/dagster.yaml"]


_FAKES: dict[str, FakeSourceApi] = {}


class HeldFakeApis(SourceApiResource):
    """A ``FakeSourceApi`` by name (Dagster copies resources, so the fake is held here, not on the resource)."""

    name: str

    def client(self) -> FakeSourceApi:
        return _FAKES[self.name]


def python_logs(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))["python_logs"]


def test_the_instance_files_ask_for_info_lines_of_the_integration_loggers():
    for path in INSTANCE_FILES:
        assert python_logs(path) == {"python_log_level": "INFO", "managed_python_loggers": ["integration"]}, path


def backfill_run_messages(delius_sqlite, settings: dict, tags: dict | None = None) -> list[str]:
    add_person(delius_sqlite, "X100001", "A1000AA")
    fake = _FAKES["run"] = FakeSourceApi()
    fake.add_case_note(make_case_note("A1000AA", type="KA", sub_type="KS"))
    fake.add_alert(make_alert("A1000AA", code="VI"))
    with dg.instance_for_test(overrides={"python_logs": settings}) as instance:
        instance.add_dynamic_partitions("noms_number", ["A1000AA"])
        result = dg.materialize(
            [linked_person_contacts],
            partition_key="A1000AA",
            instance=instance,
            tags=tags,
            resources={"delius": delius_resource(delius_sqlite), "source_api": HeldFakeApis(name="run")},
        )
        assert result.success
        records = instance.all_logs(result.run_id)
        return [r.user_message for r in records if not r.is_dagster_event]


@pytest.mark.parametrize("path", INSTANCE_FILES)
def test_a_runs_event_log_holds_the_telemetry_records_with_the_shipped_settings(delius_sqlite, path, monkeypatch):
    monkeypatch.setenv("TELEMETRY_LOG", "run")  # the default writes them to stdout only (the compute log)
    tags = {TRIGGER_TAG: "linkage", CAUSE_TAG: "probation-case.prison-identifier.updated"}
    messages = backfill_run_messages(delius_sqlite, python_logs(path), tags=tags)
    migrated = [m for m in messages if m.startswith("CaseNotesMigrated ")]
    assert migrated == [
        "CaseNotesMigrated nomsId=A1000AA crn=X100001 cause=probation-case.prison-identifier.updated "
        "caseNotesCreated=1 alertsCreated=1"
    ]


def test_without_the_level_the_info_lines_never_reached_the_run(delius_sqlite, monkeypatch):
    monkeypatch.setenv("TELEMETRY_LOG", "run")
    # A run worker is a fresh process: the integration loggers have Python's default level until Dagster sets one
    # (an earlier run in this test process set INFO, and Dagster leaves it set).
    integration = logging.getLogger("integration")
    level = integration.level
    integration.setLevel(logging.NOTSET)
    try:
        messages = backfill_run_messages(delius_sqlite, {"managed_python_loggers": ["integration"]})
    finally:
        integration.setLevel(level)
    assert not any(m.startswith("CaseNotesMigrated ") for m in messages)
    assert any(m.startswith("backfill noms=A1000AA") for m in messages)  # context.log always did
