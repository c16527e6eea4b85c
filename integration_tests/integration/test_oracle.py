"""Oracle readiness without an Oracle server: every statement the integration issues against Delius during a realistic
merge, backfill and reconciliation (run here against PostgreSQL) compiles for SQLAlchemy's Oracle dialect and uses
nothing Oracle lacks.

Captured with a ``before_execute`` listener (the statement objects, before any dialect renders them) and compiled
with ``sqlalchemy.dialects.oracle``. The few PostgreSQL-only statements (``delius/dialect.py``) carry a marker; for
those their Oracle form is compiled instead. ``deploy/README.md`` says what this does not show.
"""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, update
from sqlalchemy.dialects import oracle
from sqlalchemy.exc import CompileError
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ClauseElement, ReleaseSavepointClause
from sqlalchemy.sql.selectable import Select

from integration.clients.fakes import FakeSourceApi
from integration.core import rules
from integration.core.outcomes import Action
from integration.core.rules import ContactDraft, ContactKind
from integration.core.times import london_now
from integration.delius import dialect, queries
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.delius.store import DeliusStore
from integration.flows.backfill import backfill_people
from integration.flows.reconciliation import Limits, reconcile_people
from integration.local.standins import make_alert, make_case_note

ORACLE = oracle.dialect()
MAX_IDENTIFIER = 30  # Oracle before 12.2; NDelius names stay within it, and so must ours

FORBIDDEN = [
    (re.compile(r"\bON\s+CONFLICT\b", re.I), "ON CONFLICT"),
    (re.compile(r"\bLIMIT\b", re.I), "LIMIT"),
    (re.compile(r"\bOFFSET\b", re.I), "OFFSET"),
    (re.compile(r"\bRETURNING\b", re.I), "RETURNING"),
    (re.compile(r"\b(TRUE|FALSE)\b", re.I), "a boolean literal"),
    (re.compile(r"\bnextval\s*\(", re.I), "PostgreSQL nextval()"),
    (re.compile(r"\bgenerate_series\b|\binformation_schema\b|\bpg_\w+", re.I), "a PostgreSQL catalogue or function"),
    (re.compile(r"::"), "a PostgreSQL cast"),
    (re.compile(r"\bILIKE\b|\bNO KEY\b", re.I), "PostgreSQL-only syntax"),
    (re.compile(r'"'), "a quoted (case-sensitive) identifier"),
]
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$#]*")
CLOB_COLUMNS = {m.contact.c.notes}


def oracle_problems(statement: ClauseElement) -> list[str]:
    """What in ``statement`` Oracle would not run; empty if nothing."""
    try:
        sql = str(statement.compile(dialect=ORACLE, compile_kwargs={"render_postcompile": True}))
    except CompileError as exc:
        return [f"does not compile for Oracle ({exc}): {statement}"]
    problems = [f"{what}: {sql}" for pattern, what in FORBIDDEN if pattern.search(sql)]
    problems += [
        f"identifier over {MAX_IDENTIFIER} characters ({name}): {sql}"
        for name in IDENTIFIER.findall(sql)
        if len(name) > MAX_IDENTIFIER
    ]
    if isinstance(statement, Select):
        # Oracle cannot compare, sort, group or de-duplicate CLOBs.
        for part in (statement.whereclause, *statement._group_by_clauses, *statement._order_by_clauses):
            if part is not None and any(c in CLOB_COLUMNS for c in visitors.iterate(part)):
                problems.append(f"a CLOB in WHERE/GROUP BY/ORDER BY: {sql}")
        if statement._distinct and any(c in CLOB_COLUMNS for c in statement.selected_columns):
            problems.append(f"DISTINCT over a CLOB: {sql}")
    return problems


