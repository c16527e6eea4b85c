"""The queue sensor: supervises the consumer runs and takes custody of linkage messages. It never receives.

Each tick (the protocol and its proof are in docs/queue-protocol.md):

1. **linkage custody** -- delete the linkage messages whose backfill run now exists in run storage; extend the leases
   of those still waiting; forget those whose lease ran out (SQS redelivers them); then take new hand-overs (the
   ``linked_person_contacts`` observations consumer runs record, read after the cursor) and request one
   ``noms_backfill_job`` run each, capped per tick and by the backfill runs already waiting (back-pressure);
2. **supervision** -- read the queue's attributes (GetQueueAttributes: visible / in flight) and the consumer runs
   alive, and request a ``prison_events_job`` run when there is work and none is lasting, or a second while a deep
   backlog lasts (``core.consumer.consumers_to_start``), never more than ``CONSUMER_MAX_RUNS``.
"""

import json
import time
from typing import Any

import dagster as dg

from ... import settings
from ...constants import (
    BACKFILL_JOB,
    CAUSE_TAG,
    CONSUMER_UNTIL_TAG,
    EVENTS_JOB,
    EVENTS_SENSOR,
    LINKED_PERSON_CONTACTS,
    MESSAGES_TAG,
    TRIGGER_TAG,
)
from ...core.consumer import Custody, LiveConsumer, consumers_to_start, linkage_run_key, plan_custody
from ...core.events import is_noms_number
from ...core.logfmt import kv
from ...core.messages import QueueDepth
from ...core.ports import EventsQueue
from ...resources import MINIMUMS, ConsumerSettings, EventsQueueResource
from ..backfill.jobs import backfill_request, noms_backfill_job
from .jobs import prison_events_job

LIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
WAITING_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
EXTEND_MARGIN = 120  # extend a linkage lease in custody when less than this is left (seconds)
OBSERVATION_PAGES = 5  # pages of hand-overs read per tick at most (expired ones are skipped)
TRIGGER_SUPERVISOR = "supervisor"


def _tick_seconds() -> int:
    """CONSUMER_TICK_SECONDS (default 10), read when the code location loads: how soon the first event after a
    silence is seen, against the idle daemon's CPU (a tick is a gRPC call and tick storage; docs/performance.md)."""
    return settings.load(ConsumerSettings, "CONSUMER_", minimums=MINIMUMS).tick_seconds


INTERVAL_SECONDS = _tick_seconds()


# The events queue of the latest full tick, by URL, in this process (the code server): an idle tick reads the queue's
# attributes through it without building the sensor's resources, which would open the Dagster instance (~60 ms of CPU
# on SQLite instance storage, 720 ticks an hour; docs/performance.md).
_QUEUES: dict[str, EventsQueue] = {}


