"""Reconciliation: the pure comparison, the bounded driver, and the nightly schedule run through Dagster, with its
repair (the repair sensor's backfill runs) on PostgreSQL, the HTTP stand-ins and the webhook stand-in."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.utils import make_new_run_id
from sqlalchemy import delete, func, select

from integration.clients.fakes import FakeSourceApi
from integration.core.ports import UpstreamError
from integration.core.rules import alert_urn, case_note_urn
from integration.core.times import london_now
from integration.defs.backfill.assets import linked_person_contacts
from integration.defs.backfill.jobs import backfill_run_config, noms_backfill_job
from integration.defs.contacts.assets import delius_contacts
from integration.defs.reconciliation import checks as reconciliation_checks
from integration.defs.reconciliation.checks import CHECK_NAME, delius_contacts_match_prison_records
from integration.defs.reconciliation.jobs import reconciliation_job
from integration.defs.reconciliation.schedules import reconciliation_schedule
from integration.defs.reconciliation.sensors import reconciliation_repair_sensor
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.flows import reconciliation as rec
from integration.local.standins import format_local, make_alert, make_amendment, make_case_note
from integration.resources import Notifier
from integration_tests.fixtures.dagster import delius_resource, source_api_resource

NOW = datetime(2026, 11, 10, 2, 0, 0)
EARLIER = NOW - timedelta(hours=5)
SECRET_TEXT = "PRIVATE-NOTE-TEXT"


# ----------------------------------------------------------------------------------------------- pure comparison


def contact(urn, last_updated=EARLIER, legacy_id=None, soft_deleted=False):
    return rec.StoredContact(urn, legacy_id, last_updated, soft_deleted)


def test_compare_counts_missing_stale_matched_and_leaves_out_what_the_backfill_would_not_write():
    kept = make_case_note("A1000AA", type="KA", sub_type="KS", created_at=EARLIER, text=SECRET_TEXT)
    deleted = make_case_note("A1000AA", type="KA", sub_type="KS", created_at=EARLIER)
    amended = make_case_note(
        "A1000AA",
        type="KA",
        sub_type="KS",
        created_at=EARLIER - timedelta(days=1),
        amendments=[make_amendment(created_at=EARLIER)],
    )
    filtered = make_case_note("A1000AA", type="GEN", sub_type="OSE", location_id="TRN", created_at=EARLIER)
    fresh = make_case_note("A1000AA", type="KA", sub_type="KS", created_at=NOW - timedelta(minutes=5))
    broken = make_case_note("A1000AA", type="KA", sub_type="KS", creationDateTime="not a date")
    alert = make_alert("A1000AA", code="VI", created_at=EARLIER)
    docgm = make_alert("A1000AA", code="DOCGM", created_at=EARLIER)
    contacts = [
        contact(case_note_urn(kept["caseNoteId"])),
        contact(case_note_urn(amended["caseNoteId"]), last_updated=EARLIER - timedelta(days=1)),
        contact(alert_urn(alert["alertUuid"], True), last_updated=EARLIER + timedelta(seconds=0.5)),
    ]

    check = rec.compare_person(
        "A1000AA",
        [kept, deleted, amended, filtered, fresh, broken],
        [alert, docgm],
        contacts,
        settled_before=NOW - timedelta(hours=1),
    )

    assert check.missing == [case_note_urn(deleted["caseNoteId"])]
    assert check.stale == [case_note_urn(amended["caseNoteId"])]
    assert (check.items, check.matched, check.too_recent, check.unreadable) == (4, 2, 1, 1)
    assert check.needs_repair and SECRET_TEXT not in repr(check)


def test_compare_accepts_legacy_rows_and_counts_soft_deleted_contacts_without_repairing_them():
    legacy = make_case_note("A1000AA", type="KA", sub_type="KS", created_at=EARLIER, legacy_id=4711)
    removed = make_case_note("A1000AA", type="KA", sub_type="KS", created_at=EARLIER)
    check = rec.compare_person(
        "A1000AA",
        [legacy, removed],
        [],
        [contact(None, legacy_id=4711), contact(case_note_urn(removed["caseNoteId"]), soft_deleted=True)],
        settled_before=NOW,
    )
    assert (check.matched, check.soft_deleted, check.missing, check.stale) == (1, 1, [], [])
    assert not check.needs_repair


def test_choose_people_keeps_linked_people_only_in_source_order_and_caps_them():
    sources = {
        "requested": ["b2000bb"],
        "failed_event_runs": {"C3000CC", "Z9999ZZ"},
        "delius_recent": {"A1000AA", "B2000BB"},
    }
    selection = rec.choose_people(sources, {"A1000AA", "B2000BB", "C3000CC"}, max_people=2)
    assert selection.people == ["B2000BB", "C3000CC"]
    assert selection.by_source == {"requested": 1, "failed_event_runs": 1, "delius_recent": 2}
    assert selection.over_limit == 1


def test_people_in_event_bodies_reads_case_note_and_alert_events_only():
    from integration.local import event_factory as ev

    bodies = [
        ev.case_note_event(
            "A1000AA", "0b0c8f6e-1111-4222-8333-444455556666", "KA", "KS", case_notes_url="http://127.0.0.1:9"
        ),
        ev.alert_event("B2000BB", "01954cfe-9f5a-7ea3-837b-a1770b389c5b", "VI", alerts_url="http://127.0.0.1:9"),
        ev.linkage_event("C3000CC", "X300003"),
        "not json",
    ]
    assert rec.people_in_event_bodies(bodies) == {"A1000AA", "B2000BB"}


def test_the_sweep_checks_a_share_of_every_linked_person_each_day(delius_sqlite):
    ids = {add_person(delius_sqlite, f"X80000{n}", f"A800{n}AA").offender_id: f"A800{n}AA" for n in range(4)}
    add_person(delius_sqlite, "X800009", None)
    add_person(delius_sqlite, "X800008", "A8009AA", soft_deleted=True)
    day = datetime(2026, 11, 10).date()
    assert rec.people_in_sweep(delius_sqlite, 0, day) == set()
    assert rec.people_in_sweep(delius_sqlite, 2, day) == {
        noms for oid, noms in ids.items() if oid % 2 == day.toordinal() % 2
    }
    everyone = rec.people_in_sweep(delius_sqlite, 2, day) | rec.people_in_sweep(
        delius_sqlite, 2, day + timedelta(days=1)
    )
    assert everyone == set(ids.values())


def test_every_report_and_run_of_the_window_is_read_page_by_page_and_older_ones_are_not(monkeypatch):
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry

    from integration.defs.events.jobs import outcome_table

    monkeypatch.setattr(reconciliation_checks, "RUNS_PAGE", 3)  # 10 reports and 4 backfill runs: several pages each
    now = datetime.now(UTC)

    def run(instance, job_name, created, *, partition=None) -> str:
        run = dg.DagsterRun(
            job_name=job_name,
            run_id=make_new_run_id(),
            status=dg.DagsterRunStatus.SUCCESS,
            tags={"dagster/partition": partition} if partition else {},
        )
        instance.run_storage.add_historical_run(run, created)
        return run.run_id

    def report(instance, run_id, at, noms, action="created"):
        """A consumer run's chunk report (a delius_contacts materialization) recorded at ``at``."""
        rows = [
            {
                "sqs_message_id": str(uuid.uuid4()),
                "event_type": "person.case-note.created",
                "noms_number": noms,
                "action": action,
            },
            {
                "sqs_message_id": str(uuid.uuid4()),
                "event_type": "probation-case.prison-identifier.added",
                "noms_number": "L0000LL",
                "action": "linkage",
            },
        ]
        materialization = dg.AssetMaterialization(
            asset_key="delius_contacts", metadata={"outcomes": outcome_table(rows)}
        )
        event = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name="prison_events_job",
            event_specific_data=StepMaterializationData(materialization),
        )
        instance.store_event(
            EventLogEntry(
                error_info=None,
                level="INFO",
                user_message="",
                run_id=run_id,
                timestamp=at.timestamp(),
                dagster_event=event,
            )
        )

    with dg.instance_for_test() as instance:
        people = [f"A9{n:03d}AA" for n in range(10)]
        consumers = [
            run(instance, "prison_events_job", now - timedelta(hours=41)),
            run(instance, "prison_events_job", now - timedelta(hours=20)),
        ]
        for n, noms in enumerate(people):  # the oldest first, one every 4 hours back from now
            report(
                instance,
                consumers[n // 5],
                now - timedelta(hours=40 - 4 * n),
                noms,
                action="failed" if n == 0 else "created",
            )
        for n in range(4):
            run(instance, "noms_backfill_job", now - timedelta(hours=n + 1), partition=f"B9{n:03d}BB")
        old = run(instance, "prison_events_job", now - timedelta(hours=50))
        report(instance, old, now - timedelta(hours=49), "C9000CC")  # before the window
        run(instance, "noms_backfill_job", now - timedelta(days=3), partition="C9001CC")

        sources, scanned = reconciliation_checks.people_in_recent_runs(instance, now - timedelta(hours=48))
        assert sources == {
            "failed_event_runs": {people[0]},
            "event_runs": set(people[1:]),
            "backfill_runs": {f"B9{n:03d}BB" for n in range(4)},
        }
        assert scanned == {"prison_events_job": 2, "noms_backfill_job": 4}

        sources, scanned = reconciliation_checks.people_in_recent_runs(instance, now - timedelta(hours=10))
        assert sources["event_runs"] == set(people[8:]) and scanned["prison_events_job"] == 1


def test_a_multi_partition_backfill_run_names_every_person_of_its_range():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("noms_number", ["A9100AA", "A9100BB", "A9100CC", "A9100DD"])
        run = dg.DagsterRun(
            job_name="noms_backfill_job",
            run_id=make_new_run_id(),
            tags={"dagster/asset_partition_range_start": "A9100AA", "dagster/asset_partition_range_end": "A9100CC"},
        )
        assert reconciliation_checks.partitions_of(instance, run) == ["A9100AA", "A9100BB", "A9100CC"]
        instance.delete_dynamic_partition("noms_number", "A9100CC")  # deleted since: the range cannot be resolved
        assert reconciliation_checks.partitions_of(instance, run) == []


# ----------------------------------------------------------------------------------------------- bounded driver


def test_the_driver_stops_at_its_time_budget_and_when_the_apis_are_down(delius_sqlite):
    fake = FakeSourceApi()
    people = [f"A{n:04d}AA" for n in range(12)]
    ticks = iter(range(0, 1000, 10))
    report = rec.reconcile_people(
        people,
        fake,
        delius_sqlite,
        rec.Limits(time_budget_seconds=15, batch_size=5),
        now=NOW,
        monotonic=lambda: next(ticks),
    )
    assert len(report.checks) == 5 and report.not_checked == 7 and report.stopped == "time budget spent"

    for noms in people:
        fake.raise_for(noms, UpstreamError("case notes API: HTTP 503", 503))
    report = rec.reconcile_people(people, fake, delius_sqlite, rec.Limits(batch_size=5), now=NOW)
    assert len(report.errors) == 5 and report.not_checked == 7 and "APIs look unavailable" in report.stopped


# ----------------------------------------------------------------------------------------------- through Dagster


def location(standins, delius_pg, webhook):
    """The project's reconciliation and backfill definitions with resources pointing at the test's services."""
    return dg.Definitions(
        assets=[delius_contacts, linked_person_contacts],
        asset_checks=[delius_contacts_match_prison_records],
        jobs=[reconciliation_job, noms_backfill_job],
        resources={
            "delius": delius_resource(delius_pg),
            "source_api": source_api_resource(standins),
            "notifier": Notifier(webhook_url=webhook.url),
        },
    )


def scheduled_reconciliation(defs, instance):
    request = reconciliation_schedule(dg.build_schedule_context(instance=instance))
    job = defs.resolve_job_def("reconciliation_job")
    assert dg.validate_run_config(job, request.run_config)
    result = job.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags)
    assert result.success
    [evaluation] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert evaluation.check_name == CHECK_NAME
    return result, evaluation


