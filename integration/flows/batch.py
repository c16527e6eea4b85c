"""Process a micro-batch of leased queue messages: fetch, map, merge, then acknowledge each message by its fate.

No Dagster in here: the ``prison_events_job`` op (defs/events/jobs.py) is a thin wrapper, and tests drive this
module directly too, with real or fake ports (core/ports.py).

The walk of one message: parse -> route/filter -> fetch the source record (concurrently, a thread pool) -> rules ->
bulk merges -> per message: delete (done: created, updated, moved, unchanged or skipped with a reason), leave on the
queue with a back-off (retryable failure, attempts left), or send to the dead-letter queue with the reason and delete
(permanent failure, or attempts used up). A message is deleted only after the merge transaction that holds its
effect has committed.

A batch is worked in chunks of ``merge_chunk`` messages, as a pipeline: the fetch pool runs ahead, the main thread
merges one chunk after the other (a transaction each), and an acknowledging thread deletes (or defers, or
dead-letters) each chunk's messages once its merge has committed, while the next chunk merges. So the first contacts
land within a second of the run starting, leases are given back as the run goes, and fetching, merging and
acknowledging overlap. ``seconds`` reports the time spent in each phase (they overlap) and the total.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..clients import telemetry as telemetry_adapter
from ..core import rules, telemetry
from ..core.events import DomainEvent, EventKind, PoisonMessage, parse_sqs_body
from ..core.logfmt import kv
from ..core.messages import QueueMessage
from ..core.outcomes import REASON_OFFENDER_NOT_FOUND, Action, MergeConfigurationError, StoreUnavailable
from ..core.ports import EventsQueue, SourceApi, UpstreamError
from ..core.records import Alert, CaseNote
from ..core.text import clip
from ..delius.store import DeliusStore

log = logging.getLogger(__name__)

ACKED = "acked"
RETRY = "retry later"
DEAD_LETTERED = "dead-lettered"
LEASE_LOST = "lease lost (will be redelivered)"


@dataclass(frozen=True)
class BatchSettings:
    fetch_workers: int = 8
    merge_chunk: int = 500  # messages merged (one transaction) and acknowledged together
    visibility_timeout: int = 300  # seconds a lease lasts; extended while the batch runs
    lease_margin: int = 60  # extend a lease at start if less than this is left
    max_attempts: int = 3  # deliveries before a retryable failure goes to the DLQ
    retry_delays: tuple[int, ...] = (10, 60, 300)  # visibility after failed attempt 1, 2, 3...

    def retry_delay(self, attempt: int) -> int:
        return self.retry_delays[min(attempt, len(self.retry_delays)) - 1]


@dataclass
class EventOutcome:
    """What happened to one message: ids, codes and reasons only (this goes into run metadata)."""

    sqs_message_id: str
    event_type: str | None = None
    source_id: str | None = None  # case-note or alert UUID
    noms_number: str | None = None
    crn: str | None = None
    action: str = Action.FAILED.value
    reason: str | None = None
    retryable: bool = False
    contact_id: int | None = None
    disposition: str | None = None
    attempt: int = 1
    warning: str | None = None  # the store's warning (also the reason): a move not made, a Data Cleanse
    replaced_characters: int = 0  # NUL and lone surrogates replaced in the record before Delius saw it

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BatchReport:
    outcomes: list[EventOutcome]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(o.action for o in self.outcomes)
        return {action.value: counts.get(action.value, 0) for action in Action}

    @property
    def failed(self) -> list[EventOutcome]:
        return [o for o in self.outcomes if o.action == Action.FAILED.value]

    @property
    def dispositions(self) -> dict[str | None, int]:
        return dict(Counter(o.disposition for o in self.outcomes))

    @property
    def replaced_characters(self) -> int:
        """Characters no database stores (NUL, lone surrogates) replaced in the batch's records (core/text.py)."""
        return sum(o.replaced_characters for o in self.outcomes)

    def failure_summary(self) -> str:
        reasons = Counter((o.reason or "unknown", o.disposition) for o in self.failed)
        return "; ".join(f"{n} x {reason} -> {disposition}" for (reason, disposition), n in reasons.most_common())


Emit = Callable[[Iterable[telemetry.TelemetryRecord]], None]


