"""Engines for the Delius database: Oracle (NDelius, ``oracle+oracledb://``), PostgreSQL (tests, stand-ins built from
the contract), SQLite (the local stack)."""

from __future__ import annotations

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

SQLITE_BUSY_TIMEOUT_SECONDS = 30


def create_delius_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine that is safe for several concurrent run processes.

    SQLite: WAL journal, a busy timeout, foreign keys on, and ``BEGIN IMMEDIATE`` so two writers queue for the lock
    instead of failing with "database is locked" when a read transaction upgrades to a write.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every sqlite test
            dbapi_connection.isolation_level = None  # let the "begin" hook below emit BEGIN
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if parsed.database and parsed.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection):  # pragma: no cover
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