def contact_urns(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(m.contact.c.external_reference)).scalars())


def test_nightly_reconciliation_finds_a_deleted_contact_and_its_repair_restores_it(
    instance, standins, delius_pg, webhook, monkeypatch
):
    monkeypatch.setenv("RECONCILIATION_AUTO_REPAIR", "true")
    add_person(delius_pg, "X600001", "A6000AA")
    add_person(delius_pg, "X600002", "A6000BB")
    earlier = london_now() - timedelta(hours=3)
    notes = [
        standins.add_case_note("A6000AA", type="KA", sub_type="KS", created_at=earlier, text=f"{SECRET_TEXT} {n}")
        for n in range(2)
    ]
    standins.add_alert("A6000AA", code="VI", created_at=earlier, description=SECRET_TEXT)
    standins.add_case_note("A6000BB", type="KA", sub_type="KS", created_at=earlier, text=SECRET_TEXT)
    defs = location(standins, delius_pg, webhook)
    backfill = defs.resolve_job_def("noms_backfill_job")
    instance.add_dynamic_partitions("noms_number", ["A6000AA", "A6000BB"])
    for noms in ("A6000AA", "A6000BB"):
        assert backfill.execute_in_process(run_config=backfill_run_config([noms]), instance=instance).success
    written = contact_urns(delius_pg)
    deleted = case_note_urn(notes[0]["caseNoteId"])
    with delius_pg.begin() as conn:  # someone deletes a contact in Delius, behind the integration's back
        conn.execute(delete(m.contact).where(m.contact.c.external_reference == deleted))

    result, evaluation = scheduled_reconciliation(defs, instance)

    assert not evaluation.passed and evaluation.severity is dg.AssetCheckSeverity.ERROR
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    assert (metadata["people_checked"], metadata["missing"], metadata["stale"]) == (2, 1, 0)
    assert metadata["people_to_repair"] == ["A6000AA"] and metadata["repair_requested"] is True
    assert metadata["people_by_source"]["backfill_runs"] == 2 and metadata["missing_urns"] == [deleted]
    assert metadata["runs_scanned"] == {"prison_events_job": 0, "noms_backfill_job": 2}
    lines = [r.user_message for r in instance.all_logs(result.run_id) if r.dagster_event is None]
    assert any(
        line.startswith("reconciliation_selection people=2 over_max_people=0 ")
        and "runs_scanned_noms_backfill_job=2" in line
        for line in lines
    )
    assert any(
        line.startswith("reconciliation people_checked=2 people_needing_repair=1 ")
        and " missing=1 " in line
        and line.endswith("repair=requested repairs=1")
        for line in lines
    )
    assert SECRET_TEXT not in repr(lines)
    [row] = metadata["people"].records
    assert row.data["noms_number"] == "A6000AA" and row.data["missing"] == 1
    [message] = webhook.messages
    assert message["text"].startswith("Reconciliation: contacts missing or stale")
    assert "Missing contacts: 1; stale contacts: 0; people affected: 1." in message["text"]
    assert message["blocks"][0]["type"] == "section"
    assert SECRET_TEXT not in json.dumps(message) and "A6000AA" not in json.dumps(message)
    assert SECRET_TEXT not in repr(metadata)

    run = instance.get_run_by_id(result.run_id)
    [success] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    context = dg.build_run_status_sensor_context(
        sensor_name="reconciliation_repair_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=success.dagster_event,
    )
    [repair] = reconciliation_repair_sensor(context)
    assert repair.run_config["ops"]["backfill_people"]["config"]["noms_numbers"] == ["A6000AA"]
    assert repair.tags["hmpps/trigger"] == "reconciliation"
    assert instance.has_dynamic_partition("noms_number", "A6000AA")

    assert backfill.execute_in_process(run_config=repair.run_config, instance=instance, tags=repair.tags).success
    assert contact_urns(delius_pg) == written

    webhook.clear()
    _, evaluation = scheduled_reconciliation(defs, instance)
    assert evaluation.passed and evaluation.metadata["missing"].value == 0
    assert webhook.messages[0]["text"].startswith("Reconciliation: contacts match")


def test_with_repair_off_the_people_are_reported_and_nothing_is_launched(instance, standins, delius_pg, webhook):
    add_person(delius_pg, "X600003", "A6000CC")
    note = standins.add_case_note("A6000CC", type="KA", sub_type="KS", created_at=london_now() - timedelta(hours=3))
    defs = location(standins, delius_pg, webhook)
    instance.add_dynamic_partitions("noms_number", ["A6000CC"])
    assert (
        defs.resolve_job_def("noms_backfill_job")
        .execute_in_process(run_config=backfill_run_config(["A6000CC"]), instance=instance)
        .success
    )
    with delius_pg.begin() as conn:
        conn.execute(delete(m.contact))

    result, evaluation = scheduled_reconciliation(defs, instance)

    assert not evaluation.passed and evaluation.metadata["repair_requested"].value is False
    assert evaluation.metadata["people_to_repair"].value == ["A6000CC"]
    assert "Repair: off" in webhook.messages[0]["text"]
    run = instance.get_run_by_id(result.run_id)
    [success] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    outcome = reconciliation_repair_sensor(
        dg.build_run_status_sensor_context(
            sensor_name="reconciliation_repair_sensor",
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=success.dagster_event,
        )
    )
    assert isinstance(outcome, dg.SkipReason)
    with delius_pg.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.contact)).scalar_one() == 0
    assert note["caseNoteId"] in evaluation.metadata["missing_urns"].value[0]


def test_people_not_linked_in_delius_are_not_checked(instance, standins, delius_pg, webhook):
    standins.add_case_note("A6000DD", type="KA", sub_type="KS", created_at=format_local(london_now()))
    defs = location(standins, delius_pg, webhook)
    request = reconciliation_schedule(dg.build_schedule_context(instance=instance))
    config = request.run_config["ops"]["delius_contacts_matches_prison_records"]["config"]
    config["noms_numbers"] = ["A6000DD"]
    result = defs.resolve_job_def("reconciliation_job").execute_in_process(
        run_config=request.run_config, instance=instance
    )
    [evaluation] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert evaluation.passed and evaluation.metadata["people_checked"].value == 0