@dg.sensor(
    name=EVENTS_SENSOR,
    jobs=[prison_events_job, noms_backfill_job],
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    required_resource_keys={"events_queue", "consumer"},
    description="Supervises the queue consumer: starts prison_events_job runs (long-lived consumers) while the "
    "queue has work, and turns the linkage events they hand over into noms_backfill_job runs. Reads "
    "queue attributes only. Stop it to pause consumption: consumer runs exit, messages wait on the "
    "queue.",
)
def prison_events_sensor(context: dg.SensorEvaluationContext, **_invoked_with: Any):
    """(Invoked directly, as tests do, Dagster passes the resources as keywords; they are read from the context.)"""
    cursor = _load_cursor(context.cursor)
    now = time.time()
    cached = _QUEUES.get(cursor["q"]) if cursor["q"] else None
    if cached is not None and cursor["quiet"] and not cursor["custody"] and not cursor["requested"]:
        # At the last look no consumer was alive and nothing was in custody. If the queue holds nothing (visible, in
        # flight or delayed), no consumer can have handed anything over since (a hand-over is a message in flight):
        # nothing to read, nothing to start. Such a tick costs one GetQueueAttributes.
        try:
            if cached.depth().total == 0:
                return dg.SensorResult(skip_reason="queue empty, no consumer alive", cursor=context.cursor)
        except Exception:  # noqa: BLE001 - the full tick below says what is wrong
            pass
    events_queue: EventsQueueResource = context.resources.events_queue
    consumer: ConsumerSettings = context.resources.consumer
    settings = consumer.resolved()
    queue = events_queue.queue()
    _QUEUES[queue.queue_url] = queue
    cursor["q"] = queue.queue_url
    try:
        depth: QueueDepth | None = queue.depth()
    except Exception as exc:  # noqa: BLE001 - SQS unreachable: settle custody, decide nothing; the tick and the health check say so
        context.log.warning(kv("tick", error=type(exc).__name__))
        depth = None
    instance = context.instance

    custody, backfills, settled = take_custody(context, queue, cursor, settings, now)
    requests = list(backfills)

    recent = [
        r
        for r in cursor["requested"]
        if now - r["at"] < consumer.supervision_settings().request_grace
        and not instance.get_run_records(dg.RunsFilter(tags={"dagster/run_key": r["k"]}), limit=1)
    ]
    if depth is None:
        return _result(
            context,
            requests,
            _dump_cursor(cursor, custody, recent, cursor["deep"], quiet=False),
            "queue attributes could not be read",
        )
    live = live_consumers(instance)
    decision = consumers_to_start(
        depth, live, len(recent), consumer.supervision_settings(), now=now, deep_since=cursor["deep"]
    )
    for n in range(decision.start):
        key = f"consumer-{int(now * 1000)}-{n}"
        recent.append({"k": key, "at": now})
        requests.append(dg.RunRequest(run_key=key, job_name=EVENTS_JOB, tags={TRIGGER_TAG: TRIGGER_SUPERVISOR}))
    context.log.info(
        kv(
            "tick",
            visible=depth.visible,
            in_flight=depth.in_flight,
            consumers=len(live),
            requested=len(recent),
            start=decision.start,
            decision=decision.reason,
            linkage_backfills=len(backfills),
            linkage_acked=settled,
            custody=len(custody),
        )
    )
    quiet = not live and not recent
    return _result(
        context,
        requests,
        _dump_cursor(cursor, custody, recent, decision.deep_since, quiet=quiet),
        decision.reason,
    )


