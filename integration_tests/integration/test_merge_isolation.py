"""Merge isolation and staff names (integration/delius/store.py), on PostgreSQL and SQLite.

A draft the database refuses for its data fails alone, with a reason named from the column sizes; the rest of the
call is merged. Staff are matched by one Unicode normalisation (core/text.py ``caseless``), computed in Python, so
both databases find the same one staff row per person whatever the accents or dotted capitals.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, insert, select

from integration.core import rules
from integration.core.outcomes import Action, StoreUnavailable
from integration.core.rules import ContactDraft
from integration.delius import models as m
from integration.delius.engine import create_delius_engine
from integration.delius.reference_data import add_person
from integration.delius.store import DeliusStore
from integration_tests.integration.test_merge import T0, case_note_draft, contacts, count

pytestmark = [pytest.mark.postgres]


class CountingStore(DeliusStore):
    """A real store that counts the merge calls its isolation makes."""

    def __init__(self, engine):
        super().__init__(engine)
        self.calls: list[int] = []

    def _merge(self, drafts, data_cleanse_required):
        self.calls.append(len(drafts))
        return super()._merge(drafts, data_cleanse_required)


def goods(n: int, noms: str = "A1234BC") -> list[ContactDraft]:
    return [case_note_draft(noms, content=f"Good note {i}") for i in range(n)]


def staff_named(engine, surname_like: str) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                select(m.staff.c.staff_id, m.staff.c.forename, m.staff.c.surname).where(
                    m.staff.c.surname.like(surname_like)
                )
            ).all()
        )


# --------------------------------------------------------------------------------------------- refused drafts


@pytest.mark.parametrize("where", [0, 5, 10], ids=["first", "middle", "last"])
def test_a_value_too_long_for_its_column_fails_that_draft_alone_with_the_column_named(delius_pg, where):
    add_person(delius_pg, "X123456", "A1234BC")
    drafts = goods(10)
    bad = replace(case_note_draft(), staff_forename="F" * 40)  # past rules' 35-character cut: staff.forename
    drafts.insert(where, bad)
    store = CountingStore(delius_pg)

    outcomes = store.merge(drafts)

    assert outcomes[where].action is Action.FAILED and not outcomes[where].retryable
    assert outcomes[where].reason == "value too long for staff.forename (35)"
    assert [o.action for i, o in enumerate(outcomes) if i != where] == [Action.CREATED] * 10
    assert len(contacts(delius_pg)) == 10 and staff_named(delius_pg, "F" * 40) == []
    assert len(store.calls) <= 1 + 2 * 4  # one try, then about two merges per halving (11 drafts)


def test_nul_and_surrogates_that_reach_the_store_fail_alone_on_both_databases(delius):
    """The rules replace them (core/text.py); a draft built elsewhere still cannot sink its neighbours."""
    add_person(delius, "X123456", "A1234BC")
    surrogate = case_note_draft(content="broken \ud800 pair")
    nul = case_note_draft(content="line one\x00line two")
    outcomes = DeliusStore(delius).merge([*goods(3), surrogate, nul, *goods(3)])

    actions = [o.action for o in outcomes]
    assert actions[:3] == actions[5:] == [Action.CREATED] * 3
    assert outcomes[3].action is Action.FAILED
    assert outcomes[3].reason == "Delius refused the contact: text not encodable as UTF-8 (UnicodeEncodeError)"
    if delius.dialect.name == "postgresql":  # PostgreSQL refuses NUL in text; SQLite keeps it
        assert outcomes[4].action is Action.FAILED
        assert outcomes[4].reason == "Delius refused the contact: text holds a NUL character (ValueError)"
        assert len(contacts(delius)) == 6
    else:
        assert outcomes[4].action is Action.CREATED
    assert not any(o.retryable for o in outcomes)


def test_a_legacy_id_beyond_64_bits_fails_alone_on_sqlite(delius):
    """SQLite cannot even bind it (OverflowError); PostgreSQL compares it as a numeric and finds nothing. The
    record parser refuses such ids before (core/records.py): this is the store's own bulkhead."""
    add_person(delius, "X123456", "A1234BC")
    huge = case_note_draft(legacy_id=2**63)
    outcomes = DeliusStore(delius).merge([*goods(2), huge, *goods(2)])
    assert [o.action for i, o in enumerate(outcomes) if i != 2] == [Action.CREATED] * 4
    if delius.dialect.name == "sqlite":
        assert outcomes[2].action is Action.FAILED and not outcomes[2].retryable
        assert outcomes[2].reason == "Delius refused the contact: number out of range (OverflowError)"
    else:
        assert outcomes[2].action is Action.CREATED


def test_an_id_too_long_for_the_urn_or_the_audit_row_is_refused_before_the_database(delius):
    add_person(delius, "X123456", "A1234BC")
    long_id, mid_id = "x" * 5000, "y" * 470
    too_long = replace(case_note_draft(), source_id=long_id, urn=rules.case_note_urn(long_id))
    audit_too_long = replace(case_note_draft(), source_id=mid_id, urn=rules.case_note_urn(mid_id))
    store = CountingStore(delius)
    outcomes = store.merge([too_long, *goods(2), audit_too_long])
    assert outcomes[0].reason == ("case note id too long: its URN does not fit contact.external_reference (4000 bytes)")
    assert outcomes[3].reason == "case note id too long for audited_interaction.interaction_parameters (500 bytes)"
    assert [o.action for o in outcomes] == [Action.FAILED, Action.CREATED, Action.CREATED, Action.FAILED]
    assert store.calls == [2]  # the refused ones never reached the database
    assert len(contacts(delius)) == 2


