"""Bulkheads in the fast tier: the core's own limits (text hygiene, ids, times), the merge plan's column sizes and
name keys, and the batch and backfill flows on fakes and SQLite, where one bad record must fail alone."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from integration.clients.fakes import FakeEventsQueue, FakeSourceApi
from integration.core import rules, text
from integration.core.records import CaseNote, InvalidSourceRecord
from integration.delius import models as m
from integration.delius import plan
from integration.delius.engine import create_delius_engine
from integration.delius.reference_data import add_person, seed_reference_data
from integration.delius.schema import create_schema
from integration.delius.store import DeliusStore
from integration.flows.backfill import backfill_people
from integration.flows.batch import BatchSettings, process_batch
from integration.local import event_factory as ev
from integration.local.standins import make_alert, make_case_note

# --------------------------------------------------------------------------------------------- core/text.py


def test_clean_replaces_nul_and_lone_surrogates_and_counts_them():
    assert text.clean("plain, ünïcode, 😀") == ("plain, ünïcode, 😀", 0)
    assert text.clean("a\x00b\ud800c\udfffd") == ("a\ufffdb\ufffdc\ufffdd", 3)


def test_queue_safe_keeps_what_sqs_accepts():
    assert text.queue_safe("tab\tline\ncr\r ok é 😀") == "tab\tline\ncr\r ok é 😀"
    assert text.queue_safe("bell\x07 nul\x00 \ud800 \uffff") == "bell\ufffd nul\ufffd \ufffd \ufffd"


def test_clip_caps_and_never_raises():
    assert text.clip("x" * 300) == "x" * 197 + "..."
    assert text.clip("short") == "short"
    assert text.clip(12345) == "12345"
    huge = int("9" * 4000) * 10**1000  # more digits than str() converts
    assert text.clip(huge) == "<int too long to show>"


@pytest.mark.parametrize(
    "a, b",
    [
        ("Émile", "ÉMILE"),
        ("Émile", "E\u0301mile"),
        ("İlkay", "i\u0307lkay"),
        ("Gündoğan", "GU\u0308NDOG\u0306AN"),
        ("Straße", "STRASSE"),
    ],
)
def test_caseless_is_one_form_for_the_same_name(a, b):
    assert text.caseless(a) == text.caseless(b)


@pytest.mark.parametrize("a, b", [("Émile", "Emile"), ("İlkay", "Ilkay"), ("Zola", "Zolá")])
def test_caseless_keeps_accents_and_dotted_capitals_apart(a, b):
    assert text.caseless(a) != text.caseless(b)


# --------------------------------------------------------------------------------------------- records and rules


def note(**fields):
    return make_case_note("A1234BC", type="KA", sub_type="KS", **fields)


@pytest.mark.parametrize(
    "value, reason",
    [
        ("2025-03-01T10:00:00[" + "Europe/" + "x" * 293 + "]", "case note has an invalid creationDateTime"),  # OSError
        ("9999-12-31T23:30:00-05:00", "case note has an invalid creationDateTime"),  # Overflow
        ("0001-01-01T00:10:00+01:00", "case note has an invalid creationDateTime"),
    ],
)
def test_unusable_times_make_the_record_invalid(value, reason):
    mapped = rules.map_case_note(note(creationDateTime=value))
    assert mapped.invalid == reason


@pytest.mark.parametrize("legacy", ["9" * 5000, 2**63, -(2**63) - 1, "9223372036854775808", "١٢٣", 1e300, "12a"])
def test_legacy_ids_outside_the_signed_64_bit_range_or_not_ascii_digits_are_invalid(legacy):
    with pytest.raises(InvalidSourceRecord, match="^case note has an invalid legacyId$"):
        CaseNote.from_api(note(legacyId=legacy))


@pytest.mark.parametrize("legacy, expected", [(2**63 - 1, 2**63 - 1), (-(2**63), -(2**63)), ("+42", 42), (7.0, 7)])
def test_legacy_ids_inside_the_range_are_read(legacy, expected):
    assert CaseNote.from_api(note(legacyId=legacy)).legacy_id == expected


@pytest.mark.parametrize("person", ["A１２３４BC", "A١٢٣٤BC", "A1234BC" * 1000, "aı234bc", "A1234 BC"])
def test_the_record_s_person_must_be_ascii_and_fit_the_column(person):
    assert rules.map_case_note(note(offenderIdentifier=person)).invalid == "case note has an invalid offenderIdentifier"
    alert = make_alert("A1234BC", prisonNumber=person)
    assert rules.map_alert(alert).invalid == "alert has an invalid prisonNumber"


def test_the_api_s_example_prison_numbers_are_still_read():
    assert rules.map_case_note(note(offenderIdentifier="aa0001a")).draft.noms_number == "AA0001A"


def test_nul_and_surrogates_are_replaced_in_every_text_of_a_draft_and_counted():
    mapped = rules.map_case_note(note(text="one\x00two", authorName="Zo\udc00la Smith", locationId="LE\ud800"))
    draft = mapped.draft
    assert draft.content == "one\ufffdtwo" and draft.staff_forename == "Zo\ufffdla"
    assert draft.establishment_code == "LE\ufffd" and draft.replaced_characters == 3
    assert "\x00" not in draft.notes
    alert = rules.map_alert(
        make_alert("A1234BC", description="bad \ud83d alone", created_by_display_name="Ann\x00 Lee")
    ).draft
    assert alert.content == "bad \ufffd alone" and alert.replaced_characters == 2


def test_an_invalid_record_with_a_hostile_id_is_reported_by_a_storable_id():
    mapped = rules.map_case_note(note(caseNoteId="id\x00x", creationDateTime="not a time"))
    assert mapped.source_id == "id\ufffdx" and mapped.invalid
    assert rules.map_case_note(note(caseNoteId={"nested": [1]}, id=None)).source_id == "unknown"


# --------------------------------------------------------------------------------------------- merge plan


def test_the_plan_s_column_sizes_are_the_models():
    assert plan.EXTERNAL_REFERENCE_MAX == m.contact.c.external_reference.type.length
    assert plan.DESCRIPTION_MAX == m.contact.c.description.type.length == rules.DESCRIPTION_MAX_BYTES
    assert plan.STAFF_NAME_MAX == m.staff.c.forename.type.length == m.staff.c.surname.type.length
    assert plan.STAFF_NAME_MAX == rules.STAFF_NAME_MAX_CHARS
    assert plan.NOMS_NUMBER_MAX == m.offender.c.noms_number.type.length
    assert plan.NOMIS_TYPE_MAX == m.r_contact_type_nomis_type.c.nomis_contact_type.type.length
    assert plan.AUDIT_PARAMETERS_MAX == m.audited_interaction.c.interaction_parameters.type.length


def draft(source_id="0ec15f8b-6b57-471f-b02a-c89169a6a3e5", **fields):
    base = rules.map_case_note(note(caseNoteId=source_id)).draft
    from dataclasses import replace

    return replace(base, **fields)


def test_refusal_names_the_column_never_the_value():
    assert plan.refusal(draft()) is None
    long_id = "x" * 5000
    refused = plan.refusal(draft(source_id=long_id, urn=rules.case_note_urn(long_id)))
    assert refused == "case note id too long: its URN does not fit contact.external_reference (4000 bytes)"
    mid = "é" * 300  # 300 characters, 600 bytes: Oracle counts bytes
    assert plan.refusal(draft(source_id=mid, urn=rules.case_note_urn(mid))) == (
        "case note id too long for audited_interaction.interaction_parameters (500 bytes)"
    )
    assert plan.oversized(draft(staff_forename="é" * 30)) == ["staff.forename (35)"]


def test_staff_keys_are_caseless_and_spellings_cover_the_usual_forms():
    assert plan.staff_key(1, "İLKAY", "GÜNDOĞAN") == plan.staff_key(1, "i̇lkay", "gündoğan")
    assert plan.staff_key(1, "Émile", "Zola") != plan.staff_key(2, "Émile", "Zola")
    assert {"Zola", "ZOLA", "zola"} <= plan.name_spellings("Zola")
    assert "E\u0301mile" in plan.name_spellings("Émile") and "ÉMILE" in plan.name_spellings("émile")


# --------------------------------------------------------------------------------------------- flows on fakes

SETTINGS = BatchSettings(
    fetch_workers=4, visibility_timeout=30, lease_margin=5, max_attempts=3, retry_delays=(1, 1, 1), merge_chunk=3
)


@pytest.fixture
def sqlite_store(tmp_path):
    engine = create_delius_engine(f"sqlite:///{tmp_path / 'delius.db'}")
    create_schema(engine)
    seed_reference_data(engine)
    add_person(engine, "X100001", "A1234BC")
    add_person(engine, "X100002", "A7000BB")
    yield DeliusStore(engine)
    engine.dispose()


def leased(queue: FakeEventsQueue, expected: int):
    messages = []
    while len(messages) < expected:
        messages += queue.receive(10, visibility_timeout=30)
    return messages


class Boom(Exception):
    """An exception no part of the pipeline expects."""


def test_any_exception_from_one_fetch_or_mapping_fails_that_event_alone(sqlite_store, monkeypatch):
    source, queue = FakeSourceApi(), FakeEventsQueue()
    good = [note(text=f"good {i}") for i in range(5)]
    bad = {name: note(text=f"bad {name}") for name in ("boom", "oserror", "recursion", "mapping")}
    for record in good + list(bad.values()):
        queue.send(ev.case_note_event_for(record, case_notes_url=source.case_notes_url))
        source.add_case_note(record)
    source.raise_for(source.case_note_url(bad["boom"]), Boom)
    source.raise_for(source.case_note_url(bad["oserror"]), ConnectionResetError)
    source.raise_for(source.case_note_url(bad["recursion"]), RecursionError)
    mapping = rules.map_case_note

    def exploding(raw):
        if raw.get("text") == "bad mapping":
            raise OverflowError("deliberately")
        return mapping(raw)

    monkeypatch.setattr(rules, "map_case_note", exploding)

    report = process_batch(
        leased(queue, 9), source=source, store=sqlite_store, queue=queue, settings=SETTINGS, run_id="unit"
    )

    by_text = {o.source_id: o for o in report.outcomes}
    for record in good:
        outcome = by_text[record["caseNoteId"]]
        assert (outcome.action, outcome.disposition, outcome.attempt) == ("created", "acked", 1)
    reasons = {name: (by_text[r["caseNoteId"]].reason, by_text[r["caseNoteId"]].disposition) for name, r in bad.items()}
    assert reasons == {
        "boom": ("the case note could not be read (Boom)", "dead-lettered"),
        "oserror": ("fetching the case note failed (ConnectionResetError)", "retry later"),
        "recursion": ("the case note could not be read (RecursionError)", "dead-lettered"),
        "mapping": ("the case note could not be mapped (OverflowError)", "dead-lettered"),
    }
    dead = queue.messages(queue.dlq_url)
    assert sorted(d.attributes["hmpps-failure-reason"] for d in dead) == sorted(
        r for r, d in reasons.values() if d == "dead-lettered"
    )
    assert len(queue.messages()) == 1  # only the retryable one waits for its retry: nothing lost


def test_nul_and_surrogates_land_replaced_and_counted(sqlite_store):
    source, queue = FakeSourceApi(), FakeEventsQueue()
    hostile = note(text="nul\x00 and \ud800 here")
    queue.send(ev.case_note_event_for(hostile, case_notes_url=source.case_notes_url))
    source.add_case_note(hostile)
    report = process_batch(leased(queue, 1), source=source, store=sqlite_store, queue=queue, settings=SETTINGS)
    [outcome] = report.outcomes
    assert (outcome.action, outcome.replaced_characters, report.replaced_characters) == ("created", 2, 2)
    with sqlite_store.engine.connect() as conn:
        assert conn.execute(select(m.contact.c.notes)).scalar_one() == "KA KS\nnul\ufffd and \ufffd here"


def test_a_merge_that_raises_something_unexpected_keeps_the_chunk_for_a_retry(sqlite_store, monkeypatch):
    source, queue = FakeSourceApi(), FakeEventsQueue()
    record = note()
    queue.send(ev.case_note_event_for(record, case_notes_url=source.case_notes_url))
    source.add_case_note(record)

    def broken(drafts, **kwargs):
        raise Boom("a bug")

    monkeypatch.setattr(sqlite_store, "merge", broken)
    [outcome] = process_batch(
        leased(queue, 1), source=source, store=sqlite_store, queue=queue, settings=SETTINGS
    ).outcomes
    assert (outcome.reason, outcome.retryable, outcome.disposition) == (
        "merge into Delius failed (Boom)",
        True,
        "retry later",
    )


def test_a_hostile_reason_is_made_fit_for_a_queue_attribute(sqlite_store):
    source, queue = FakeSourceApi(allowlist=["http://case-notes.fake"]), FakeEventsQueue()
    body = ev.case_note_event(
        "A1234BC", "0ec15f8b-6b57-471f-b02a-c89169a6a3e5", "KA", "KS", case_notes_url="http://evil\u0007.example"
    )
    queue.send(body)
    [outcome] = process_batch(
        leased(queue, 1), source=source, store=sqlite_store, queue=queue, settings=SETTINGS
    ).outcomes
    assert outcome.disposition == "dead-lettered" and "\u0007" not in outcome.reason


def test_event_fields_in_the_outcome_are_capped(sqlite_store):
    source, queue = FakeSourceApi(), FakeEventsQueue()
    body = ev.case_note_event("A1234BC" * 1000, "i" * 10_000, "GEN", "HIS", case_notes_url=source.case_notes_url)
    queue.send(body)
    [outcome] = process_batch(
        leased(queue, 1), source=source, store=sqlite_store, queue=queue, settings=SETTINGS
    ).outcomes
    assert outcome.action == "skipped" and len(outcome.source_id) <= 200 and len(outcome.noms_number) <= 20


def test_one_bad_item_fails_its_person_never_another(sqlite_store, monkeypatch):
    source = FakeSourceApi()
    source.add_case_note(make_case_note("A1234BC", type="KA", sub_type="KS", text="fine"))
    source.add_case_note(make_case_note("A1234BC", type="KA", sub_type="KS", legacyId=2**63))
    source.add_case_note(make_case_note("A1234BC", type="KA", sub_type="KS", text="nul\x00"))
    source.add_case_note(make_case_note("A7000BB", type="KA", sub_type="KS", text="other person"))
    source.raise_for("A8000CC", Boom)

    reports = {
        r.noms_number: r
        for r in backfill_people(["A1234BC", "A7000BB", "A8000CC", "A１２３４BC"], source, sqlite_store)
    }

    first = reports["A1234BC"]
    assert first.first_failure and first.first_failure.endswith("case note has an invalid legacyId")
    assert first.count("case_note", rules_action("created")) == 2 and first.replaced_characters == 1
    assert reports["A7000BB"].first_failure is None
    assert reports["A7000BB"].count("case_note", rules_action("created")) == 1
    assert reports["A8000CC"].error == "reading the person's records failed (Boom)"
    assert reports["A１２３４BC"].error.startswith("not a NOMS number")
    assert sorted(noms for noms, _ in source.calls_to("search_case_notes")) == ["A1234BC", "A7000BB", "A8000CC"]


def rules_action(name: str):
    from integration.core.outcomes import Action

    return Action(name)


def test_isolation_takes_few_merges(sqlite_store):
    """1 refused draft among 64: one failed call, then about two per halving, not 64."""
    from dataclasses import replace

    calls = []
    original = sqlite_store._merge

    def counting(drafts, data_cleanse_required):
        calls.append(len(drafts))
        return original(drafts, data_cleanse_required)

    sqlite_store._merge = counting
    drafts = [
        draft(source_id=f"0ec15f8b-6b57-471f-b02a-{i:012d}", urn=rules.case_note_urn(f"id-{i}")) for i in range(64)
    ]
    drafts[40] = replace(drafts[40], legacy_id=2**63)  # SQLite cannot bind it
    outcomes = sqlite_store.merge(drafts)
    assert [i for i, o in enumerate(outcomes) if o.failed] == [40]
    assert len(calls) <= 1 + 2 * 6