def _result(
    context: dg.SensorEvaluationContext, requests: list[dg.RunRequest], cursor: str, reason: str
) -> dg.SensorResult:
    if not requests:
        return dg.SensorResult(skip_reason=reason, cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def live_consumers(instance: dg.DagsterInstance) -> list[LiveConsumer]:
    live = []
    for record in instance.get_run_records(dg.RunsFilter(job_name=EVENTS_JOB, statuses=LIVE_STATUSES), limit=50):
        until = record.dagster_run.tags.get(CONSUMER_UNTIL_TAG)
        try:
            live.append(LiveConsumer(record.dagster_run.run_id, float(until) if until else None))
        except ValueError:
            live.append(LiveConsumer(record.dagster_run.run_id, None))
    return live


def take_custody(
    context: dg.SensorEvaluationContext,
    queue: EventsQueue,
    cursor: dict[str, Any],
    settings: ConsumerSettings,
    now: float,
) -> tuple[list[Custody], list[dg.RunRequest], int]:
    """Settle the linkage messages in custody, then take new hand-overs within the caps. Returns the custody to keep,
    the backfill run requests and how many messages were deleted. Updates ``cursor["obs"]``."""
    instance = context.instance
    held = [Custody.from_json(raw) for raw in cursor["custody"]]
    existing = {
        c.run_key for c in held if instance.get_run_records(dg.RunsFilter(tags={"dagster/run_key": c.run_key}), limit=1)
    }
    pending = instance.get_runs_count(
        dg.RunsFilter(job_name=BACKFILL_JOB, statuses=WAITING_STATUSES, tags={TRIGGER_TAG: "linkage"})
    )
    plan = plan_custody(
        held,
        existing,
        now=now,
        extend_margin=EXTEND_MARGIN,
        per_tick=settings.max_backfills_per_tick,
        max_pending=settings.max_pending_backfills,
        pending_runs=pending,
    )
    keep = list(plan.keep)
    settled = 0
    if plan.delete:
        try:
            failed = set(queue.delete([(c.message_id, c.receipt_handle) for c in plan.delete]))
        except Exception as exc:  # noqa: BLE001 - kept: deleted on a later tick (or redelivered, and the backfill key dedups)
            context.log.warning(kv("linkage_delete_failed", error=type(exc).__name__, messages=len(plan.delete)))
            keep += plan.delete
        else:
            # A failed delete means the receipt is stale (the message was received again, and its new hand-over
            # carries a fresh one): nothing to keep.
            settled = len(plan.delete) - len(failed)
    if plan.extend:
        lease = min(43200, settings.linkage_visibility_timeout)
        try:
            lost = set(queue.change_visibility([(c.message_id, c.receipt_handle) for c in plan.extend], lease))
        except Exception as exc:  # noqa: BLE001 - kept, extended on a later tick
            context.log.warning(kv("linkage_extend_failed", error=type(exc).__name__, messages=len(plan.extend)))
            keep += plan.extend
        else:
            keep += [
                Custody(c.message_id, c.receipt_handle, c.run_key, now + lease)
                for c in plan.extend
                if c.message_id not in lost
            ]
    requests: list[dg.RunRequest] = []
    for record in _new_hand_overs(instance, cursor, plan.may_request, now):
        meta = record.asset_observation.metadata if record.asset_observation else {}
        message_id = _value(meta.get("sqs_message_id"))
        handle = _value(meta.get("receipt_handle"))
        until = _value(meta.get("visible_until"))
        cause = _value(meta.get("event_type"))
        noms = record.partition_key
        if not (message_id and handle and until and noms and is_noms_number(noms)):
            continue
        key = linkage_run_key(str(message_id))
        keep.append(Custody(str(message_id), str(handle), key, float(until)))
        tags = {MESSAGES_TAG: "1", **({CAUSE_TAG: str(cause)} if cause else {})}
        requests.append(backfill_request([noms], run_key=key, trigger="linkage", tags=tags))
    return keep, requests, settled


def _new_hand_overs(instance: dg.DagsterInstance, cursor: dict[str, Any], limit: int, now: float) -> list:
    """Up to ``limit`` hand-overs after ``cursor["obs"]`` whose lease has not ended (older ones were redelivered and
    handed over again), oldest first; moves the cursor past everything read."""
    if limit <= 0:
        return []
    taken: list = []
    for _ in range(OBSERVATION_PAGES):
        result = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(LINKED_PERSON_CONTACTS), after_storage_id=cursor["obs"]),
            limit=limit - len(taken),
            ascending=True,
        )
        for record in result.records:
            cursor["obs"] = record.storage_id
            until = _value((record.asset_observation.metadata if record.asset_observation else {}).get("visible_until"))
            if until and float(until) > now:
                taken.append(record)
        if len(taken) >= limit or not result.has_more:
            break
    return taken


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


def _load_cursor(raw: str | None) -> dict[str, Any]:
    try:
        cursor = json.loads(raw) if raw else {}
    except ValueError:
        cursor = {}
    if not isinstance(cursor, dict):
        cursor = {}
    custody = [c for c in cursor.get("custody", []) if isinstance(c, dict) and {"id", "h", "k", "u"} <= set(c)]
    obs = cursor.get("obs")
    return {
        "custody": custody,
        "obs": obs if isinstance(obs, int) else None,
        "requested": [r for r in cursor.get("requested", []) if isinstance(r, dict) and "k" in r and "at" in r],
        "deep": cursor.get("deep") if isinstance(cursor.get("deep"), (int, float)) else None,
        "quiet": cursor.get("quiet") is True,
        "q": cursor.get("q") if isinstance(cursor.get("q"), str) else None,
    }


def _dump_cursor(
    cursor: dict[str, Any], custody: list[Custody], requested: list[dict], deep_since: float | None, *, quiet: bool
) -> str:
    return json.dumps(
        {
            "custody": [c.as_json() for c in custody],
            "obs": cursor["obs"],
            "requested": requested,
            "deep": deep_since,
            "quiet": quiet,
            "q": cursor["q"],
        },
        separators=(",", ":"),
    )