class Recorder:
    """Statements executed on an engine: the clause objects, and any raw driver SQL (there must be none)."""

    def __init__(self, engine):
        self.engine = engine
        self.statements: list[ClauseElement] = []
        self.raw: list[str] = []
        self.recording = True

    @contextmanager
    def paused(self):
        """Test set-up (seeding people, editing rows) is not the integration's."""
        self.recording = False
        try:
            yield
        finally:
            self.recording = True

    def before_execute(self, conn, clauseelement, multiparams, params, execution_options):
        if self.recording:
            self.statements.append(clauseelement)

    def before_cursor_execute(self, conn, cursor, statement, parameters, context, executemany):
        if self.recording and (context is None or context.compiled is None):
            self.raw.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_execute", self.before_execute)
        event.listen(self.engine, "before_cursor_execute", self.before_cursor_execute)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_execute", self.before_execute)
        event.remove(self.engine, "before_cursor_execute", self.before_cursor_execute)


def draft(
    noms: str,
    *,
    uuid_: str | None = None,
    type_="KA",
    sub_type="KS",
    content="note",
    system=None,
    legacy_id=None,
    kind=ContactKind.CASE_NOTE,
    forename="Bob",
    surname="Smith",
) -> ContactDraft:
    source_id = uuid_ or str(uuid.uuid4())
    system = system or datetime(2024, 3, 1, 10, 15, 30)
    urn = rules.case_note_urn(source_id) if kind is ContactKind.CASE_NOTE else rules.alert_urn(source_id, True)
    return ContactDraft(
        urn=urn,
        kind=kind,
        noms_number=noms,
        source_id=source_id,
        legacy_id=legacy_id,
        type=type_,
        sub_type=sub_type,
        content=content,
        contact_datetime=system,
        system_datetime=system,
        staff_forename=forename,
        staff_surname=surname,
        establishment_code="MDI" if kind is not ContactKind.CASE_NOTE else "LEI",
        alert_description="Alert X made active." if kind is not ContactKind.CASE_NOTE else None,
    )


def realistic_run(engine, recorder: Recorder) -> None:
    """Merges (creates with new staff, NSI and event links, updates, a legacy URN back-fill, a move with its Data
    Cleanse contact, skips and failures), a backfill and a reconciliation, as the flows issue them."""
    from datetime import date

    with recorder.paused():
        add_person(engine, "X100001", "A1000AA", nsis=[("RESPASS", date(2024, 1, 1))], manager_team="N07T01")
        add_person(engine, "X100002", "A2000BB")
        add_person(engine, "X100003", "A3000CC")
        add_person(engine, "X100004", "A3000CC")  # two offenders: a failure
    store = DeliusStore(engine)
    moving, legacy_note = str(uuid.uuid4()), str(uuid.uuid4())
    first = store.merge(
        [
            draft("A1000AA", uuid_=moving),
            draft("A1000AA", type_="RESET", sub_type="BCST"),
            draft("A1000AA", kind=ContactKind.ACTIVE_ALERT),
            draft("A2000BB", forename="Ann"),
            draft("Z9999ZZ"),
            draft("A3000CC"),
            draft("A1000AA", legacy_id=4242, uuid_=legacy_note),
        ]
    )
    assert [o.action for o in first][:5] == [Action.CREATED] * 4 + [Action.SKIPPED]
    with recorder.paused(), engine.begin() as conn:  # make the last one a legacy row without URN
        conn.execute(
            update(m.contact)
            .where(m.contact.c.external_reference == rules.case_note_urn(legacy_note))
            .values(
                external_reference=None, nomis_case_note_id=4242, last_updated_datetime=london_now() - timedelta(days=3)
            )
        )
    recent = london_now().replace(microsecond=0) - timedelta(days=2)
    second = store.merge(
        [
            draft("A2000BB", uuid_=moving, content="corrected"),  # a move
            draft("A1000AA", legacy_id=4242, uuid_=legacy_note, system=recent),  # URN back-fill
            draft("A2000BB", forename="Ann"),
            draft("A1000AA"),
        ]
    )
    assert second[0].action is Action.MOVED
    store.merge([draft("A2000BB", uuid_=moving, content="newer", system=datetime(2024, 3, 2))])  # an update

    source = FakeSourceApi()
    for n in range(3):
        source.add_case_note(make_case_note("A1000AA", type="KA", sub_type="KS", text=f"Backfilled {n}"))
    source.add_alert(make_alert("A1000AA", code="VI", prison_code="LEI"))
    [report] = backfill_people(["A1000AA"], source, store)
    assert report.fetch_error is None and report.failures == []
    queries.person_contact_urns(engine, "A1000AA")

    linked = queries.linked_people(engine, ["A1000AA", "A2000BB", "Z9999ZZ"])
    queries.people_with_recent_contacts(engine, london_now() - timedelta(days=7))
    queries.people_in_sweep(engine, 7, london_now().date())
    reconcile_people(sorted(linked), source, engine, Limits(grace_minutes=0))


