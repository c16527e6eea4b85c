"""Queue health, decided: the three checks on the events queue from what was read (pure).

The Dagster side (``defs/health/``) reads the queue's attributes and Dagster's own storage into a
:class:`ConsumerActivity`, calls :func:`assess`, and reports the result as an observation of the ``events_queue``
asset and three asset checks (see that package's docstring and docs/operations.md):

* ``dlq_is_empty`` (ERROR): messages wait in the dead-letter queue for an operator (peek, fix, redrive); it stays
  failed until the DLQ is empty, so one poison message makes one red check (not red runs);
* ``consumer_is_alive`` (ERROR; WARN while paused): messages are waiting and nothing has been received or processed
  for ``stall_seconds``, or the queue sensor's latest tick failed, or it stopped ticking; a stopped
  ``prison_events_sensor`` (paused by an operator) is a WARN so that nobody forgets to resume it;
* ``oldest_message_age_ok`` (WARN over ``max_message_age_seconds``, ERROR over three times that).

SQS has no "oldest message" attribute, so the age is estimated from two sources and the larger is shown: the age at
receipt (``SentTimestamp``) of the oldest message received since the previous evaluation, and, while visible
messages have been seen on every evaluation since ``backlog_since`` and nothing was received since, a lower bound
``now - max(backlog_since, last_received)`` that keeps growing while the consumer is stalled or paused.

The queue's state in one word or a few (:func:`status_of`): ``healthy``, ``stalled``, ``paused``, ``DLQ not empty``,
``old messages``, shown as the ``status`` of each ``events_queue`` report.

Only counts, times and error class names: nothing here sees a message body.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .logfmt import kv
from .messages import QueueDepth

DLQ_IS_EMPTY = "dlq_is_empty"
CONSUMER_IS_ALIVE = "consumer_is_alive"
OLDEST_MESSAGE_AGE_OK = "oldest_message_age_ok"
# Named in the checks' texts so that an operator knows what to look at (constants.py names the same objects).
CONSUMER_SENSOR = "prison_events_sensor"
PEEK_JOB, REDRIVE_JOB = "peek_dlq_job", "redrive_dlq_job"


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds (``HEALTH_<FIELD>`` environment variables, read at each evaluation: settings.py)."""

    stall_seconds: int = 300  # messages waiting this long with no consumer activity
    max_message_age_seconds: int = 900  # WARN above, ERROR above three times this
    heartbeat_seconds: int = 600  # report unchanged results at least this often


# --------------------------------------------------------------------------------------------- what is read


@dataclass(frozen=True)
class ConsumerActivity:
    """What Dagster's own storage says about the consumer (the queue sensor and its consumer runs)."""

    sensor_status: str = "unknown"  # running | stopped | unknown (never ticked in this instance)
    last_tick_at: float | None = None
    last_tick_error: str | None = None  # error class of the latest tick, when it failed
    last_received_at: float | None = None  # latest message a consumer run received (its reports)
    last_processed_at: float | None = None  # latest delius_contacts report / consumer run finished
    runs_waiting: int = 0  # consumer runs queued or starting
    oldest_age_at_receipt: float | None = None  # seconds, oldest message received since the previous evaluation
    received_since: int = 0  # messages received since the previous evaluation

    @property
    def last_activity_at(self) -> float | None:
        times = [t for t in (self.last_received_at, self.last_processed_at) if t is not None]
        return max(times) if times else None


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    severity: str  # ERROR or WARN (how bad it is when it fails)
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    state: Any = None  # what, beyond pass/fail, makes the result worth reporting again when it changes

    @property
    def key(self) -> list:
        return [self.name, self.passed, self.severity, self.state]


@dataclass(frozen=True)
class HealthReport:
    at: float
    depth: QueueDepth
    dlq: QueueDepth
    activity: ConsumerActivity
    backlog_since: float | None
    oldest_message_age: float
    age_basis: str
    checks: list[CheckOutcome]

    @property
    def failing(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed]

    def log_line(self, **extra: Any) -> str:
        a = self.activity
        return kv(
            "queue_health",
            visible=self.depth.visible,
            in_flight=self.depth.in_flight,
            delayed=self.depth.delayed,
            dlq=self.dlq.total,
            oldest_age_s=round(self.oldest_message_age),
            consumer=a.sensor_status,
            batch_runs_waiting=a.runs_waiting,
            failing=",".join(c.name for c in self.failing) or None,
            **extra,
        )

    def summary(self) -> str:
        """One line for the sensor's tick history (counts only)."""
        problems = "; ".join(f"{c.name}: {c.description}" for c in self.failing) or "all checks pass"
        return (
            f"queue visible={self.depth.visible} in_flight={self.depth.in_flight} dlq={self.dlq.total} "
            f"oldest_age_s={self.oldest_message_age:.0f} consumer={self.activity.sensor_status} | {problems}"
        )


