"""The Delius contract: the DDL we ship is the shared contract, and our table definitions match what it creates."""

from pathlib import Path

import pytest
from sqlalchemy import inspect

from integration.delius.models import metadata
from integration.delius.schema import contract_ddl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "delius"


@pytest.mark.parametrize("dialect, name", [("postgresql", "schema.postgres.sql"), ("sqlite", "schema.sqlite.sql")])
def test_shipped_ddl_is_the_shared_contract(dialect, name):
    if not (SHARED / name).exists():
        pytest.skip("the shared contract folder is not beside this checkout")
    assert contract_ddl(dialect) == (SHARED / name).read_text(encoding="utf-8")


def test_every_table_and_column_we_use_exists_in_the_contract(delius):
    inspector = inspect(delius)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert {c.name for c in table.columns} <= columns, table.name
