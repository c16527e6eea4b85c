"""Issue 9's proof through the real daemon: on a PostgreSQL Delius built from the version 2 contract, every flow runs
unattended under ``dagster-daemon run -w workspace.yaml``: live case notes and alerts (linked to their NSI and
event), a linkage backfill, the scheduled redrive of an event that failed for its data once the upstream answers
again, and the scheduled reconciliation that finds a contact deleted behind the integration's back and has it
restored by a repair backfill. The rows carry what Delius expects: ids from the sequences, the officer code from
``spgconfig.getnextstaffreference``, one audit row per contact with outcome ``P`` and its exact parameters.

Schedules tick every minute here (``*_CRON`` settings), so the test takes two to three minutes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.engine import Engine

from integration.core.times import london_now
from integration.delius import models as m
from integration.delius.engine import create_delius_engine
from integration.delius.reference_data import add_person, seed_reference_data
from integration.delius.schema import create_schema
from integration.local import event_factory as ev
from integration.local.standins import make_case_note
from integration_tests.fixtures.postgres import create_database, drop_database
from integration_tests.harness.daemon import DaemonProcess, stack_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.sqs, pytest.mark.daemon, pytest.mark.slow]

CASE_NOTE = "urn:uk:gov:hmpps:prison-case-note:{}"


@pytest.fixture
def delius_v2(postgres_admin_url) -> Iterator[Engine]:
    """A Delius database of this test's own, built from the version 2 DDL and seeded: the test replaces its
    officer-code function, which the session's shared database must keep."""
    url = create_database(postgres_admin_url)
    engine = create_delius_engine(url)
    try:
        create_schema(engine)
        seed_reference_data(engine)
        yield engine
    finally:
        engine.dispose()
        drop_database(postgres_admin_url, url)


def rows(engine, table, **where) -> list[dict]:
    query = select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def urns(engine) -> set[str]:
    return {r["external_reference"] for r in rows(engine, m.contact)}


def runs(project_root: Path, job_name: str) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(project_root)) as instance:
        return list(instance.get_runs(dg.RunsFilter(job_name=job_name)))


def all_finished(project_root: Path) -> bool:
    with dg.DagsterInstance.from_config(str(project_root)) as instance:
        return all(r.is_finished for r in instance.get_runs())


