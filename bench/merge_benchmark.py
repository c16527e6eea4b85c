"""Time ``DeliusStore.merge`` alone on a fresh Delius database built from the contract DDL (no queue, no APIs).

    .venv/bin/python bench/merge_benchmark.py [--drafts 2000] [--chunk 500] [--people 200] [--sqlite]

Creates (with new prison staff for the authors), then newer versions of the same notes (updates), then a replay
(unchanged), each timed; PostgreSQL on 127.0.0.1:5432 (a throwaway database) unless --sqlite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from integration.core import rules  # noqa: E402
from integration.delius import models as m  # noqa: E402
from integration.delius.engine import create_delius_engine  # noqa: E402
from integration.delius.reference_data import add_person, seed_reference_data  # noqa: E402
from integration.delius.schema import create_schema  # noqa: E402
from integration.delius.store import DeliusStore  # noqa: E402
from integration_tests.fixtures.postgres import DEFAULT_ADMIN_URL, create_database, drop_database  # noqa: E402

T0 = datetime(2025, 6, 1, 9, 0, 0)


def drafts(n: int, people: int, ids: list[str], minutes: int) -> list[rules.ContactDraft]:
    return [
        rules.ContactDraft(
            urn=rules.case_note_urn(ids[i]),
            kind=rules.ContactKind.CASE_NOTE,
            noms_number=f"A{i % people:04d}BC",
            source_id=ids[i],
            legacy_id=None,
            type="KA",
            sub_type="KS",
            content=f"Benchmark note {i} v{minutes}",
            contact_datetime=T0 + timedelta(seconds=i),
            system_datetime=T0 + timedelta(seconds=i, minutes=minutes),
            staff_forename=f"Author{i % 20}",
            staff_surname="Bench",
            establishment_code="LEI",
        )
        for i in range(n)
    ]


def timed(store: DeliusStore, batch: list, chunk: int) -> tuple[float, dict]:
    started = time.perf_counter()
    actions: dict[str, int] = {}
    for start in range(0, len(batch), chunk):
        for outcome in store.merge(batch[start : start + chunk]):
            actions[outcome.action.value] = actions.get(outcome.action.value, 0) + 1
    return time.perf_counter() - started, actions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drafts", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=2000)
    p.add_argument("--people", type=int, default=200)
    p.add_argument("--sqlite", action="store_true")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = f"sqlite:///{tmp.name}/delius.db" if args.sqlite else create_database(DEFAULT_ADMIN_URL, "pcn2p_bench")
    engine = create_delius_engine(url)
    try:
        create_schema(engine)
        seed_reference_data(engine)
        with engine.begin() as conn:
            for n in range(args.people):
                add_person(conn, f"X{n:06d}", f"A{n:04d}BC")
        store = DeliusStore(engine)
        ids = [str(uuid.uuid4()) for _ in range(args.drafts)]
        for label, minutes in (("create", 0), ("update", 5), ("replay", 5)):
            seconds, actions = timed(store, drafts(args.drafts, args.people, ids, minutes), args.chunk)
            print(
                f"{engine.dialect.name:10} {label:7} {args.drafts} drafts in chunks of {args.chunk}: "
                f"{seconds:.2f} s ({args.drafts / seconds:,.0f}/s) {actions}"
            )
        with engine.connect() as conn:
            audits = conn.execute(select(func.count()).select_from(m.audited_interaction)).scalar_one()
        print(f"{'':10} audit rows: {audits}")
    finally:
        engine.dispose()
        if not args.sqlite:
            drop_database(DEFAULT_ADMIN_URL, url)
        tmp.cleanup()


if __name__ == "__main__":
    main()
