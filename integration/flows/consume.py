"""A long-lived consumer: receive from the events queue while it has work, process, acknowledge, report.

No Dagster in here: the ``prison_events_job`` op (defs/events/jobs.py) gives it the ports and three hooks (is
consumption paused, hand a linkage message to the sensor, report a chunk of outcomes). The protocol and why it loses
nothing are in docs/queue-protocol.md.

* ``receivers`` threads long-poll the queue (``wait_seconds``), 10 messages a call, into a bounded buffer: they
  receive only while the buffer holds less than ``2 x max_batch`` messages and ``2 x max_batch_bytes`` characters
  of bodies, so a backlog waits on the queue, where waiting costs no receive counts, nothing received waits long
  enough for its lease to matter, and a burst of the largest messages cannot exhaust the worker's memory;
* the main thread takes what the buffer holds (up to ``max_batch`` messages and ``max_batch_bytes``, at least one;
  as soon as one message is there, so a trickle
  waits for nothing) and routes it (core/intake.py): unreadable messages go to the dead-letter queue at once with the
  reason; linkage events are handed to the queue sensor (``hand_over_linkage``), which requests their backfill and
  deletes them once the run exists; the rest go through ``flows.batch.process_batch`` (concurrent fetches, a merge
  transaction per chunk, each chunk acknowledged after its commit, leases extended), while the receivers already
  fill the buffer for the next batch;
* outcomes are reported in chunks (``report_events`` outcomes, or every ``report_seconds``);
* it stops receiving when :func:`core.consumer.exit_reason` says so (lifetime, idle, paused, stop requested), then
  processes what it holds, reports and returns.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..core.consumer import STOPPED, LoopSettings, exit_reason
from ..core.intake import plan_intake
from ..core.logfmt import kv
from ..core.messages import QueueMessage
from ..core.outcomes import Action
from ..core.ports import EventsQueue, SourceApi
from ..delius.store import DeliusStore
from .batch import ACKED, DEAD_LETTERED, LEASE_LOST, RETRY, BatchSettings, EventOutcome, process_batch

log = logging.getLogger(__name__)

LINKAGE = "linkage"  # an outcome's action: handed to the sensor for its backfill
HANDED_OVER = "handed to the sensor"  # its disposition
HAND_OVER_FAILED = "hand-over failed (will be redelivered)"
COUNT_KEYS = tuple(a.value for a in Action) + (LINKAGE,)
RECEIVE_BACKOFF_SECONDS = 2.0


@dataclass(frozen=True)
class ConsumeSettings:
    batch: BatchSettings = BatchSettings()
    loop: LoopSettings = LoopSettings()
    receivers: int = 2  # receive calls in parallel
    wait_seconds: int = 2  # long poll of each receive call
    max_batch: int = 1000  # messages routed and processed together at most
    max_batch_bytes: int = 32 * 1024 * 1024  # ... and their bodies' characters at most (the buffer holds twice this)
    linkage_visibility_timeout: int = 3600  # lease given to a linkage message handed to the sensor
    report_events: int = 500  # outcomes per report at most
    report_seconds: float = 30.0  # a report at least this often while outcomes wait
    pause_check_seconds: float = 2.0  # how often ``paused()`` is asked


@dataclass
class ChunkReport:
    """The outcomes of one report: what a ``delius_contacts`` materialization shows."""

    outcomes: list[EventOutcome]
    seconds: dict[str, float] = field(default_factory=dict)
    first_received_at: float | None = None
    last_received_at: float | None = None
    oldest_age_at_receipt: float | None = None  # seconds the oldest message had waited on the queue

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(o.action for o in self.outcomes)
        return {key: counts.get(key, 0) for key in COUNT_KEYS}

    @property
    def dispositions(self) -> dict[str, int]:
        return dict(Counter(o.disposition or "-" for o in self.outcomes))

    @property
    def replaced_characters(self) -> int:
        """NUL and lone surrogates replaced (core/text.py) in the records of the chunk before Delius saw them."""
        return sum(o.replaced_characters for o in self.outcomes)


class ConsumerHooks(Protocol):
    def paused(self) -> bool: ...

    def hand_over_linkage(
        self, message: QueueMessage, noms_number: str, visible_until: float, event_type: str
    ) -> None: ...

    def report(self, chunk: ChunkReport) -> None: ...


@dataclass
class ConsumeResult:
    exit_reason: str
    seconds: float
    received: int = 0
    counts: Counter = field(default_factory=Counter)
    receive_errors: Counter = field(default_factory=Counter)  # error class -> times
    needs_action: Counter = field(default_factory=Counter)  # (reason, disposition) -> events
    data_failures: Counter = field(default_factory=Counter)  # (reason, disposition) -> events

    @property
    def failed(self) -> bool:
        """The run could not do its whole job: events left for retry or dead-lettered for an outage, a lease or
        hand-over lost, the queue not readable. Data failures already in the DLQ with a reason do not count."""
        return bool(self.needs_action) or bool(self.receive_errors)

    def failure_summary(self, limit: int = 5) -> str:
        parts = [
            f"{n} x {reason} -> {disposition}" for (reason, disposition), n in self.needs_action.most_common(limit)
        ]
        parts += [f"receive failed {n} x ({error})" for error, n in self.receive_errors.most_common(limit)]
        return "; ".join(parts)

    def warning_summary(self, limit: int = 5) -> str:
        return "; ".join(
            f"{n} x {reason} -> {disposition}" for (reason, disposition), n in self.data_failures.most_common(limit)
        )


def classify(outcome: EventOutcome) -> str | None:
    """'action' (the run failed: an operator must act or the event waits for a retry), 'data' (dead-lettered with
    its reason: the DLQ check shows it), or None (done)."""
    if outcome.action != Action.FAILED.value:
        return "action" if outcome.disposition in (LEASE_LOST, HAND_OVER_FAILED) else None
    if outcome.disposition == DEAD_LETTERED and not outcome.retryable:
        return "data"
    return "action"


class _Receivers:
    """``count`` threads long-polling into ``buffer`` while it has room; stop() then join() ends them."""

    def __init__(self, queue: EventsQueue, settings: ConsumeSettings, clock: Callable[[], float]):
        self.queue, self.settings, self.clock = queue, settings, clock
        self.buffer: queue_module.Queue[QueueMessage] = queue_module.Queue()
        self.room = max(10, 2 * settings.max_batch)
        self.room_bytes = 2 * settings.max_batch_bytes
        self.buffered_bytes = 0  # characters of the bodies in the buffer (under _lock)
        self.last_received = clock()
        self.received = 0
        self.errors: Counter = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"receiver-{n}", daemon=True)
            for n in range(max(1, settings.receivers))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=self.settings.wait_seconds + 60)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.buffer.qsize() + 10 > self.room or self.buffered_bytes >= self.room_bytes:
                self._stop.wait(0.05)
                continue
            try:
                messages = self.queue.receive(
                    10,
                    wait_seconds=self.settings.wait_seconds,
                    visibility_timeout=self.settings.batch.visibility_timeout,
                )
            except Exception as exc:  # noqa: BLE001 - SQS unreachable: counted (the run fails), retried after a pause
                with self._lock:
                    self.errors[type(exc).__name__] += 1
                log.warning(kv("receive_failed", error=type(exc).__name__))
                self._stop.wait(RECEIVE_BACKOFF_SECONDS)
                continue
            if messages:
                with self._lock:
                    self.received += len(messages)
                    self.last_received = self.clock()
                    self.buffered_bytes += sum(len(m.body) for m in messages)
                for message in messages:
                    self.buffer.put(message)

    def take(self, limit: int, wait: float) -> list[QueueMessage]:
        """Up to ``limit`` buffered messages and ``max_batch_bytes`` characters of bodies (at least one message),
        waiting at most ``wait`` seconds for the first."""
        try:
            first = self.buffer.get(timeout=wait) if wait > 0 else self.buffer.get_nowait()
        except queue_module.Empty:
            return []
        taken = [first]
        size = len(first.body)
        while len(taken) < limit and size < self.settings.max_batch_bytes:
            try:
                message = self.buffer.get_nowait()
            except queue_module.Empty:
                break
            taken.append(message)
            size += len(message.body)
        with self._lock:
            self.buffered_bytes -= size
        return taken


def consume(
    queue: EventsQueue,
    *,
    source: SourceApi,
    store: DeliusStore,
    hooks: ConsumerHooks,
    settings: ConsumeSettings = ConsumeSettings(),
    run_id: str | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.time,
) -> ConsumeResult:
    started = clock()
    receivers = _Receivers(queue, settings, clock)
    result = ConsumeResult(exit_reason=STOPPED, seconds=0.0)
    pending = _Pending(settings, clock)
    paused, paused_checked = _ask(hooks.paused), clock()
    reason = exit_reason(
        settings.loop,
        now=started,
        started=started,
        last_received=started,
        paused=paused,
        stop_requested=stop_requested(),
    )
    if reason is not None:  # paused (or stopped) before it began: receive nothing
        result.exit_reason, result.seconds = reason, round(clock() - started, 3)
        return result
    receivers.start()
    try:
        while reason is None:
            now = clock()
            if now - paused_checked >= settings.pause_check_seconds:
                paused, paused_checked = _ask(hooks.paused), now
            reason = exit_reason(
                settings.loop,
                now=now,
                started=started,
                last_received=receivers.last_received,
                paused=paused,
                stop_requested=stop_requested(),
            )
            if reason is not None:
                break
            messages = receivers.take(settings.max_batch, wait=0.5)
            if messages:
                _handle(messages, queue, source, store, hooks, settings, run_id, pending, result)
            pending.flush_if_due(hooks)
    except BaseException:
        # Interrupted (the run was terminated, the worker is going down): give the buffered messages back to the
        # queue at once rather than let their leases run out; what a batch held comes back after its lease.
        receivers.stop()
        _give_back(queue, receivers)
        raise
    # Stop receiving, then process what was received: nothing taken from the queue is left to its lease.
    receivers.stop()
    receivers.join()
    while True:
        messages = receivers.take(settings.max_batch, wait=0)
        if not messages:
            break
        _handle(messages, queue, source, store, hooks, settings, run_id, pending, result)
    pending.flush(hooks)
    result.exit_reason = reason
    result.received = receivers.received
    result.receive_errors = receivers.errors
    result.seconds = round(clock() - started, 3)
    return result


def _give_back(queue: EventsQueue, receivers: _Receivers) -> None:
    held = receivers.take(receivers.room, wait=0)
    if not held:
        return
    try:
        queue.change_visibility([m.handle for m in held], 0)
    except Exception as exc:  # noqa: BLE001 - their leases run out instead
        log.warning(kv("give_back_failed", messages=len(held), error=type(exc).__name__))


def _ask(paused: Callable[[], bool]) -> bool:
    try:
        return bool(paused())
    except Exception as exc:  # noqa: BLE001 - the instance is briefly unreadable: keep consuming, ask again later
        log.warning(kv("pause_check_failed", error=type(exc).__name__))
        return False


def _handle(
    messages: list[QueueMessage],
    queue: EventsQueue,
    source: SourceApi,
    store: DeliusStore,
    hooks: ConsumerHooks,
    settings: ConsumeSettings,
    run_id: str | None,
    pending: _Pending,
    result: ConsumeResult,
) -> None:
    plan = plan_intake(messages, max_per_run=max(1, len(messages)))
    outcomes: list[EventOutcome] = []
    for message, reason in plan.poison:
        outcome = EventOutcome(
            message.message_id, action=Action.FAILED.value, reason=reason, attempt=message.receive_count
        )
        try:
            queue.dead_letter(message, reason, failed_by=run_id)
            outcome.disposition = DEAD_LETTERED
        except Exception as exc:  # noqa: BLE001 - left in flight: it comes back (and SQS's own redrive catches it at worst)
            log.warning(kv("dead_letter_failed", sqs_message_id=message.message_id, error=type(exc).__name__))
            outcome.disposition = LEASE_LOST
        outcomes.append(outcome)
    for link in plan.linkage:
        for message, event_type in zip(link.messages, link.event_types):
            outcomes.append(_hand_over(message, link.noms_number, event_type, queue, hooks, settings))
    seconds: dict[str, float] = {}
    for batch in plan.batches:
        report = process_batch(batch, source=source, store=store, queue=queue, settings=settings.batch, run_id=run_id)
        outcomes += report.outcomes
        for phase, value in report.seconds.items():
            seconds[phase] = seconds.get(phase, 0.0) + value
    for outcome in outcomes:
        result.counts[outcome.action] += 1
        kind = classify(outcome)
        if kind is not None:
            key = (outcome.reason or "failed", outcome.disposition or "-")
            (result.needs_action if kind == "action" else result.data_failures)[key] += 1
    pending.add(outcomes, messages, seconds, hooks)


def _hand_over(
    message: QueueMessage,
    noms: str,
    event_type: str,
    queue: EventsQueue,
    hooks: ConsumerHooks,
    settings: ConsumeSettings,
) -> EventOutcome:
    """Record the message for the sensor (a durable event first), then give it the long linkage lease."""
    outcome = EventOutcome(
        message.message_id,
        event_type=event_type,
        noms_number=noms,
        action=LINKAGE,
        reason="backfilled by noms_backfill_job",
        attempt=message.receive_count,
    )
    lease = settings.linkage_visibility_timeout
    try:
        hooks.hand_over_linkage(message, noms, time.time() + lease, event_type)
        lost = queue.change_visibility([message.handle], lease)
        outcome.disposition = HAND_OVER_FAILED if lost else HANDED_OVER
    except Exception as exc:  # noqa: BLE001 - not recorded or not extended: the lease runs out and it is received again
        log.warning(kv("linkage_hand_over_failed", sqs_message_id=message.message_id, error=type(exc).__name__))
        outcome.disposition = HAND_OVER_FAILED
    return outcome


class _Pending:
    """Outcomes waiting to be reported, with the receipt times of their messages."""

    def __init__(self, settings: ConsumeSettings, clock: Callable[[], float]):
        self.settings, self.clock = settings, clock
        self.outcomes: list[EventOutcome] = []
        self.seconds: Counter = Counter()
        self.first: float | None = None
        self.last: float | None = None
        self.oldest: float | None = None
        self.reported_at = clock()

    def add(
        self,
        outcomes: list[EventOutcome],
        messages: list[QueueMessage],
        seconds: dict[str, float],
        hooks: ConsumerHooks,
    ) -> None:
        for message in messages:
            if message.received_at:
                self.first = message.received_at if self.first is None else min(self.first, message.received_at)
                self.last = message.received_at if self.last is None else max(self.last, message.received_at)
                if message.sent_timestamp_ms:
                    age = max(0.0, message.received_at - message.sent_timestamp_ms / 1000)
                    self.oldest = age if self.oldest is None else max(self.oldest, age)
        self.seconds.update(seconds)
        self.outcomes += outcomes
        while len(self.outcomes) >= self.settings.report_events:
            self._emit(hooks, self.settings.report_events)

    def flush_if_due(self, hooks: ConsumerHooks) -> None:
        if self.outcomes and self.clock() - self.reported_at >= self.settings.report_seconds:
            self.flush(hooks)

    def flush(self, hooks: ConsumerHooks) -> None:
        while self.outcomes:
            self._emit(hooks, self.settings.report_events)

    def _emit(self, hooks: ConsumerHooks, size: int) -> None:
        part, self.outcomes = self.outcomes[:size], self.outcomes[size:]
        # The phase seconds go with the first report after the batches they measured (each counted once).
        chunk = ChunkReport(part, {k: round(v, 3) for k, v in self.seconds.items()}, self.first, self.last, self.oldest)
        self.seconds = Counter()
        if not self.outcomes:
            self.first, self.last, self.oldest = None, None, None
        self.reported_at = self.clock()
        try:
            hooks.report(chunk)
        except Exception as exc:  # noqa: BLE001 - reporting must never stop consumption (the contacts are committed)
            log.warning(kv("report_failed", events=len(part), error=type(exc).__name__))


__all__ = [
    "ACKED",
    "RETRY",
    "DEAD_LETTERED",
    "LEASE_LOST",
    "LINKAGE",
    "HANDED_OVER",
    "ChunkReport",
    "ConsumeResult",
    "ConsumeSettings",
    "ConsumerHooks",
    "classify",
    "consume",
]