def test_every_flow_on_a_version_2_delius_through_the_daemon(project_root, sqs, standins, delius_v2):
    earlier = london_now() - timedelta(hours=2)
    live = add_person(delius_v2, "X900001", "A9000AA", nsis=[("RESPASS", date(2024, 1, 1))])
    add_person(delius_v2, "X900002", "A9000BB")
    with delius_v2.begin() as conn:
        # Delius's officer-code generator, made recognisable: codes it hands out have the letter Q.
        conn.execute(text("CREATE SEQUENCE test_officer_seq"))
        conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION spgconfig.getnextstaffreference(probation_area_code_in varchar) "
                "RETURNS varchar LANGUAGE sql AS $$ SELECT substr(probation_area_code_in, 1, 3) || 'Q' || "
                "lpad(nextval('test_officer_seq')::text, 3, '0') $$"
            )
        )
        before = {
            seq: conn.execute(text(f"SELECT last_value FROM {seq}")).scalar_one()
            for seq in ("contact_id_seq", "staff_id_seq")
        }
    # Live: a BCST note (linked to the person's latest RESPASS NSI and its event), a note by a new author, an alert.
    bcst = standins.add_case_note(
        "A9000AA",
        type="RESET",
        sub_type="BCST",
        text="Case note summary from Finance ...",
        created_at=earlier,
        author_name="Vera Newauthor",
        author_username="VNEWAUTHOR",
    )
    keywork = standins.add_case_note("A9000AA", type="KA", sub_type="KS", created_at=earlier)
    alert = standins.add_alert("A9000AA", code="VI", prison_code="LEI", created_at=earlier)
    # A note whose first answer cannot be read (a 300-character zone id): dead-lettered for its data, redriven by
    # the schedule once the Case Notes API answers properly.
    fixed = make_case_note("A9000AA", type="KA", sub_type="KS", created_at=earlier)
    standins.serve(
        f"{standins.case_notes_url}/case-notes/A9000AA/{fixed['caseNoteId']}",
        json.dumps({**fixed, "creationDateTime": f"2025-03-01T10:00:00[{'Z' * 300}]"}),
    )
    # Linkage: the second person's history, backfilled.
    history = [standins.add_case_note("A9000BB", type="OMIC", sub_type="OPEN", created_at=earlier) for _ in range(2)]
    for body in (
        ev.case_note_event_for(bcst, case_notes_url=standins.case_notes_url),
        ev.case_note_event_for(keywork, case_notes_url=standins.case_notes_url),
        ev.alert_event_for(alert, alerts_url=standins.alerts_url),
        ev.case_note_event("A9000AA", fixed["caseNoteId"], "KA", "KS", case_notes_url=standins.case_notes_url),
        ev.linkage_event("A9000BB", "X900002"),
    ):
        sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)

    env = stack_env(sqs, standins, delius_v2)
    env |= {
        "CONSUMER_IDLE_SECONDS": "5",
        "DLQ_REDRIVE_CRON": "* * * * *",
        "RECONCILIATION_CRON": "* * * * *",
        "RECONCILIATION_AUTO_REPAIR": "true",
        "RECONCILIATION_GRACE_MINUTES": "0",
    }
    expected = {
        CASE_NOTE.format(bcst["caseNoteId"]),
        CASE_NOTE.format(keywork["caseNoteId"]),
        f"urn:uk:gov:hmpps:prisoner-alert:active:{alert['alertUuid']}",
        *(CASE_NOTE.format(n["caseNoteId"]) for n in history),
    }
    with DaemonProcess(project_root, env, project_root / "daemon.log").start() as daemon:
        wait_until(lambda: urns(delius_v2) >= expected, 180, "live and backfilled contacts", diagnostics=daemon.tail)
        # The unreadable answer is in the DLQ with its reason (or already on its way back: the schedule ticks).
        wait_until(
            lambda: (
                CASE_NOTE.format(fixed["caseNoteId"]) not in urns(delius_v2)
                and any(r.tags.get("hmpps/dead-lettered") == "1" for r in runs(project_root, "prison_events_job"))
            ),
            120,
            "the unreadable note dead-lettered",
            diagnostics=daemon.tail,
        )
        standins.clear_answers()  # the upstream is fixed: the next scheduled redrive brings the event back
        standins.store.put_case_note(fixed)
        wait_until(
            lambda: CASE_NOTE.format(fixed["caseNoteId"]) in urns(delius_v2) and sqs.depth(sqs.dlq_url) == 0,
            240,
            "the redriven note written",
            diagnostics=daemon.tail,
        )
        written = urns(delius_v2)
        deleted = CASE_NOTE.format(keywork["caseNoteId"])
        with delius_v2.begin() as conn:  # someone deletes a contact behind the integration's back
            conn.execute(delete(m.contact).where(m.contact.c.external_reference == deleted))
        wait_until(lambda: urns(delius_v2) == written, 300, "the reconciliation's repair", diagnostics=daemon.tail)
        # The restored contact is the repair's own write: its run still records its events. Stop the daemon only
        # between the schedules' ticks, with every run finished (stopping interrupts runs: they end FAILURE).
        wait_until(lambda: all_finished(project_root), 240, "every run to finish", diagnostics=daemon.tail)
        assert daemon.alive()

    # The repair came from a reconciliation run that found the gap and a backfill it requested.
    with dg.DagsterInstance.from_config(str(project_root)) as instance:
        repairs = [
            r
            for r in instance.get_runs(dg.RunsFilter(job_name="noms_backfill_job"))
            if r.tags.get("hmpps/trigger") == "reconciliation"
        ]
        # (a reconciliation that ran while a backfill was still writing may have asked for a repair of that person
        # too: grace_minutes is 0 here; the repairs are idempotent)
        assert "A9000AA" in {r.tags["hmpps/people"] for r in repairs}
        assert {r.status for r in repairs} == {dg.DagsterRunStatus.SUCCESS}
        redrives = instance.get_runs(dg.RunsFilter(job_name="redrive_dlq_job"))
        assert any(r.status is dg.DagsterRunStatus.SUCCESS for r in redrives)

    contacts = {r["external_reference"]: r for r in rows(delius_v2, m.contact)}
    assert set(contacts) == written
    # NSI and event links.
    linked = contacts[CASE_NOTE.format(bcst["caseNoteId"])]
    assert (linked["nsi_id"], linked["event_id"]) == (live.nsi_ids[0], live.event_ids[0])
    assert contacts[CASE_NOTE.format(fixed["caseNoteId"])]["event_id"] == live.event_ids[0]
    # Ids from the sequences (the contract has no identity columns): every new id is at or past the sequence's value
    # before the run, and the sequence has reached the highest.
    with delius_v2.connect() as conn:
        after = {
            seq: conn.execute(text(f"SELECT last_value FROM {seq}")).scalar_one()
            for seq in ("contact_id_seq", "staff_id_seq")
        }
    ids = sorted(r["contact_id"] for r in contacts.values())
    assert ids[0] >= before["contact_id_seq"] and ids[-1] <= after["contact_id_seq"]
    # The new author: a staff row with an id from staff_id_seq and an officer code from the function (the prison's
    # area, Q, three digits), and the team link with its audit columns.
    [author] = rows(delius_v2, m.staff, surname="Newauthor")
    assert before["staff_id_seq"] <= author["staff_id"] <= after["staff_id_seq"]
    assert re.fullmatch(r"[A-Z0-9]{3}Q\d{3}", author["officer_code"]) and author["start_date"] is not None
    [link] = rows(delius_v2, m.staff_team, staff_id=author["staff_id"])
    assert link["created_by_user_id"] is not None and link["last_updated_datetime"] is not None
    # Audit: one 'P' row per created contact with the exact parameters, and distinct keys.
    audits = rows(delius_v2, m.audited_interaction)
    created = {
        f"dpsId='{urn.rsplit(':', 1)[1]}',contactId='{contacts[urn]['contact_id']}'"
        for urn in contacts
        if urn.startswith("urn:uk:gov:hmpps:prison-case-note:")
    }
    params = {a["interaction_parameters"] for a in audits}
    assert created <= params and {a["outcome"] for a in audits} == {"P"}
    keys = [(a["date_time"], a["business_interaction_id"], a["user_id"]) for a in audits]
    assert len(keys) == len(set(keys))