def process_batch(
    events: Sequence[QueueMessage],
    *,
    source: SourceApi,
    store: DeliusStore,
    queue: EventsQueue,
    settings: BatchSettings = BatchSettings(),
    run_id: str | None = None,
    emit: Emit = telemetry_adapter.emit,
) -> BatchReport:
    """``emit`` receives the reference's telemetry records of each chunk once its merge has committed
    (``core/telemetry.py``)."""
    started = time.monotonic()
    seconds: defaultdict[str, float] = defaultdict(float)
    keeper = _LeaseKeeper(queue, events, settings)
    keeper.extend_expiring()
    keeper.start()
    outcomes, to_fetch = _route_all(events)
    seen: dict[int, _Seen] = {}
    chunk = max(1, settings.merge_chunk)

    def acknowledge(indexes: list[int]) -> None:
        """One chunk, after its merge committed: runs on the acknowledging thread while the next chunk merges."""
        t0 = time.monotonic()
        _acknowledge([events[i] for i in indexes], [outcomes[i] for i in indexes], queue, settings, run_id)
        keeper.release(events[i] for i in indexes)
        seconds["acknowledge"] += time.monotonic() - t0

    try:
        with (
            ThreadPoolExecutor(max_workers=max(1, min(settings.fetch_workers, len(to_fetch) or 1))) as pool,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="acknowledge") as acker,
        ):
            futures = [pool.submit(_fetch_one, event, source) for _, event in to_fetch]
            acks = []
            # The messages that need no fetch (skipped, unreadable) are acknowledged with the first chunk.
            pending = [i for i, o in enumerate(outcomes) if o.action != _UNDECIDED]
            for start in range(0, max(len(to_fetch), 1), chunk):
                part = list(zip(to_fetch[start : start + chunk], futures[start : start + chunk]))
                t0 = time.monotonic()
                drafts = _collect(part, outcomes, seen)
                t1 = time.monotonic()
                _merge(drafts, outcomes, store)
                seconds["fetch"] += t1 - t0
                seconds["merge"] += time.monotonic() - t1
                _report_telemetry(to_fetch[start : start + chunk], outcomes, seen, drafts, emit)
                acks.append(acker.submit(acknowledge, pending + [idx for (idx, _), _ in part]))
                pending = []
            for ack in acks:
                ack.result()
    finally:
        keeper.stop()
    report = {phase: round(seconds[phase], 3) for phase in ("fetch", "merge", "acknowledge")}
    report["total"] = round(time.monotonic() - started, 3)
    not_moved = [
        o
        for o in outcomes
        if o.action == Action.SKIPPED.value
        and o.contact_id is not None
        and (o.reason or "").startswith(REASON_OFFENDER_NOT_FOUND)
    ]
    if not_moved:
        log.warning(kv("moves_not_made", count=len(not_moved), then="a backfill of the new NOMS number moves them"))
    return BatchReport(outcomes, report)


_UNDECIDED = "undecided"  # an outcome's action until its fetch (and merge) decided it


def _route_all(events: Sequence[QueueMessage]) -> tuple[list[EventOutcome], list[tuple[int, DomainEvent]]]:
    """Parse and route every message (pure core); returns the outcomes and the events whose record must be fetched."""
    outcomes: list[EventOutcome] = []
    to_fetch: list[tuple[int, DomainEvent]] = []
    for idx, leased in enumerate(events):
        outcome = EventOutcome(leased.message_id, attempt=leased.receive_count)
        outcomes.append(outcome)
        try:
            event = parse_sqs_body(leased.body, leased.message_id)
            outcome.event_type = clip(event.event_type)
            outcome.noms_number = clip(event.noms_number, 20) if event.noms_number is not None else None
            outcome.source_id = _source_id(event)
            reason = event.ignore_reason()
        except PoisonMessage as poison:
            _fail(outcome, f"unreadable message: {poison.reason}", retryable=False)
            continue
        except Exception as exc:  # noqa: BLE001 - the bulkhead: whatever one message holds fails that message alone
            _fail(outcome, f"unreadable message ({type(exc).__name__})", retryable=False)
            continue
        if reason is None and event.kind is EventKind.LINKAGE:
            reason = "linkage events are backfilled by noms_backfill_job"  # not expected here: the sensor routes them
        if reason is not None:
            _skip(outcome, reason)
        elif not event.detail_url:
            _fail(outcome, "event has no detailUrl", retryable=False)
        else:
            outcome.action = _UNDECIDED
            to_fetch.append((idx, event))
    return outcomes, to_fetch


def _collect(part, outcomes: list[EventOutcome], seen: dict[int, _Seen]) -> dict[int, rules.ContactDraft]:
    """Wait for one chunk's fetches; record skips and failures, return the drafts to merge by message index."""
    drafts: dict[int, rules.ContactDraft] = {}
    for (idx, _), future in part:
        draft, skip_reason, failure, seen[idx] = future.result()
        if failure is not None:
            _fail(outcomes[idx], failure[0], retryable=failure[1])
        elif skip_reason is not None:
            _skip(outcomes[idx], skip_reason)
        else:
            drafts[idx] = draft
            outcomes[idx].noms_number = draft.noms_number
            outcomes[idx].replaced_characters = draft.replaced_characters
    return drafts


