"""Beyond the reference, through the real daemon (``dagster-daemon run -w workspace.yaml`` with the project's
dagster.yaml): a note moved in the prison leaves no contact on the previous person and a Data Cleanse contact there; a
merge of two prison records is backfilled under the new NOMS number without duplicates; a resynced alert lands on
Delius's UNK institution; and the runs' logs hold the reference's telemetry events with their keys.

Everything is real and out of process but the stand-ins (in this process, so the test moves notes in their store):
moto's SQS server, PostgreSQL, the daemon with its code server and run workers.
"""

from __future__ import annotations

import json
import re
import uuid

import dagster as dg
import pytest
from sqlalchemy import select, update

from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.local import event_factory as ev
from integration.local.standins import make_amendment
from integration_tests.harness.daemon import DaemonProcess, stack_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.sqs, pytest.mark.daemon, pytest.mark.slow]

UNK_LINE = "Establishment details were not available when this contact was created."
NOTE_KEYS = ["caseNoteId", "type", "subType", "eventId", "created", "occurrence", "location"]
ALERT_KEYS = ["alertUuid", "type", "subType", "created", "activeFrom"]


def contacts(engine, **where) -> list[dict]:
    query = select(m.contact)
    for column, value in where.items():
        query = query.where(m.contact.c[column] == value)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(m.contact.c.contact_id)).mappings()]


def logfmt(line: str) -> tuple[str, dict[str, str]]:
    """``Name k=v k="v w"`` -> (name, {k: v}) in order, as a log pipeline reads it."""
    name, _, rest = line.partition(" ")
    fields = {
        key: (json.loads(quoted) if quoted else bare)
        for key, quoted, bare in re.findall(r'([A-Za-z_]+)=(?:("(?:[^"\\]|\\.)*")|([^ ]*))', rest)
    }
    return name, fields


