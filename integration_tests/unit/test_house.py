"""The house rules, checked: the core is pure, the layers import inward only, names agree, the code location loads,
and the project cites only its own files."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import dagster as dg
import pytest

from integration import constants
from integration.core import health

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "integration"


def imports_of(path: Path) -> list[str]:
    """Absolute module names imported by a file (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append(".".join(base + ([node.module] if node.module else [])))
            else:
                found.append(node.module or "")
    return found


def modules_in(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules_in("core"), ids=lambda p: p.name)
def test_the_core_imports_only_the_standard_library_and_itself(path):
    for name in imports_of(path):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or name.startswith("integration.core"), f"{path.name} imports {name}"


@pytest.mark.parametrize(
    "folder, forbidden",
    [
        ("core", ("integration.flows", "integration.delius", "integration.clients", "integration.defs")),
        ("flows", ("dagster", "integration.defs", "integration.resources", "boto3", "requests")),
        ("delius", ("dagster", "integration.flows", "integration.defs", "integration.clients")),
        ("clients", ("dagster", "integration.flows", "integration.defs", "integration.delius", "sqlalchemy")),
    ],
)
def test_layers_import_inward_only(folder, forbidden):
    for path in modules_in(folder):
        for name in imports_of(path):
            assert not name.startswith(forbidden), f"{path.relative_to(ROOT)} imports {name}"


def test_the_code_location_loads_and_uses_the_names_of_constants():
    from integration.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    jobs = {job.name for job in repository.get_all_jobs()}
    sensors = {sensor.name for sensor in repository.sensor_defs}
    schedules = {schedule.name for schedule in repository.schedule_defs}
    assert {
        constants.EVENTS_JOB,
        constants.BACKFILL_JOB,
        constants.REDRIVE_JOB,
        constants.PEEK_JOB,
        constants.RECONCILIATION_JOB,
        constants.HOUSEKEEPING_JOB,
    } <= jobs
    assert {
        constants.EVENTS_SENSOR,
        constants.HEALTH_SENSOR,
        constants.REPAIR_SENSOR,
        constants.FAILURE_SENSOR,
        constants.REDRIVE_REPORT_SENSOR,
        constants.ROLLUP_SENSOR,
    } == sensors
    assert {constants.REDRIVE_SCHEDULE, constants.RECONCILIATION_SCHEDULE, constants.HOUSEKEEPING_SCHEDULE} == schedules
    # The checks' texts name the consumer sensor and the DLQ jobs: the same objects.
    assert (health.CONSUMER_SENSOR, health.PEEK_JOB, health.REDRIVE_JOB) == (
        constants.EVENTS_SENSOR,
        constants.PEEK_JOB,
        constants.REDRIVE_JOB,
    )


def test_every_feature_folder_has_its_definitions_and_the_root_wires_them_all():
    features = sorted(p.name for p in (PACKAGE / "defs").iterdir() if p.is_dir() and p.name != "__pycache__")
    wired = (PACKAGE / "definitions.py").read_text(encoding="utf-8")
    for feature in features:
        assert (PACKAGE / "defs" / feature / "definitions.py").is_file(), feature
        assert f"from .defs.{feature} import definitions as {feature}" in wired, feature


OUTSIDE = re.compile(r"design\.md|reference-behaviour|dagster-notes §|upstream-apis §|style\.md|\.\./shared/spec")


def test_comments_and_docs_cite_only_files_in_the_repository():
    texts = [
        p
        for p in (
            list(PACKAGE.rglob("*.py"))
            + list((ROOT / "integration_tests").rglob("*.py"))
            + list((ROOT / "bench").rglob("*.py"))
            + list((ROOT / "docs").rglob("*.md"))
            + list((ROOT / "deploy").rglob("*"))
            + [ROOT / "README.md", ROOT / "dagster.yaml"]
        )
        if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".yml") and p != Path(__file__).resolve()
    ]
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in texts
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []
