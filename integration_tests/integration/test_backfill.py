"""The linkage backfill (docs/rules.md §8): the partitioned asset and noms_backfill_job, on PostgreSQL with the HTTP
stand-ins."""

from __future__ import annotations

import dagster as dg
import pytest
from sqlalchemy import delete, func, select

from integration.core.outcomes import REASON_OFFENDER_NOT_FOUND
from integration.defs.backfill.assets import CHECK_NAME, check_contacts, linked_person_contacts
from integration.delius import models as m
from integration.delius.reference_data import add_person
from integration.delius.store import DeliusStore
from integration.flows.backfill import backfill_person
from integration_tests.fixtures.dagster import delius_resource, source_api_resource

pytestmark = [pytest.mark.postgres]


def resources(standins, delius_pg):
    return {"delius": delius_resource(delius_pg), "source_api": source_api_resource(standins)}


def materialize(instance, standins, delius_pg, noms, raise_on_error=True):
    instance.add_dynamic_partitions("noms_number", [noms])
    return dg.materialize(
        [linked_person_contacts],
        partition_key=noms,
        instance=instance,
        resources=resources(standins, delius_pg),
        raise_on_error=raise_on_error,
    )


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def person_history(standins, noms="A4000AA"):
    """A person's prison record with everything the filters must drop."""
    kept = [
        standins.add_case_note(noms, type="KA", sub_type="KS"),
        standins.add_case_note(noms, type="PRISON", sub_type="RELEASE", location_id="MDI"),
        standins.add_case_note(
            noms, type="RESET", sub_type="BCST", sensitive=True, text="Case note summary from Finance report"
        ),
    ]
    dropped = [
        standins.add_case_note(noms, type="TRANSFER", sub_type="FROMTOL", location_id="TRN"),
        standins.add_case_note(noms, type="GEN", sub_type="OSE", location_id="ZZGHI"),
        standins.add_case_note(
            noms, type="GEN", sub_type="OSE", text="Do not share with offender and OCG Nominal - made active."
        ),
        standins.add_case_note(noms, type="OMIC", sub_type="OPEN", text="   "),
    ]
    standins.add_case_note(noms, type="GEN", sub_type="HIS")  # not of interest: the search never returns it
    alerts = [
        standins.add_alert(noms, code="VI"),
        standins.add_alert(noms, code="HA", active_from="2020-01-01", active_to="2021-01-01"),
    ]
    docgm = standins.add_alert(noms, code="DOCGM")
    return kept, dropped, alerts, docgm


def test_backfill_writes_every_item_of_interest_with_counts_and_a_passing_check(instance, standins, delius_pg):
    add_person(delius_pg, "X400001", "A4000AA")
    kept, dropped, alerts, _ = person_history(standins)

    result = materialize(instance, standins, delius_pg, "A4000AA")

    assert result.success
    with delius_pg.connect() as conn:
        urns = set(conn.execute(select(m.contact.c.external_reference)).scalars())
    assert urns == (
        {f"urn:uk:gov:hmpps:prison-case-note:{n['caseNoteId']}" for n in kept}
        | {
            f"urn:uk:gov:hmpps:prisoner-alert:active:{alerts[0]['alertUuid']}",
            f"urn:uk:gov:hmpps:prisoner-alert:inactive:{alerts[1]['alertUuid']}",
        }
    )
    [materialization] = result.asset_materializations_for_node("linked_person_contacts")
    meta = {k: v.value for k, v in materialization.metadata.items() if not hasattr(v.value, "records")}
    assert meta["case_notes_created"] == 3 and meta["alerts_created"] == 2
    assert meta["case_notes_filtered"] == 4 and meta["alerts_filtered"] == 1
    assert meta["skipped_by_reason"] == {
        "Prisoner being transferred": 1,
        "Institution used for test purposes": 1,
        "Filtered due to data sharing restrictions": 1,
        "case note text is empty": 1,
        "OCG nominal alert (DOCGM)": 1,
    }
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == CHECK_NAME and check.passed
    # The search asked for every type of interest, sensitive notes included, every page.
    [search] = standins.search_requests
    body = search["body"]
    assert body["includeSensitive"] is True and body["page"] == 1 and "occurredFrom" not in body
    assert {t["type"]: t["subTypes"] for t in body["typeSubTypes"]} == {
        "PRISON": ["RELEASE"],
        "TRANSFER": ["FROMTOL"],
        "GEN": ["OSE"],
        "RESET": ["BCST", "GUIDINT"],
        "OMIC": [],
        "OMIC_OPD": [],
        "KA": [],
    }


def test_a_re_run_changes_nothing(instance, standins, delius_pg):
    add_person(delius_pg, "X400001", "A4000AA")
    person_history(standins)
    materialize(instance, standins, delius_pg, "A4000AA")
    with delius_pg.connect() as conn:
        before = [dict(r) for r in conn.execute(select(m.contact).order_by(m.contact.c.contact_id)).mappings()]
    audits = count(delius_pg, m.audited_interaction)

    result = materialize(instance, standins, delius_pg, "A4000AA")

    with delius_pg.connect() as conn:
        after = [dict(r) for r in conn.execute(select(m.contact).order_by(m.contact.c.contact_id)).mappings()]
    assert after == before and count(delius_pg, m.audited_interaction) == audits
    [materialization] = result.asset_materializations_for_node("linked_person_contacts")
    assert materialization.metadata["case_notes_unchanged"].value == 3
    assert materialization.metadata["alerts_unchanged"].value == 2
    assert materialization.metadata["case_notes_created"].value == 0


def test_person_not_in_delius_is_not_an_error(instance, standins, delius_pg):
    standins.add_case_note("A4000ZZ", type="KA", sub_type="KS")
    result = materialize(instance, standins, delius_pg, "A4000ZZ")
    assert result.success and count(delius_pg, m.contact) == 0
    [materialization] = result.asset_materializations_for_node("linked_person_contacts")
    assert materialization.metadata["offender_in_delius"].value is False
    [item] = materialization.metadata["preview"].value.records
    assert item.data["action"] == "skipped" and item.data["reason"] == REASON_OFFENDER_NOT_FOUND
    assert materialization.metadata["case_notes_skipped"].value == 1


def test_a_failing_item_fails_the_partition_after_every_item_was_tried(instance, standins, delius_pg):
    add_person(delius_pg, "X400001", "A4000AA")
    bad = standins.add_case_note("A4000AA", type="KA", sub_type="KS", location_id="XYZ")  # no probation area
    good = [standins.add_case_note("A4000AA", type="KA", sub_type="KE") for _ in range(3)]
    good_alert = standins.add_alert("A4000AA", code="VI")

    result = materialize(instance, standins, delius_pg, "A4000AA", raise_on_error=False)

    assert not result.success
    [failure] = [e for e in result.all_node_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.event_specific_data.user_failure_data.description
    assert description == (
        f"1 of 1 backfills failed: A4000AA: case_note {bad['caseNoteId']}: "
        "Probation Area not found for NOMIS institution: XYZ"
    )
    assert count(delius_pg, m.contact) == len(good) + 1 and good_alert


def test_in_a_run_of_several_people_only_the_failing_person_s_partition_fails(instance, standins, delius_pg):
    for crn, noms in (("X400001", "A4000AA"), ("X400002", "A4000BB"), ("X400003", "A4000CC")):
        add_person(delius_pg, crn, noms)
        standins.add_case_note(noms, type="KA", sub_type="KS")
    standins.add_case_note("A4000BB", type="KA", sub_type="KE", location_id="XYZ")  # no probation area
    instance.add_dynamic_partitions("noms_number", ["A4000AA", "A4000BB", "A4000CC"])

    result = dg.materialize(
        [linked_person_contacts],
        instance=instance,
        resources=resources(standins, delius_pg),
        tags={"dagster/asset_partition_range_start": "A4000AA", "dagster/asset_partition_range_end": "A4000CC"},
        raise_on_error=False,
    )

    assert not result.success
    materialized = {m.partition: m for m in result.asset_materializations_for_node("linked_person_contacts")}
    assert set(materialized) == {"A4000AA", "A4000CC"}
    assert materialized["A4000CC"].metadata["case_notes_created"].value == 1
    assert instance.get_materialized_partitions(dg.AssetKey("linked_person_contacts")) == {"A4000AA", "A4000CC"}
    assert count(delius_pg, m.contact) == 3  # every item was tried: the failing person's good note too
    [failure] = [e for e in result.all_node_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.event_specific_data.user_failure_data.description.startswith("1 of 3 backfills failed: A4000BB")


def test_an_upstream_outage_fails_the_partition(instance, standins, delius_pg):
    add_person(delius_pg, "X400001", "A4000AA")
    standins.add_case_note("A4000AA", type="KA", sub_type="KS")
    standins.set_fault("search_case_notes", status=503)
    result = materialize(instance, standins, delius_pg, "A4000AA", raise_on_error=False)
    assert not result.success and count(delius_pg, m.contact) == 0


def test_the_check_fails_when_a_contact_is_missing(standins, delius_pg):
    add_person(delius_pg, "X400001", "A4000AA")
    kept, _, _, _ = person_history(standins)
    from integration.clients.hmpps import HmppsSourceApi

    source = HmppsSourceApi(
        standins.auth_url, standins.client_id, standins.client_secret, standins.case_notes_url, standins.alerts_url
    )
    store = DeliusStore(delius_pg)
    report = backfill_person("A4000AA", source, store)
    assert check_contacts([report], store)["passed"]
    with delius_pg.begin() as conn:
        conn.execute(
            delete(m.contact).where(
                m.contact.c.external_reference == f"urn:uk:gov:hmpps:prison-case-note:{kept[0]['caseNoteId']}"
            )
        )
    result = check_contacts([report], store)
    assert not result["passed"] and result["metadata"]["missing"] == 1


def test_noms_backfill_job_takes_noms_numbers_typed_once_and_adds_their_partitions(instance, standins, delius_pg):
    """What the launchpad does: noms_backfill_job with ops.backfill_people.config.noms_numbers, no partition."""
    from integration.defs.backfill.jobs import backfill_run_config, noms_backfill_job

    add_person(delius_pg, "X400009", "A4000ZZ")
    standins.add_case_note("A4000ZZ", type="KA", sub_type="KS")
    job = dg.Definitions(
        jobs=[noms_backfill_job], assets=[linked_person_contacts], resources=resources(standins, delius_pg)
    ).resolve_job_def("noms_backfill_job")
    result = job.execute_in_process(run_config=backfill_run_config([" a4000zz ", "A4000ZZ"]), instance=instance)

    assert result.success
    assert result.dagster_run.tags["hmpps/flow"] == "backfill" and result.dagster_run.tags["hmpps/trigger"] == "ui"
    assert instance.get_run_by_id(result.run_id).tags["hmpps/people"] == "A4000ZZ"  # the op adds it
    assert instance.get_dynamic_partitions("noms_number") == ["A4000ZZ"]
    assert instance.get_materialized_partitions(dg.AssetKey("linked_person_contacts")) == {"A4000ZZ"}
    check = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("linked_person_contacts"), CHECK_NAME)
    )
    assert check is not None and check.event.dagster_event.event_specific_data.passed

    bad = job.execute_in_process(
        run_config=backfill_run_config(["A4000Z", "hello"]), instance=instance, raise_on_error=False
    )
    assert not bad.success
    [failure] = [e for e in bad.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "not NOMS numbers: A4000Z, HELLO" in failure.event_specific_data.error.message