@pytest.mark.postgres
def test_every_statement_of_a_realistic_run_compiles_for_oracle(delius_pg):
    dialect.forget_officer_code_function(delius_pg)  # so that the probe is among the statements
    with Recorder(delius_pg) as recorder:
        realistic_run(delius_pg, recorder)
    assert recorder.raw == [], "raw driver SQL bypasses the dialect"
    variants: set[str] = set()
    problems: list[str] = []
    for statement in recorder.statements:
        if isinstance(statement, ReleaseSavepointClause):
            continue  # the Oracle dialect never emits it (no RELEASE)
        variant = (
            statement.get_execution_options().get(dialect.VARIANT_OPTION)
            if hasattr(statement, "get_execution_options")
            else None
        )
        if variant:
            variants.add(variant)
            continue
        problems += oracle_problems(statement)
    for variant in sorted(variants):
        problems += oracle_problems(dialect.oracle_variant(variant))
    assert variants == {"sequence_values", "officer_code_probe"}
    assert len(recorder.statements) > 50
    assert problems == []


def test_the_oracle_forms_of_the_dialect_specific_statements():
    sequence = str(dialect.sequence_values(m.STAFF_ID_SEQ, 5, "oracle").compile(dialect=ORACLE))
    assert sequence == "SELECT staff_id_seq.NEXTVAL FROM dual CONNECT BY LEVEL <= :n"
    probe = str(dialect.officer_code_probe("oracle").compile(dialect=ORACLE))
    assert "FROM all_procedures" in probe and "object_name" in probe
    code = str(dialect.next_officer_code_statement("LEI").compile(dialect=ORACLE))
    assert code.startswith("SELECT spgconfig.getnextstaffreference(:") and code.endswith("FROM DUAL")
    assert dialect.officer_code_probe("sqlite") is None


def test_the_checks_catch_what_oracle_lacks():
    from sqlalchemy import func, insert, literal_column, select, text, true
    from sqlalchemy.dialects import postgresql

    assert oracle_problems(postgresql.insert(m.contact).values(contact_id=1).on_conflict_do_nothing())
    assert oracle_problems(insert(m.contact).values(contact_id=1).returning(m.contact.c.contact_id))
    assert oracle_problems(text("select contact_id from contact where soft_deleted = false"))
    assert not oracle_problems(select(m.contact.c.contact_id).where(true()))  # the dialect renders 1 = 1
    assert oracle_problems(text("select nextval('contact_id_seq')"))
    assert oracle_problems(text("select 1 from contact limit 1"))
    assert oracle_problems(select(literal_column("a" * 31)))
    assert oracle_problems(select(m.contact.c.contact_id).where(m.contact.c.notes == "x"))
    assert oracle_problems(select(m.contact.c.notes).distinct())
    assert oracle_problems(select(m.contact.c.contact_id).order_by(m.contact.c.notes))
    assert not oracle_problems(select(func.count()).select_from(m.contact).where(m.contact.c.offender_id % 7 == 1))


def test_notes_are_a_clob_and_timestamps_dates_on_oracle():
    from sqlalchemy.schema import CreateTable

    ddl = str(CreateTable(m.contact).compile(dialect=ORACLE))
    assert re.search(r"\bnotes CLOB\b", ddl)
    assert re.search(r"\bcontact_date DATE NOT NULL\b", ddl) and re.search(r"\bcontact_start_time DATE\b", ddl)