def test_a_database_that_is_not_there_is_unavailable_and_nothing_is_split():
    store = CountingStore(create_delius_engine("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=1"))
    with pytest.raises(StoreUnavailable, match=r"^Delius database unavailable \(OperationalError\)$"):
        store.merge(goods(8))
    assert store.calls == [8]


def test_several_bad_drafts_in_a_large_call_are_found_and_the_rest_land(delius_pg):
    add_person(delius_pg, "X123456", "A1234BC")
    drafts = goods(60)
    for where in (3, 31, 58):
        drafts[where] = replace(drafts[where], staff_surname="S" * 36)
    outcomes = DeliusStore(delius_pg).merge(drafts)
    failed = [i for i, o in enumerate(outcomes) if o.action is Action.FAILED]
    assert failed == [3, 31, 58]
    assert {outcomes[i].reason for i in failed} == {"value too long for staff.surname (35)"}
    assert len(contacts(delius_pg)) == 57


# --------------------------------------------------------------------------------------------- staff names


def author(forename: str, surname: str) -> ContactDraft:
    return case_note_draft(forename=forename, surname=surname, content=f"by {forename} {surname}")


def test_accented_names_get_one_staff_row_across_batches(delius):
    add_person(delius, "X123456", "A1234BC")
    store = DeliusStore(delius)
    for batch in (
        [author("Émile", "Zola")],
        [author("Émile", "Zola"), author("ÉMILE", "ZOLA")],
        [author("émile", "zola")],
    ):
        assert {o.action for o in store.merge(batch)} == {Action.CREATED}
    [(staff_id, forename, surname)] = staff_named(delius, "%ola")
    assert (forename, surname) == ("Émile", "Zola")
    assert {row["staff_id"] for row in contacts(delius)} == {staff_id}


def test_dotted_capitals_get_one_staff_row_on_both_databases(delius):
    add_person(delius, "X123456", "A1234BC")
    store = DeliusStore(delius)
    store.merge([author("İlkay", "Gündoğan")])
    store.merge([author("İLKAY", "GÜNDOĞAN")])
    store.merge([author("i\u0307lkay", "gu\u0308ndog\u0306an")])  # the same name, decomposed and lower-case
    assert len(staff_named(delius, "G%")) == 1
    assert len({row["staff_id"] for row in contacts(delius)}) == 1


def test_a_staff_row_stored_in_another_form_is_found_not_duplicated(delius):
    """Rows Delius users entered may be spelled in any case or normal form: exact-form candidates first, then the
    whole area when a name is about to be created."""
    add_person(delius, "X123456", "A1234BC")
    with delius.begin() as conn:
        area = conn.execute(
            select(m.probation_area.c.probation_area_id).where(m.probation_area.c.code == "LEI")
        ).scalar_one()
        user = conn.execute(select(m.user_.c.user_id)).scalar_one()
        for staff_id, forename, surname in (
            (900001, "ÉMILE", "ZOLA"),
            (900002, "mARIE", "cURIE"),
            (900003, "Rene\u0301", "Descartes"),
        ):
            conn.execute(
                insert(m.staff).values(
                    staff_id=staff_id,
                    officer_code=f"LEIZ{staff_id % 1000:03d}",
                    forename=forename,
                    surname=surname,
                    probation_area_id=area,
                    start_date=T0,
                    private=0,
                    created_by_user_id=user,
                    created_datetime=T0,
                    last_updated_user_id=user,
                    last_updated_datetime=T0,
                    row_version=0,
                )
            )
    before = count(delius, m.staff)
    outcomes = DeliusStore(delius).merge(
        [author("Émile", "Zola"), author("Marie", "Curie"), author("René", "Descartes"), author("Emile", "Zola")]
    )
    assert [o.action for o in outcomes] == [Action.CREATED] * 4
    by_author = {row["notes"].rsplit("by ", 1)[1]: row["staff_id"] for row in contacts(delius)}
    assert (by_author["Émile Zola"], by_author["Marie Curie"], by_author["René Descartes"]) == (900001, 900002, 900003)
    assert by_author["Emile Zola"] not in (900001, 900002, 900003)
    assert count(delius, m.staff) == before + 1  # only "Emile" (no accent) is somebody else
    with delius.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(m.staff).where(m.staff.c.forename == "Emile")).scalar_one()
            == 1
        )


def test_one_batch_with_two_spellings_of_a_new_name_creates_one_staff_row(delius):
    add_person(delius, "X123456", "A1234BC")
    before = count(delius, m.staff)
    outcomes = DeliusStore(delius).merge(
        [author("Zoë", "Ångström"), author("ZOË", "ÅNGSTRÖM"), author("zoë", "ångström")]
    )
    assert {o.action for o in outcomes} == {Action.CREATED}
    assert count(delius, m.staff) == before + 1
    assert len({row["staff_id"] for row in contacts(delius)}) == 1