def test_moves_merges_resynced_alerts_and_telemetry_through_the_daemon(project_root, sqs, standins, delius_pg):
    wrong = add_person(delius_pg, "X700001", "A7000AA", manager_team="N07T01")
    right = add_person(delius_pg, "X700002", "B7000BB", manager_team=None)
    merged = add_person(delius_pg, "X700003", "C7000CC", manager_team="N07T02")
    add_person(delius_pg, "X700004", "E7000EE")

    def send(body: str) -> None:
        sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)

    env = stack_env(sqs, standins, delius_pg)
    env.pop("HOME")
    env["TELEMETRY_LOG"] = "run"  # the telemetry lines in the runs' event logs too (default: stdout only), to read them
    log = project_root / "daemon.log"

    with DaemonProcess(project_root, env, log).start() as daemon:
        # 1. A note on the wrong person, and a person to be merged, linked with their history.
        note = standins.add_case_note("A7000AA", type="KA", sub_type="KS")
        history = [standins.add_case_note("C7000CC", type="OMIC", sub_type="OPEN") for _ in range(3)]
        old_alert = standins.add_alert("C7000CC", code="VI", prison_code="LEI")
        send(ev.case_note_event_for(note, case_notes_url=standins.case_notes_url))
        send(ev.linkage_event("C7000CC", "X700003"))
        wait_until(
            lambda: len(contacts(delius_pg)) == 5 and sqs.depth() == 0,
            150,
            "the first five contacts",
            diagnostics=daemon.tail,
        )
        [before] = contacts(delius_pg, external_reference=f"urn:uk:gov:hmpps:prison-case-note:{note['caseNoteId']}")
        assert before["offender_id"] == wrong.offender_id

        # 2. The prison moves the note to B7000BB; NOMIS merges C7000CC into D7000DD (Delius's NOMS number replaced,
        #    the notes moved with their ids and times, one amended since; the alerts resynced without prison code);
        #    an alert without prison code for E7000EE.
        [moved] = standins.store.move_case_notes("A7000AA", "B7000BB", [note["caseNoteId"]])
        with delius_pg.begin() as conn:
            conn.execute(update(m.offender).where(m.offender.c.crn == "X700003").values(noms_number="D7000DD"))
        merge_moved = standins.store.move_case_notes("C7000CC", "D7000DD")
        amended = dict(merge_moved[0], amendments=[make_amendment("Later", author_name="Jo Bloggs")])
        standins.store.put_case_note(amended)
        [resynced] = standins.store.resync_alerts("D7000DD", [old_alert])
        standins.store.resync_alerts("C7000CC", [])
        unk_alert = standins.add_alert("E7000EE", code="VI", prison_code=None)
        send(ev.case_note_moved_event(moved, "A7000AA", case_notes_url=standins.case_notes_url))
        for each in merge_moved:  # the Case Notes API's moved events of the merge: the contacts are already right
            send(ev.case_note_moved_event(each, "C7000CC", case_notes_url=standins.case_notes_url))
        send(ev.identifier_updated_event("D7000DD", "X700003", "C7000CC"))
        send(ev.alert_event_for(unk_alert, alerts_url=standins.alerts_url))

        def settled() -> bool:
            moved_row = contacts(delius_pg, contact_id=before["contact_id"])[0]
            return (
                moved_row["offender_id"] == right.offender_id
                and len(contacts(delius_pg, description="Data Cleanse")) == 1
                and len(contacts(delius_pg, offender_id=merged.offender_id)) == 5
                and len(contacts(delius_pg)) == 8
                and sqs.depth() == 0
            )

        wait_until(settled, 180, "the move, the merge's backfill and the UNK alert", diagnostics=daemon.tail)
        with dg.DagsterInstance.from_config(str(project_root)) as instance:
            # the backfills finished (an event run may still be at work, or waiting for more: it logs as it goes)
            wait_until(
                lambda: (
                    sorted(
                        r.tags.get("hmpps/people")
                        for r in instance.get_runs(
                            dg.RunsFilter(job_name="noms_backfill_job", statuses=[dg.DagsterRunStatus.SUCCESS])
                        )
                    )
                    == ["C7000CC", "D7000DD"]
                ),
                120,
                "both backfill runs to succeed",
                diagnostics=daemon.tail,
            )

    # The moved note: no contact left on the previous person but its Data Cleanse contact.
    on_wrong = contacts(delius_pg, offender_id=wrong.offender_id)
    assert [r["description"] for r in on_wrong] == ["Data Cleanse"]
    [moved_row] = contacts(delius_pg, offender_id=right.offender_id)
    assert moved_row["contact_id"] == before["contact_id"]
    # The merged record: its notes once each, the amended one updated, the resynced alert next to the old one.
    urns = [r["external_reference"] for r in contacts(delius_pg, offender_id=merged.offender_id)]
    assert len(urns) == len(set(urns)) == 5
    assert {f"urn:uk:gov:hmpps:prison-case-note:{n['caseNoteId']}" for n in history} <= set(urns)
    assert f"urn:uk:gov:hmpps:prisoner-alert:active:{resynced['alertUuid']}" in urns
    [updated] = contacts(delius_pg, external_reference=f"urn:uk:gov:hmpps:prison-case-note:{amended['caseNoteId']}")
    assert "[Jo Bloggs updated the case notes on" in updated["notes"]
    # The resynced alert: on the UNK institution's provider, with the UNK line.
    unk_urn = f"urn:uk:gov:hmpps:prisoner-alert:active:{unk_alert['alertUuid']}"
    [unk_row] = contacts(delius_pg, external_reference=unk_urn)
    assert UNK_LINE in unk_row["notes"]
    with delius_pg.connect() as conn:
        assert (
            conn.execute(
                select(m.probation_area.c.code).where(
                    m.probation_area.c.probation_area_id == unk_row["probation_area_id"]
                )
            ).scalar()
            == "UNK"
        )

    # The runs' logs hold the reference's events with their keys.
    with dg.DagsterInstance.from_config(str(project_root)) as instance:
        runs = instance.get_runs()
        backfills = [r for r in runs if r.job_name == "noms_backfill_job"]
        assert sorted(r.tags["hmpps/people"] for r in backfills) == ["C7000CC", "D7000DD"]
        assert {r.status for r in backfills} == {dg.DagsterRunStatus.SUCCESS}
        lines = [
            record.user_message
            for run in runs
            for record in instance.all_logs(run.run_id)
            if not record.is_dagster_event
        ]
    events = [
        logfmt(line)
        for line in lines
        if line.split(" ", 1)[0]
        in (
            "CaseNoteMerged",
            "CaseNoteIgnored",
            "CaseNoteMergeFailed",
            "CaseNoteNotFound",
            "AlertMerged",
            "AlertMergeFailed",
            "AlertNotFound",
            "CaseNotesMigrated",
            "DataCleanseNotificationFailure",
        )
    ]
    merged_notes = [fields for name, fields in events if name == "CaseNoteMerged"]
    [move] = [f for f in merged_notes if f.get("action") == "Moved"]
    assert list(move) == NOTE_KEYS + ["crn", "noms", "action"]
    assert (move["caseNoteId"], move["crn"], move["noms"]) == (note["caseNoteId"], "X700002", "B7000BB")
    assert any(f.get("action") == "Created" and f["caseNoteId"] == note["caseNoteId"] for f in merged_notes)
    # The merge's moved events found their contacts on the same Delius person: unchanged, or the amended one updated
    # (if its moved event came before the backfill); never moved.
    for each in merge_moved:
        actions = {f.get("action") for f in merged_notes if f["caseNoteId"] == each["caseNoteId"]}
        assert "Moved" not in actions and actions & {None, "Updated"}, (each["caseNoteId"], actions)
    [unk] = [f for name, f in events if name == "AlertMerged" and f["alertUuid"] == unk_alert["alertUuid"]]
    assert list(unk) == ALERT_KEYS + ["crn", "noms", "action"] and unk["action"] == "Created"
    migrated = {fields["nomsId"]: fields for name, fields in events if name == "CaseNotesMigrated"}
    assert migrated["C7000CC"] == {
        "nomsId": "C7000CC",
        "crn": "X700003",
        "cause": "probation-case.prison-identifier.added",
        "caseNotesCreated": "3",
        "alertsCreated": "1",
    }
    # the amended note is updated by its moved event or by the backfill, whichever came first
    assert {k: v for k, v in migrated["D7000DD"].items() if k != "caseNotesUpdated"} == {
        "nomsId": "D7000DD",
        "crn": "X700003",
        "cause": "probation-case.prison-identifier.updated",
        "alertsCreated": "1",
    }
    assert str(uuid.UUID(move["caseNoteId"])) == move["caseNoteId"]
