"""Fixtures of the end-to-end tier (the shared ones are in integration_tests/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project_root(tmp_path) -> Path:
    """A directory that looks like the repo root to an operator: workspace.yaml and dagster.yaml, no DAGSTER_HOME."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "workspace.yaml", root)
    shutil.copy(ROOT / "dagster.yaml", root)
    return root
