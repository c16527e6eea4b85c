"""The Delius contract: the DDL we ship is the shared contract, and our table definitions match what it creates."""

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import inspect

from integration.delius.models import metadata
from integration.delius.schema import contract_ddl

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _contract_dir() -> Path | None:
    """The shared contract: $DELIUS_CONTRACT_DIR, else ``shared/delius`` beside this checkout, beside the main
    checkout of a git worktree, or beside the repository it was cloned from (CI runs in a fresh clone elsewhere)."""
    if os.environ.get("DELIUS_CONTRACT_DIR"):
        return Path(os.environ["DELIUS_CONTRACT_DIR"])
    candidates = [ROOT.parent / "shared" / "delius"]
    common = _git("rev-parse", "--git-common-dir")
    if common:
        candidates.append((ROOT / common).resolve().parent.parent / "shared" / "delius")
    origin = _git("config", "--get", "remote.origin.url")
    if origin and "://" not in origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "delius")
    return next((c for c in candidates if c.is_dir()), None)


SHARED = _contract_dir()


@pytest.mark.parametrize("dialect, name", [("postgresql", "schema.postgres.sql"), ("sqlite", "schema.sqlite.sql")])
def test_shipped_ddl_is_the_shared_contract(dialect, name):
    if SHARED is None or not (SHARED / name).exists():
        pytest.skip("the shared contract folder is not beside this checkout (set DELIUS_CONTRACT_DIR)")
    assert contract_ddl(dialect) == (SHARED / name).read_text(encoding="utf-8")


def test_every_table_and_column_we_use_exists_in_the_contract(delius):
    inspector = inspect(delius)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert {c.name for c in table.columns} <= columns, table.name