NOT_FOUND_RETRY_DELAYS = (0.1, 0.4)  # the reference re-asks twice before believing a 404 (read-after-publish lag)


@dataclass(frozen=True)
class _Seen:
    """What the fetch saw, for the telemetry: how far the record got, and the record when it could be parsed."""

    stage: telemetry.Stage
    record: CaseNote | Alert | None = None


def _fetch_one(event: DomainEvent, source: SourceApi):
    """(draft, skip reason, (failure reason, retryable), seen), with exactly one of the first three set; never raises.

    The bulkhead of one event: an upstream error keeps its own reason and retryability; any other exception is
    that event's failure alone, named by its class (never its message, which may quote the data): retryable when
    it is the network's (``OSError`` while fetching), else permanent -- the same answer would fail the same way."""
    is_case_note = event.kind is EventKind.CASE_NOTE
    what = "case note" if is_case_note else "alert"
    fetch = source.get_case_note if is_case_note else source.get_alert
    assert event.detail_url is not None, "routed events have a detailUrl"
    try:
        record = fetch(event.detail_url)
        for delay in NOT_FOUND_RETRY_DELAYS:
            if record is not None:
                break
            time.sleep(delay)
            record = fetch(event.detail_url)
    except UpstreamError as exc:
        return None, None, (exc.reason, exc.retryable), _Seen(telemetry.Stage.FETCH_FAILED)
    except OSError as exc:
        return (
            None,
            None,
            (f"fetching the {what} failed ({type(exc).__name__})", True),
            _Seen(telemetry.Stage.FETCH_FAILED),
        )
    except Exception as exc:  # noqa: BLE001 - see above
        return (
            None,
            None,
            (f"the {what} could not be read ({type(exc).__name__})", False),
            _Seen(telemetry.Stage.FETCH_FAILED),
        )
    if record is None:
        reason = "case note not found (404)" if is_case_note else "alert not found (404)"
        return None, reason, None, _Seen(telemetry.Stage.NOT_FOUND)
    try:
        mapped = rules.map_case_note(record) if is_case_note else rules.map_alert(record)
    except Exception as exc:  # noqa: BLE001 - see above: mapping is pure, so the same record always fails
        return (
            None,
            None,
            (f"the {what} could not be mapped ({type(exc).__name__})", False),
            _Seen(telemetry.Stage.INVALID),
        )
    if mapped.invalid is not None:
        return None, None, (mapped.invalid, False), _Seen(telemetry.Stage.INVALID, mapped.record)
    stage = telemetry.Stage.IGNORED if mapped.ignored is not None else telemetry.Stage.MERGED
    return mapped.draft, mapped.ignored, None, _Seen(stage, mapped.record)


def _report_telemetry(
    part: list[tuple[int, DomainEvent]],
    outcomes: list[EventOutcome],
    seen: dict[int, _Seen],
    drafts: dict[int, rules.ContactDraft],
    emit: Emit,
) -> None:
    """The reference's telemetry of one chunk's fetched events, once their merge committed (or failed)."""
    records: list[telemetry.TelemetryRecord] = []
    for idx, event in part:
        outcome, fetched = outcomes[idx], seen.get(idx)
        if fetched is None:
            continue
        draft = drafts.get(idx)
        records += telemetry.event_records(
            is_case_note=event.kind is EventKind.CASE_NOTE,
            stage=fetched.stage,
            action=outcome.action,
            reason=outcome.reason,
            record=fetched.record,
            source_id=outcome.source_id,
            detail_url=event.detail_url,
            crn=outcome.crn,
            noms=draft.noms_number if draft else outcome.noms_number,
            warning=outcome.warning,
        )
    emit(records)  # the adapter never raises (clients/telemetry.py)


def _merge(drafts: dict[int, rules.ContactDraft], outcomes: list[EventOutcome], store: DeliusStore) -> None:
    if not drafts:
        return
    order = sorted(drafts)
    try:
        results = store.merge([drafts[idx] for idx in order])
    except (StoreUnavailable, MergeConfigurationError) as exc:
        reason = str(exc)
        log.warning(kv("merge_failed", drafts=len(order), reason=reason))
        for idx in order:
            _fail(outcomes[idx], reason, retryable=True)
        return
    except Exception as exc:  # noqa: BLE001 - the store pins data errors to their drafts; this is a bug: retry later
        reason = f"merge into Delius failed ({type(exc).__name__})"
        log.exception(kv("merge_failed", drafts=len(order), reason=reason))
        for idx in order:
            _fail(outcomes[idx], reason, retryable=True)
        return
    for idx, result in zip(order, results):
        outcome = outcomes[idx]
        outcome.action = result.action.value
        outcome.reason = result.warning or result.reason
        outcome.warning = result.warning
        outcome.retryable = result.retryable
        outcome.contact_id = result.contact_id
        outcome.crn = result.crn
        if result.warning and result.action is Action.SKIPPED:
            log.warning(
                kv(
                    "move_not_made",
                    sqs_message_id=outcome.sqs_message_id,
                    source_id=outcome.source_id,
                    contact_id=result.contact_id,
                    crn=result.crn,
                    reason=result.warning,
                )
            )


