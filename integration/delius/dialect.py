"""The few statements that differ between PostgreSQL, Oracle (NDelius) and SQLite (the local stack).

* **New ids** (``next_ids``): ``contact`` and ``staff`` ids come from ``contact_id_seq`` / ``staff_id_seq``. The
  store fetches the values a batch needs in one statement and inserts explicit ids (a multi-row ``INSERT ...
  RETURNING`` is not portable to Oracle). SQLite has no sequences: the id is the rowid, and the store takes
  ``max(id) + 1`` onwards, which is what SQLite itself assigns -- safe because a SQLite write transaction
  (``BEGIN IMMEDIATE``, ``engine.py``) holds the database's only write lock.
* **Officer codes** (``officer_code_function``): Delius has ``spgconfig.getnextstaffreference``; whether this
  database has it is probed once per engine in the catalogue (PostgreSQL ``information_schema.routines``, Oracle
  ``all_procedures``: both list only routines the user may execute). SQLite never has it.

Every other statement the integration issues is dialect-neutral SQLAlchemy Core. The PostgreSQL variants here are
marked with the execution option ``VARIANT_OPTION`` so that ``integration_tests/test_oracle.py`` can compile their
Oracle counterparts (``oracle_variant``) instead.
"""

from __future__ import annotations

import threading
import weakref

from sqlalchemy import Sequence, func, literal_column, select, table, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Executable

from . import models as m

VARIANT_OPTION = "delius_dialect_variant"
OFFICER_CODE_SCHEMA, OFFICER_CODE_FUNCTION = "spgconfig", "getnextstaffreference"

_SEQUENCES = {"contact": m.CONTACT_ID_SEQ, "staff": m.STAFF_ID_SEQ}
_ID_COLUMNS = {"contact": m.contact.c.contact_id, "staff": m.staff.c.staff_id}
_function_cache: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()
_function_cache_lock = threading.Lock()


def next_ids(conn: Connection, table_name: str, count: int) -> list[int]:
    """``count`` new ids for ``contact`` or ``staff`` rows, in ascending order, inside the caller's transaction."""
    if count <= 0:
        return []
    name = conn.dialect.name
    if name in ("postgresql", "oracle"):
        ids = list(conn.execute(sequence_values(_SEQUENCES[table_name], count, name)).scalars())
        if len(ids) != count:
            raise RuntimeError(f"{_SEQUENCES[table_name].name} gave {len(ids)} values for {count}")
        return sorted(ids)
    if name == "sqlite":
        column = _ID_COLUMNS[table_name]
        start = conn.execute(select(func.coalesce(func.max(column), 0))).scalar_one() + 1
        return list(range(start, start + count))
    if conn.dialect.supports_sequences:
        seq = _SEQUENCES[table_name]
        return [conn.execute(select(seq.next_value())).scalar_one() for _ in range(count)]
    raise NotImplementedError(f"no id source for {table_name} on {name}")


def sequence_values(seq: Sequence, count: int, dialect_name: str) -> Executable:
    """One statement giving ``count`` next values of ``seq``."""
    if dialect_name == "postgresql":
        return (
            select(seq.next_value())
            .select_from(func.generate_series(1, count))
            .execution_options(**{VARIANT_OPTION: "sequence_values"})
        )
    if dialect_name == "oracle":
        return text(f"SELECT {seq.name}.NEXTVAL FROM dual CONNECT BY LEVEL <= :n").bindparams(n=count)
    raise NotImplementedError(dialect_name)


def officer_code_probe(dialect_name: str) -> Executable | None:
    """A count of the officer-code routines this user can execute (None: this kind of database has none)."""
    if dialect_name == "postgresql":
        routines = table(
            "routines", literal_column("routine_schema"), literal_column("routine_name"), schema="information_schema"
        )
        return (
            select(func.count())
            .select_from(routines)
            .where(
                literal_column("routine_schema") == OFFICER_CODE_SCHEMA,
                literal_column("routine_name") == OFFICER_CODE_FUNCTION,
            )
            .execution_options(**{VARIANT_OPTION: "officer_code_probe"})
        )
    if dialect_name == "oracle":
        procedures = table("all_procedures", literal_column("object_name"), literal_column("procedure_name"))
        return (
            select(func.count())
            .select_from(procedures)
            .where(
                literal_column("object_name") == OFFICER_CODE_SCHEMA.upper(),
                literal_column("procedure_name") == OFFICER_CODE_FUNCTION.upper(),
            )
        )
    return None


def oracle_variant(name: str) -> Executable:
    """The Oracle form of a marked PostgreSQL statement (for the Oracle compilation test)."""
    if name == "sequence_values":
        return sequence_values(m.CONTACT_ID_SEQ, 3, "oracle")
    if name == "officer_code_probe":
        probe = officer_code_probe("oracle")
        assert probe is not None
        return probe
    raise KeyError(name)


def has_officer_code_function(conn: Connection) -> bool:
    """Whether ``spgconfig.getnextstaffreference`` can be called here; probed once per engine (on ``conn``)."""
    engine = conn.engine
    with _function_cache_lock:
        known = _function_cache.get(engine)
    if known is not None:
        return known
    probe = officer_code_probe(engine.dialect.name)
    found = bool(conn.execute(probe).scalar()) if probe is not None else False
    with _function_cache_lock:
        _function_cache[engine] = found
    return found


def forget_officer_code_function(engine: Engine) -> None:
    """Probe again on next use (tests that drop or create the function)."""
    with _function_cache_lock:
        _function_cache.pop(engine, None)


def next_officer_code_statement(prefix: str) -> Executable:
    """Delius's next free officer code for a 3-character prefix (may be null)."""
    return select(getattr(getattr(func, OFFICER_CODE_SCHEMA), OFFICER_CODE_FUNCTION)(prefix))
