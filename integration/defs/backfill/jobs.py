"""``noms_backfill_job``: backfills the contacts of the people whose NOMS numbers are in its config, one
``linked_person_contacts`` partition each.

Every backfill of a person is a run of this job, whoever launched it: a linkage event (the queue sensor), a
reconciliation repair, the CLI, or an operator in the UI (*Jobs → noms_backfill_job → Launchpad*, type the NOMS
numbers into ``noms_numbers``, *Launch Run*). So they all carry ``hmpps/flow=backfill`` (the run queue's one-backfill
limit, dagster.yaml) and ``hmpps/trigger`` (``ui`` unless the launcher says otherwise), and *Runs* filtered by the
job finds them. The job is not partitioned, so that a NOMS number typed once in the launchpad is all it takes (a
partitioned job would need the partition to exist first, and warns when launched without one); the op adds each
person's partition itself and reports a materialization of it.
"""

from collections.abc import Sequence

import dagster as dg
from pydantic import Field

from ...constants import BACKFILL_JOB, BACKFILL_OP, FLOW_BACKFILL, FLOW_TAG, NOMS_PARTITIONS, PEOPLE_TAG, TRIGGER_TAG
from ...core.events import is_noms_number
from ...resources import DeliusDatabase, SourceApiResource
from ..pods import BACKFILL_RESOURCES, pod_tags
from .assets import LINKED_PERSON_CONTACTS, backfill, backfill_cause

MAX_PEOPLE_PER_RUN = 100
PEOPLE_IN_TAG = 5


class BackfillConfig(dg.Config):
    noms_numbers: list[str] = Field(
        default=[], description="NOMS numbers of the people to backfill, e.g. [A1234BC, B2345CD] (at most 100)."
    )


def noms_numbers_of(values: Sequence[str]) -> list[str]:
    """The NOMS numbers, upper-cased, stripped and without duplicates, in their order; ``dg.Failure`` naming what is
    not a NOMS number, or when there is none or more than ``MAX_PEOPLE_PER_RUN``."""
    keys = list(dict.fromkeys(v.strip().upper() for v in values if v and v.strip()))
    invalid = [k for k in keys if not is_noms_number(k)]
    if invalid:
        raise dg.Failure(description=f"not NOMS numbers: {', '.join(invalid[:10])} (a NOMS number is like A1234BC)")
    if not keys:
        raise dg.Failure(
            description=f"no NOMS numbers: put them in ops.{BACKFILL_OP}.config.noms_numbers, e.g. [A1234BC]"
        )
    if len(keys) > MAX_PEOPLE_PER_RUN:
        raise dg.Failure(
            description=f"{len(keys)} NOMS numbers: at most {MAX_PEOPLE_PER_RUN} per run "
            "(python -m integration.cli.backfill splits a longer list into runs)"
        )
    return keys


@dg.op(
    name=BACKFILL_OP,
    description="Add each person's linked_person_contacts partition, merge every case note of "
    "interest and alert into Delius, check one contact each.",
)
def backfill_people_op(
    context: dg.OpExecutionContext, config: BackfillConfig, delius: DeliusDatabase, source_api: SourceApiResource
) -> None:
    keys = noms_numbers_of(config.noms_numbers)
    # Whoever launched the run (the launchpad sets no such tag), Runs can be filtered by the person.
    people = backfill_tags(keys, "")[PEOPLE_TAG]
    if context.run.tags.get(PEOPLE_TAG) != people:
        context.instance.add_run_tags(context.run_id, {PEOPLE_TAG: people})
    known = set(context.instance.get_dynamic_partitions(NOMS_PARTITIONS))
    if new := [k for k in keys if k not in known]:
        context.instance.add_dynamic_partitions(NOMS_PARTITIONS, new)
    events = backfill(keys, delius, source_api, context.log, cause=backfill_cause(context.run.tags))
    while True:
        try:
            context.log_event(next(events))
        except StopIteration as done:
            outcome = done.value
            break
    # An op may report an asset check's result (Dagster stores it like an asset's own; its annotation omits it).
    context.log_event(
        dg.AssetCheckEvaluation(  # type: ignore[arg-type]
            asset_key=dg.AssetKey(LINKED_PERSON_CONTACTS), **outcome.check
        )
    )
    outcome.raise_if_failed()


def backfill_run_config(noms_numbers: Sequence[str]) -> dg.RunConfig:
    return dg.RunConfig(ops={BACKFILL_OP: BackfillConfig(noms_numbers=list(noms_numbers))})


def backfill_tags(noms_numbers: Sequence[str], trigger: str) -> dict[str, str]:
    """``hmpps/trigger`` and ``hmpps/people`` (the NOMS numbers when a few, so Runs can be filtered by person)."""
    people = ",".join(noms_numbers) if len(noms_numbers) <= PEOPLE_IN_TAG else f"{len(noms_numbers)} people"
    return {TRIGGER_TAG: trigger, PEOPLE_TAG: people}


def backfill_request(
    noms_numbers: Sequence[str], *, run_key: str, trigger: str, tags: dict[str, str] | None = None
) -> dg.RunRequest:
    """A ``noms_backfill_job`` run for these people, as the sensors request it."""
    return dg.RunRequest(
        run_key=run_key,
        job_name=BACKFILL_JOB,
        run_config=backfill_run_config(noms_numbers),
        tags={**backfill_tags(noms_numbers, trigger), **(tags or {})},
    )


@dg.job(
    name=BACKFILL_JOB,
    tags={FLOW_TAG: FLOW_BACKFILL, TRIGGER_TAG: "ui", "dagster/max_runtime": "3600", **pod_tags(BACKFILL_RESOURCES)},
    description="Backfills the contacts of the people whose NOMS numbers are in its config (Launchpad: "
    "ops.backfill_people.config.noms_numbers: [A1234BC]); one linked_person_contacts partition each.",
)
def noms_backfill_job():
    backfill_people_op()