# --------------------------------------------------------------------------------------------- acknowledge


def _acknowledge(
    events: Sequence[QueueMessage],
    outcomes: list[EventOutcome],
    queue: EventsQueue,
    settings: BatchSettings,
    run_id: str | None,
) -> None:
    done: list[tuple[str, str]] = []
    retry: dict[int, list[tuple[str, str]]] = {}
    for leased, outcome in zip(events, outcomes):
        handle = (leased.message_id, leased.receipt_handle)
        if outcome.action != Action.FAILED.value:
            done.append(handle)
            outcome.disposition = ACKED
        elif outcome.retryable and leased.receive_count < settings.max_attempts:
            retry.setdefault(settings.retry_delay(leased.receive_count), []).append(handle)
            outcome.disposition = RETRY
        else:
            try:
                queue.dead_letter(leased, outcome.reason or "failed", failed_by=run_id)
                outcome.disposition = DEAD_LETTERED
            except Exception as exc:  # noqa: BLE001 - the message stays in flight and comes back: nothing is lost
                log.warning(
                    kv(
                        "dead_letter_failed",
                        sqs_message_id=leased.message_id,
                        error=type(exc).__name__,
                        then="redelivered",
                    )
                )
                outcome.disposition = LEASE_LOST
    lost = set(queue.delete(done)) if done else set()
    for delay, handles in retry.items():
        lost |= set(queue.change_visibility(handles, delay))
    for outcome in outcomes:
        if outcome.sqs_message_id in lost and outcome.disposition != DEAD_LETTERED:
            outcome.disposition = LEASE_LOST


def _skip(outcome: EventOutcome, reason: str) -> None:
    outcome.action, outcome.reason, outcome.retryable = Action.SKIPPED.value, reason, False


def _fail(outcome: EventOutcome, reason: str, *, retryable: bool) -> None:
    """A failure, with its reason made fit for a queue attribute and run metadata (core/text.py)."""
    outcome.action, outcome.reason, outcome.retryable = Action.FAILED.value, clip(reason, REASON_LIMIT), retryable


REASON_LIMIT = 500  # characters of a reason (SQS attributes take 1,000: clients/sqs.py)


def _source_id(event: DomainEvent) -> str | None:
    """The case note's or alert's id as the event names it, capped (it goes into run metadata)."""
    info = event.additional_information or {}
    value = info.get("id") or info.get("alertUuid")
    if value is None and event.detail_url:
        value = event.detail_url.rstrip("/").rsplit("/", 1)[-1]
    return clip(value) if value is not None else None


class _LeaseKeeper:
    """Keeps the batch's messages invisible while it runs: extends leases that are about to run out."""

    def __init__(self, queue: EventsQueue, events: Sequence[QueueMessage], settings: BatchSettings):
        self.queue, self.events, self.settings = queue, events, settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._lock = threading.Lock()
        self._held = {e.message_id: e.receipt_handle for e in events}

    def release(self, events) -> None:
        """Stop extending the leases of messages that were acknowledged (deleted, deferred or dead-lettered)."""
        with self._lock:
            for e in events:
                self._held.pop(e.message_id, None)

    def extend_expiring(self) -> None:
        now = time.time()
        expiring = [
            (e.message_id, e.receipt_handle)
            for e in self.events
            if now - e.received_at > self.settings.visibility_timeout - self.settings.lease_margin
        ]
        if expiring:
            lost = self.queue.change_visibility(expiring, self.settings.visibility_timeout)
            if lost:
                log.info(kv("leases_expired", count=len(lost), then="may be processed twice (harmless)"))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        period = max(5.0, self.settings.visibility_timeout / 3)
        while not self._stop.wait(period):
            with self._lock:
                held = list(self._held.items())
            if not held:
                continue
            try:
                self.queue.change_visibility(held, self.settings.visibility_timeout)
            except Exception as exc:  # noqa: BLE001 - pragma: no cover - best effort; redelivery is harmless
                log.warning(kv("lease_extension_failed", error=type(exc).__name__))
