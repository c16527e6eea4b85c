"""Create the Delius contract schema (for the local stack and tests) from the DDL files shipped beside this module.

Production never calls this: there the schema belongs to Delius.
"""

from __future__ import annotations

from importlib import resources

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from .models import metadata


def contract_ddl(dialect: str) -> str:
    name = {"postgresql": "schema.postgres.sql", "sqlite": "schema.sqlite.sql"}.get(dialect)
    if name is None:
        raise ValueError(f"no contract DDL for dialect {dialect!r} (PostgreSQL and SQLite are provided)")
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _statements(ddl: str) -> list[str]:
    """The statements of a DDL file without functions (SQLite): split at semicolons, comments dropped."""
    lines = [line.split("--", 1)[0] for line in ddl.splitlines()]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def schema_exists(engine: Engine) -> bool:
    return inspect(engine).has_table("contact")


def create_schema(engine: Engine) -> None:
    """Run the contract DDL. Fails if the tables already exist (use ``schema_exists`` first)."""
    ddl = contract_ddl(engine.dialect.name)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # One script as the file is (its function body holds semicolons), on the driver's own cursor so that
            # nothing interprets the '%' in it.
            cursor = conn.connection.cursor()
            try:
                cursor.execute(ddl)
            finally:
                cursor.close()
        else:
            for stmt in _statements(ddl):
                conn.exec_driver_sql(stmt)


def truncate_all(engine: Engine) -> None:
    """Empty every contract table (tests only). Sequences keep counting: ids stay above their start values."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