STALLED, PAUSED, DLQ_NOT_EMPTY, OLD_MESSAGES, HEALTHY = "stalled", "paused", "DLQ not empty", "old messages", "healthy"


def status_of(report: HealthReport) -> str:
    """The queue's state for a person: ``healthy``, or what is wrong (``stalled``, ``paused``, ``DLQ not empty``,
    ``old messages``), several joined with ``, `` in that order."""
    states = []
    for check in report.failing:
        if check.name == CONSUMER_IS_ALIVE:
            states.append(PAUSED if check.state == "paused" else STALLED)
        elif check.name == DLQ_IS_EMPTY:
            states.append(DLQ_NOT_EMPTY)
        elif check.name == OLDEST_MESSAGE_AGE_OK:
            states.append(OLD_MESSAGES)
    order = [STALLED, PAUSED, DLQ_NOT_EMPTY, OLD_MESSAGES]
    return ", ".join(sorted(states, key=order.index)) or HEALTHY


# --------------------------------------------------------------------------------------------- the decisions (pure)


def next_backlog_since(previous: float | None, depth: QueueDepth, now: float) -> float | None:
    """Since when visible messages have been seen on every evaluation (None when the queue showed none)."""
    if depth.visible <= 0:
        return None
    return previous if previous is not None else now


def assess(
    depth: QueueDepth,
    dlq: QueueDepth,
    activity: ConsumerActivity,
    settings: HealthSettings,
    *,
    now: float,
    backlog_since: float | None,
) -> HealthReport:
    """The three checks from the queue attributes, the consumer's activity and the backlog start (no I/O)."""
    backlog_age = None
    if depth.visible > 0 and backlog_since is not None:
        start = max(backlog_since, activity.last_received_at or 0.0)
        backlog_age = max(0.0, now - start)
    oldest, basis = 0.0, "no message waiting or received"
    if activity.oldest_age_at_receipt is not None:
        oldest, basis = activity.oldest_age_at_receipt, "age at receipt (SentTimestamp) of a message received recently"
    if backlog_age is not None and backlog_age > 0 and backlog_age >= oldest:
        oldest, basis = backlog_age, "lower bound: messages waiting while nothing was received"
    numbers = {"visible": depth.visible, "in_flight": depth.in_flight, "dlq_messages": dlq.total}
    checks = [
        _dlq_check(dlq),
        _consumer_check(depth, activity, settings, now, backlog_since, numbers),
        _age_check(oldest, basis, settings, numbers),
    ]
    return HealthReport(now, depth, dlq, activity, backlog_since, oldest, basis, checks)


def _dlq_check(dlq: QueueDepth) -> CheckOutcome:
    meta = {"dlq_visible": dlq.visible, "dlq_in_flight": dlq.in_flight, "dlq_delayed": dlq.delayed}
    if dlq.total == 0:
        return CheckOutcome(DLQ_IS_EMPTY, True, "ERROR", "the dead-letter queue is empty", meta, state=0)
    return CheckOutcome(
        DLQ_IS_EMPTY,
        False,
        "ERROR",
        f"{dlq.total} message{'s' if dlq.total != 1 else ''} in the dead-letter queue: run {PEEK_JOB} to see the "
        f"reasons, fix the cause, then run {REDRIVE_JOB} (docs/operations.md)",
        meta,
        state=dlq.total,
    )


