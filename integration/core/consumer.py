"""The long-lived consumer's decisions, pure (docs/queue-protocol.md has the protocol and its proof).

* :func:`consumers_to_start` -- the queue sensor, supervising: from the queue's attributes and the consumer runs it
  knows of, how many ``prison_events_job`` runs to request this tick (never over the cap);
* :func:`exit_reason` -- a consumer run, each time round its loop: whether to stop receiving, and why (lifetime,
  idle, paused);
* :func:`plan_custody` -- the queue sensor again, for linkage messages handed to it by consumer runs: which to
  delete, which leases to extend, which to forget, and how many backfill runs it may request this tick.

Standard library only; the Dagster shell (``defs/events/``) reads the inputs and carries the decisions out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .messages import QueueDepth

# Exit reasons of a consumer run (also its log lines and run metadata).
LIFETIME = "lifetime"  # lived CONSUMER_LIFETIME_SECONDS: the supervisor has started (or will start) the next
IDLE = "idle"  # nothing received for CONSUMER_IDLE_SECONDS
PAUSED = "paused"  # prison_events_sensor was stopped by an operator: consumption is paused
STOPPED = "stopped"  # the run was asked to stop (termination)


@dataclass(frozen=True)
class LiveConsumer:
    """A ``prison_events_job`` run that is queued, starting or started. ``until`` is when it plans to exit
    (epoch seconds; None until the run has started and said so)."""

    run_id: str
    until: float | None = None


@dataclass(frozen=True)
class SupervisionSettings:
    max_runs: int = 2  # consumer runs alive at once, at most
    scale_up_backlog: int = 2000  # visible messages that make a backlog "deep": a second run while it lasts
    scale_up_after: float = 15.0  # seconds a deep backlog must have lasted before another run is requested
    handover_seconds: float = 30.0  # a run this close to its planned exit no longer counts as lasting
    request_grace: float = 120.0  # a requested run not yet in run storage counts as live this long


@dataclass(frozen=True)
class Supervision:
    start: int  # runs to request now
    deep_since: float | None  # since when the backlog has been deep (kept in the sensor's cursor)
    reason: str  # for the tick's log line and skip reason


def consumers_to_start(
    depth: QueueDepth,
    live: Sequence[LiveConsumer],
    requested: int,
    settings: SupervisionSettings,
    *,
    now: float,
    deep_since: float | None,
) -> Supervision:
    """How many consumer runs to request.

    ``live`` are the runs in run storage that are queued, starting or started; ``requested`` the runs this sensor
    requested recently that are not in run storage yet (a tick's requests are launched after it returns). A run
    near its planned exit (within ``handover_seconds``) is *retiring*: it still counts against the cap but no longer
    as lasting, so its successor starts while it finishes -- a lifetime ends without a gap in consumption.

    * no visible message: nothing to start (delayed retries become visible by themselves and are seen then);
    * no lasting run: one, if the cap allows;
    * a deep backlog (``scale_up_backlog`` visible) that has lasted ``scale_up_after`` seconds: one more per tick, up
      to ``max_runs``.
    """
    cap = max(1, settings.max_runs)
    alive = len(live) + requested
    lasting = requested + sum(1 for run in live if run.until is None or run.until - now > settings.handover_seconds)
    deep = depth.visible >= max(1, settings.scale_up_backlog)
    deep_since = (deep_since if deep_since is not None else now) if deep else None
    if depth.visible <= 0:
        return Supervision(0, deep_since, "queue empty" if not alive else f"{alive} consumer(s) alive, none visible")
    if alive >= cap:
        return Supervision(0, deep_since, f"{alive} consumer(s) alive (cap {cap})")
    if lasting == 0:
        return Supervision(1, deep_since, "work waiting and no consumer lasting")
    if deep and deep_since is not None and now - deep_since >= settings.scale_up_after:
        return Supervision(1, deep_since, f"deep backlog ({depth.visible} visible) for {now - deep_since:.0f} s")
    return Supervision(0, deep_since, f"{lasting} consumer(s) at work")


# --------------------------------------------------------------------------------------------- a consumer's loop


@dataclass(frozen=True)
class LoopSettings:
    lifetime_seconds: float = 900.0
    idle_seconds: float = 60.0


def exit_reason(
    settings: LoopSettings,
    *,
    now: float,
    started: float,
    last_received: float,
    paused: bool = False,
    stop_requested: bool = False,
) -> str | None:
    """Why a consumer run stops receiving now, or None to keep going. ``last_received`` is when a receive last
    returned a message (the run's start before the first). Once it stops receiving it still finishes, acknowledges
    and reports what it holds, then exits."""
    if stop_requested:
        return STOPPED
    if paused:
        return PAUSED
    if now - started >= settings.lifetime_seconds:
        return LIFETIME
    if now - last_received >= settings.idle_seconds:
        return IDLE
    return None


# --------------------------------------------------------------------------------------------- linkage custody


@dataclass(frozen=True)
class Custody:
    """A linkage message in the sensor's custody: its backfill run has been requested (``run_key``); the message is
    deleted once that run exists in run storage. ``until`` is when its lease ends (epoch seconds)."""

    message_id: str
    receipt_handle: str
    run_key: str
    until: float

    def as_json(self) -> dict:
        return {"id": self.message_id, "h": self.receipt_handle, "k": self.run_key, "u": round(self.until, 1)}

    @classmethod
    def from_json(cls, raw: dict) -> Custody:
        return cls(str(raw["id"]), str(raw["h"]), str(raw["k"]), float(raw["u"]))


@dataclass(frozen=True)
class CustodyPlan:
    delete: list[Custody] = field(default_factory=list)  # their run exists: acknowledge the message
    extend: list[Custody] = field(default_factory=list)  # lease ends soon: extend it
    forget: list[Custody] = field(default_factory=list)  # lease ended without a run: SQS redelivers it
    keep: list[Custody] = field(default_factory=list)  # still waiting for their run
    may_request: int = 0  # new backfill runs this tick may request


def linkage_run_key(message_id: str) -> str:
    """The backfill run of a linkage message, stable across redeliveries (the SQS message id does not change): a
    redelivered linkage message never starts a second backfill, and a replayed tick is deduplicated."""
    return "link-" + message_id


def plan_custody(
    custody: Iterable[Custody],
    existing_keys: set[str],
    *,
    now: float,
    extend_margin: float,
    per_tick: int,
    max_pending: int,
    pending_runs: int,
) -> CustodyPlan:
    """``existing_keys``: the run keys of ``custody`` that have a run in run storage. ``pending_runs``: linkage
    backfill runs waiting in the run queue; together with the requests still in custody they make the back-pressure
    that caps new requests (``max_pending``), on top of ``per_tick``."""
    plan = CustodyPlan()
    for entry in custody:
        if entry.run_key in existing_keys:
            plan.delete.append(entry)
        elif entry.until <= now:
            plan.forget.append(entry)
        elif entry.until - now <= extend_margin:
            plan.extend.append(entry)
        else:
            plan.keep.append(entry)
    waiting = len(plan.extend) + len(plan.keep)
    room = max(0, max_pending - pending_runs - waiting)
    return CustodyPlan(plan.delete, plan.extend, plan.forget, plan.keep, max(0, min(per_tick, room)))