def _consumer_check(
    depth: QueueDepth, a: ConsumerActivity, s: HealthSettings, now: float, backlog_since: float | None, numbers: dict
) -> CheckOutcome:
    meta = dict(numbers, consumer=a.sensor_status, batch_runs_waiting=a.runs_waiting, stall_seconds=s.stall_seconds)
    if a.last_activity_at is not None:
        meta["seconds_since_consumer_activity"] = round(now - a.last_activity_at, 1)
    if a.last_tick_at is not None:
        meta["seconds_since_sensor_tick"] = round(now - a.last_tick_at, 1)

    def fail(state: str, text: str, severity: str = "ERROR") -> CheckOutcome:
        return CheckOutcome(CONSUMER_IS_ALIVE, False, severity, text, meta, state=state)

    waiting = f"{depth.visible} message{'s' if depth.visible != 1 else ''} waiting"
    if a.sensor_status == "stopped":
        return fail(
            "paused",
            f"consumption is paused: {CONSUMER_SENSOR} is stopped; {waiting} on the queue (start the sensor to resume)",
            "WARN",
        )
    if a.last_tick_error:
        return fail(
            "tick failed", f"the latest tick of {CONSUMER_SENSOR} failed ({a.last_tick_error}); see its tick history"
        )
    if a.last_tick_at is not None and now - a.last_tick_at > s.stall_seconds:
        return fail(
            "silent", f"{CONSUMER_SENSOR} has not ticked for {now - a.last_tick_at:.0f} s: is the daemon running?"
        )
    if depth.visible > 0:
        references = [t for t in (a.last_activity_at, backlog_since) if t is not None]
        idle = now - max(references) if references else 0.0
        if idle > s.stall_seconds:
            text = f"{waiting} and nothing received or processed for {idle:.0f} s"
            if a.runs_waiting:
                text += f"; {a.runs_waiting} batch runs are waiting to start (is the run queue moving?)"
            elif a.sensor_status == "unknown":
                text += f"; {CONSUMER_SENSOR} has never ticked in this instance (is the daemon running?)"
            return fail("stalled", text)
    if a.last_activity_at is None:
        return CheckOutcome(
            CONSUMER_IS_ALIVE, True, "ERROR", f"no consumer activity yet; {waiting}", meta, state="no activity yet"
        )
    verb = "consuming" if depth.visible or depth.in_flight else "idle (queue empty)"
    return CheckOutcome(
        CONSUMER_IS_ALIVE,
        True,
        "ERROR",
        f"{verb}: last consumer activity {now - a.last_activity_at:.0f} s ago",
        meta,
        state=verb,
    )


def _age_check(oldest: float, basis: str, s: HealthSettings, numbers: dict) -> CheckOutcome:
    limit = s.max_message_age_seconds
    meta = dict(numbers, oldest_message_age_seconds=round(oldest, 1), basis=basis, limit_seconds=limit)
    text = f"oldest message about {oldest:.0f} s old ({basis}); limit {limit} s"
    minutes = int(oldest // 60)  # re-reported as it grows by a minute, not on every second of a steady flow
    if oldest > 3 * limit:
        return CheckOutcome(OLDEST_MESSAGE_AGE_OK, False, "ERROR", text, meta, state=minutes)
    if oldest > limit:
        return CheckOutcome(OLDEST_MESSAGE_AGE_OK, False, "WARN", text, meta, state=minutes)
    return CheckOutcome(OLDEST_MESSAGE_AGE_OK, True, "WARN", text, meta, state=minutes)


def ages_at_receipt(reports: Iterable[Any]) -> Iterable[float]:
    """Seconds the oldest message of each consumer report had waited when it was received (the
    ``oldest_age_at_receipt_seconds`` of ``delius_contacts`` materializations; plain numbers or metadata values)."""
    for metadata in reports:
        if not isinstance(metadata, dict):
            continue
        raw = metadata.get("oldest_age_at_receipt_seconds")
        age = getattr(raw, "value", raw)
        if isinstance(age, (int, float)):
            yield max(0.0, float(age))


@dataclass(frozen=True)
class Reporting:
    """What one evaluation reports (see :func:`what_to_report`) and the cursor to keep for the next."""

    observation: bool
    checks: list[CheckOutcome]
    cursor: dict[str, Any]


def what_to_report(report: HealthReport, cursor: dict[str, Any], settings: HealthSettings) -> Reporting:
    """The report (``observation``) when the depths or the consumer's state changed, and with it every check: the UI
    shows a check's result against the asset's latest report, so a report without its checks would hide them. A
    check on its own when its result or state changed (the DLQ count, the consumer's state, the oldest age in whole
    minutes); failing checks again every ``heartbeat_seconds / 5``; everything at least every ``heartbeat_seconds``.
    Runless events are not pruned with runs, so a quiet queue must not add thousands of them a day."""
    now = report.at
    obs_key = [
        report.depth.visible,
        report.depth.in_flight,
        report.depth.delayed,
        report.dlq.total,
        report.activity.sensor_status,
    ]
    heartbeat = now - cursor.get("reported_at", 0.0) >= settings.heartbeat_seconds
    observation = heartbeat or obs_key != cursor.get("obs_key")
    refresh_failing = now - cursor.get("failing_at", 0.0) >= settings.heartbeat_seconds / 5
    previous = cursor.get("checks", {})
    keys, reported = {}, []
    for outcome in report.checks:
        keys[outcome.name] = outcome.key
        if observation or (refresh_failing and not outcome.passed) or keys[outcome.name] != previous.get(outcome.name):
            reported.append(outcome)
    new_cursor = {
        "at": now,
        "backlog_since": report.backlog_since,
        "obs_key": obs_key,
        "checks": keys,
        "reported_at": now if heartbeat else cursor.get("reported_at", now),
        "failing_at": now if heartbeat or refresh_failing else cursor.get("failing_at", now),
    }
    return Reporting(observation, reported, new_cursor)
