"""Queue health in the Dagster UI: the ``events_queue`` asset, three asset checks, and the sensor that keeps them current.

* ``events_queue`` is an external asset (the SQS queue of HMPPS domain events and its dead-letter queue). Its
  observations carry the queue depth (visible, in flight, delayed), the DLQ depth, the estimated oldest-message age
  and the consumer's state; the UI plots the numbers over time (Catalog -> events_queue -> Plots / Events).
* Its checks flag what is wrong:

  - ``dlq_is_empty`` (WARN): messages wait in the dead-letter queue for an operator (peek, fix, redrive);
  - ``consumer_is_alive`` (ERROR; WARN while paused): messages are waiting and nothing has been received or processed
    for ``HEALTH_STALL_SECONDS``, or the queue sensor's latest tick failed, or it stopped ticking; a stopped
    ``prison_events_sensor`` (paused by an operator) is a WARN so that nobody forgets to resume it;
  - ``oldest_message_age_ok`` (WARN over ``HEALTH_MAX_MESSAGE_AGE_SECONDS``, ERROR over three times that).

* ``queue_health_sensor`` evaluates all of this every ``HEALTH_SENSOR_INTERVAL_SECONDS`` (60), RUNNING by default,
  without launching runs: it reports the observation and the check results as runless asset events. It reads queue
  *attributes* only (``GetQueueAttributes``): it never receives from the events queue (that would burn receive counts,
  design.md §4) nor from the DLQ. The checks can also be executed from the UI (``queue_health_checks``), which does the
  same evaluation in a run.

SQS has no "oldest message" attribute (CloudWatch's ``ApproximateAgeOfOldestMessage`` is not available locally), so
the age is estimated from two sources and the larger is shown:

* **age at receipt**: the queue sensor records each leased message's ``SentTimestamp`` and its receive time in the
  batch run's config (``sent_timestamp_ms``, ``received_at``); the age of the oldest message received since the
  previous evaluation is read from the runs created since then;
* **waiting backlog**: while visible messages have been seen on every evaluation since ``backlog_since`` and nothing
  was received since ``last_received``, the messages seen then are still waiting, so the oldest one is at least
  ``now - max(backlog_since, last_received)`` old (a lower bound that keeps growing while the consumer is stalled or
  paused).

Nothing here reads or shows a message body: only counts, times, run ids and error class names.
"""

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import dagster as dg

from .clients.queue import EventsQueue, QueueDepth
from .jobs import DELIUS_CONTACTS, prison_events_job
from .logfmt import kv
from .settings import int_env
from .resources import EventsQueueResource
from .sensors import SENSOR_NAME as CONSUMER_SENSOR

log = logging.getLogger(__name__)

EVENTS_QUEUE = dg.AssetKey("events_queue")
DLQ_IS_EMPTY = "dlq_is_empty"
CONSUMER_IS_ALIVE = "consumer_is_alive"
OLDEST_MESSAGE_AGE_OK = "oldest_message_age_ok"
CHECK_NAMES = (DLQ_IS_EMPTY, CONSUMER_IS_ALIVE, OLDEST_MESSAGE_AGE_OK)
HEALTH_SENSOR = "queue_health_sensor"
LINKAGE_JOB = "noms_backfill_job"
PENDING_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]
FINISHED_STATUSES = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
MAX_RUNS_SCANNED = 200
DEFAULT_INTERVAL_SECONDS = 60


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds, read from the environment at each evaluation."""

    stall_seconds: int = 300             # HEALTH_STALL_SECONDS: messages waiting this long with no consumer activity
    max_message_age_seconds: int = 900   # HEALTH_MAX_MESSAGE_AGE_SECONDS: WARN above, ERROR above three times this
    heartbeat_seconds: int = 600         # HEALTH_HEARTBEAT_SECONDS: report unchanged results at least this often

    @classmethod
    def from_env(cls) -> "HealthSettings":
        return cls(stall_seconds=int_env("HEALTH_STALL_SECONDS", cls.stall_seconds, minimum=1),
                   max_message_age_seconds=int_env("HEALTH_MAX_MESSAGE_AGE_SECONDS", cls.max_message_age_seconds, minimum=1),
                   heartbeat_seconds=int_env("HEALTH_HEARTBEAT_SECONDS", cls.heartbeat_seconds, minimum=0))


# --------------------------------------------------------------------------------------------- what is read


@dataclass(frozen=True)
class ConsumerActivity:
    """What Dagster's own storage says about the consumer (the queue sensor and its batch runs)."""

    sensor_status: str = "unknown"              # running | stopped | unknown (never ticked in this instance)
    last_tick_at: float | None = None
    last_tick_error: str | None = None          # error class of the latest tick, when it failed
    last_received_at: float | None = None       # latest batch or linkage run created from the queue
    last_processed_at: float | None = None      # latest batch run finished / delius_contacts materialization
    runs_waiting: int = 0                       # batch runs queued or starting
    oldest_age_at_receipt: float | None = None  # seconds, oldest message received since the previous evaluation
    received_since: int = 0                     # messages received since the previous evaluation

    @property
    def last_activity_at(self) -> float | None:
        times = [t for t in (self.last_received_at, self.last_processed_at) if t is not None]
        return max(times) if times else None


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    severity: str                    # ERROR or WARN (how bad it is when it fails)
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    state: Any = None                # what, beyond pass/fail, makes the result worth reporting again when it changes

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

    def observation_metadata(self) -> dict[str, Any]:
        a = self.activity
        meta: dict[str, Any] = {
            "visible": dg.MetadataValue.int(self.depth.visible),
            "in_flight": dg.MetadataValue.int(self.depth.in_flight),
            "delayed": dg.MetadataValue.int(self.depth.delayed),
            "dlq_messages": dg.MetadataValue.int(self.dlq.total),
            "oldest_message_age_seconds": dg.MetadataValue.float(round(self.oldest_message_age, 1)),
            "oldest_message_age_basis": dg.MetadataValue.text(self.age_basis),
            "batch_runs_waiting": dg.MetadataValue.int(a.runs_waiting),
            "received_since_last_observation": dg.MetadataValue.int(a.received_since),
            "consumer": dg.MetadataValue.text(a.sensor_status),
        }
        if a.last_activity_at is not None:
            meta["seconds_since_consumer_activity"] = dg.MetadataValue.float(round(self.at - a.last_activity_at, 1))
            meta["last_consumer_activity"] = dg.MetadataValue.timestamp(a.last_activity_at)
        if self.backlog_since is not None:
            meta["backlog_since"] = dg.MetadataValue.timestamp(self.backlog_since)
        return meta

    def log_line(self, **extra: Any) -> str:
        a = self.activity
        return kv("queue_health", visible=self.depth.visible, in_flight=self.depth.in_flight,
                  delayed=self.depth.delayed, dlq=self.dlq.total, oldest_age_s=round(self.oldest_message_age),
                  consumer=a.sensor_status, batch_runs_waiting=a.runs_waiting,
                  failing=",".join(c.name for c in self.failing) or None, **extra)

    def summary(self) -> str:
        """One line for the sensor's tick history (counts only)."""
        problems = "; ".join(f"{c.name}: {c.description}" for c in self.failing) or "all checks pass"
        return (f"queue visible={self.depth.visible} in_flight={self.depth.in_flight} dlq={self.dlq.total} "
                f"oldest_age_s={self.oldest_message_age:.0f} consumer={self.activity.sensor_status} | {problems}")


# --------------------------------------------------------------------------------------------- the decisions (pure)


def next_backlog_since(previous: float | None, depth: QueueDepth, now: float) -> float | None:
    """Since when visible messages have been seen on every evaluation (None when the queue showed none)."""
    if depth.visible <= 0:
        return None
    return previous if previous is not None else now


def assess(depth: QueueDepth, dlq: QueueDepth, activity: ConsumerActivity, settings: HealthSettings, *,
           now: float, backlog_since: float | None) -> HealthReport:
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
    checks = [_dlq_check(dlq), _consumer_check(depth, activity, settings, now, backlog_since, numbers),
              _age_check(oldest, basis, settings, numbers)]
    return HealthReport(now, depth, dlq, activity, backlog_since, oldest, basis, checks)


def _dlq_check(dlq: QueueDepth) -> CheckOutcome:
    meta = {"dlq_visible": dlq.visible, "dlq_in_flight": dlq.in_flight, "dlq_delayed": dlq.delayed}
    if dlq.total == 0:
        return CheckOutcome(DLQ_IS_EMPTY, True, "WARN", "the dead-letter queue is empty", meta, state=0)
    return CheckOutcome(
        DLQ_IS_EMPTY, False, "WARN",
        f"{dlq.total} message{'s' if dlq.total != 1 else ''} in the dead-letter queue: run peek_dlq_job to see the "
        "reasons, fix the cause, then run redrive_dlq_job (docs/operations.md)", meta, state=dlq.total)


def _consumer_check(depth: QueueDepth, a: ConsumerActivity, s: HealthSettings, now: float,
                    backlog_since: float | None, numbers: dict) -> CheckOutcome:
    meta = dict(numbers, consumer=a.sensor_status, batch_runs_waiting=a.runs_waiting,
                stall_seconds=s.stall_seconds)
    if a.last_activity_at is not None:
        meta["seconds_since_consumer_activity"] = round(now - a.last_activity_at, 1)
    if a.last_tick_at is not None:
        meta["seconds_since_sensor_tick"] = round(now - a.last_tick_at, 1)

    def fail(state: str, text: str, severity: str = "ERROR") -> CheckOutcome:
        return CheckOutcome(CONSUMER_IS_ALIVE, False, severity, text, meta, state=state)

    waiting = f"{depth.visible} message{'s' if depth.visible != 1 else ''} waiting"
    if a.sensor_status == "stopped":
        return fail("paused", f"consumption is paused: {CONSUMER_SENSOR} is stopped; {waiting} on the queue "
                    "(start the sensor to resume)", "WARN")
    if a.last_tick_error:
        return fail("tick failed", f"the latest tick of {CONSUMER_SENSOR} failed ({a.last_tick_error}); see its tick history")
    if a.last_tick_at is not None and now - a.last_tick_at > s.stall_seconds:
        return fail("silent", f"{CONSUMER_SENSOR} has not ticked for {now - a.last_tick_at:.0f} s: is the daemon running?")
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
        return CheckOutcome(CONSUMER_IS_ALIVE, True, "ERROR", f"no consumer activity yet; {waiting}", meta,
                            state="no activity yet")
    verb = "consuming" if depth.visible or depth.in_flight else "idle (queue empty)"
    return CheckOutcome(CONSUMER_IS_ALIVE, True, "ERROR",
                        f"{verb}: last consumer activity {now - a.last_activity_at:.0f} s ago", meta, state=verb)


def _age_check(oldest: float, basis: str, s: HealthSettings, numbers: dict) -> CheckOutcome:
    limit = s.max_message_age_seconds
    meta = dict(numbers, oldest_message_age_seconds=round(oldest, 1), basis=basis, limit_seconds=limit)
    text = f"oldest message about {oldest:.0f} s old ({basis}); limit {limit} s"
    minutes = int(oldest // 60)     # re-reported as it grows by a minute, not on every second of a steady flow
    if oldest > 3 * limit:
        return CheckOutcome(OLDEST_MESSAGE_AGE_OK, False, "ERROR", text, meta, state=minutes)
    if oldest > limit:
        return CheckOutcome(OLDEST_MESSAGE_AGE_OK, False, "WARN", text, meta, state=minutes)
    return CheckOutcome(OLDEST_MESSAGE_AGE_OK, True, "WARN", text, meta, state=minutes)


# --------------------------------------------------------------------------------------------- reading Dagster's storage


def consumer_activity(instance: dg.DagsterInstance, *, since: float) -> ConsumerActivity:
    """The queue sensor's state and latest tick, and its runs (``since``: epoch seconds of the previous evaluation)."""
    status, tick_at, tick_error = _sensor_state(instance)
    latest = instance.get_run_records(dg.RunsFilter(job_name=prison_events_job.name), limit=1)
    linkage = instance.get_run_records(dg.RunsFilter(job_name=LINKAGE_JOB, tags={"hmpps/trigger": "linkage"}), limit=1)
    finished = instance.get_run_records(dg.RunsFilter(job_name=prison_events_job.name, statuses=FINISHED_STATUSES),
                                        limit=1)
    materialized = instance.get_latest_materialization_event(DELIUS_CONTACTS)
    received = [r.create_timestamp.timestamp() for r in latest + linkage]
    processed = [r.end_time for r in finished if r.end_time] + ([materialized.timestamp] if materialized else [])
    recent = instance.get_run_records(
        dg.RunsFilter(job_name=prison_events_job.name, created_after=datetime.fromtimestamp(since, tz=timezone.utc)),
        limit=MAX_RUNS_SCANNED)
    ages = list(ages_at_receipt(r.dagster_run.run_config for r in recent))
    return ConsumerActivity(
        sensor_status=status, last_tick_at=tick_at, last_tick_error=tick_error,
        last_received_at=max(received) if received else None,
        last_processed_at=max(processed) if processed else None,
        runs_waiting=instance.get_runs_count(dg.RunsFilter(job_name=prison_events_job.name,
                                                           statuses=PENDING_STATUSES)),
        oldest_age_at_receipt=max(ages) if ages else None, received_since=len(ages))


def ages_at_receipt(run_configs: Iterable[Any]) -> Iterable[float]:
    """Seconds each leased message had waited when the sensor received it (from the batch runs' config)."""
    for run_config in run_configs:
        try:
            events = run_config["ops"]["process_prison_events"]["config"]["events"]
        except (KeyError, TypeError):
            continue
        for event in events or []:
            sent, received = event.get("sent_timestamp_ms"), event.get("received_at")
            if sent and received:
                yield max(0.0, float(received) - int(sent) / 1000)


def _sensor_state(instance: dg.DagsterInstance) -> tuple[str, float | None, str | None]:
    """(running | stopped | unknown, time of the latest tick, error class of the latest tick if it failed)."""
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType, TickStatus

    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
              if s.instigator_name == CONSUMER_SENSOR]
    if not states:
        return "unknown", None, None
    running = [s for s in states if s.status is not InstigatorStatus.STOPPED]
    status = "running" if running else "stopped"
    ticks = [t for s in (running or states) for t in instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=1)]
    if not ticks:
        return status, None, None
    tick = max(ticks, key=lambda t: t.timestamp)
    error = None
    if tick.status is TickStatus.FAILURE:
        error = (tick.error.cls_name if tick.error is not None else None) or "error"
    return status, tick.timestamp, error


def read_depths(queue: EventsQueue) -> tuple[QueueDepth, QueueDepth]:
    """Queue attributes of the events queue and its DLQ (GetQueueAttributes only: nothing is received)."""
    return queue.depth(), queue.dlq_depth()


def evaluate(instance: dg.DagsterInstance, queue: EventsQueue, *, backlog_since: float | None, since: float,
             settings: HealthSettings | None = None, now: float | None = None) -> HealthReport:
    now = time.time() if now is None else now
    depth, dlq = read_depths(queue)
    activity = consumer_activity(instance, since=since)
    return assess(depth, dlq, activity, settings or HealthSettings.from_env(), now=now,
                  backlog_since=next_backlog_since(backlog_since, depth, now))


def check_evaluation(outcome: CheckOutcome) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(asset_key=EVENTS_QUEUE, check_name=outcome.name, passed=outcome.passed,
                                   severity=dg.AssetCheckSeverity(outcome.severity), description=outcome.description,
                                   metadata=outcome.metadata)


def cannot_read_queue(error: BaseException) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=EVENTS_QUEUE, check_name=CONSUMER_IS_ALIVE, passed=False, severity=dg.AssetCheckSeverity.ERROR,
        description=f"the queue's attributes could not be read ({type(error).__name__}): the consumer cannot read "
                    "it either", metadata={"error": type(error).__name__})


# --------------------------------------------------------------------------------------------- definitions

events_queue = dg.AssetSpec(
    key=EVENTS_QUEUE,
    group_name="queue",
    kinds={"sqs"},
    description="The SQS queue of HMPPS domain events that prison_events_sensor consumes, and its dead-letter queue. "
                "Observed every minute by queue_health_sensor: depth (visible, in flight, delayed), DLQ depth, "
                "estimated oldest-message age and the consumer's state. See docs/operations.md.",
)

CHECK_SPECS = [
    dg.AssetCheckSpec(DLQ_IS_EMPTY, asset=EVENTS_QUEUE,
                      description="The dead-letter queue is empty. Fails (WARN) with the number of messages waiting "
                                  "for an operator: peek_dlq_job, fix the cause, redrive_dlq_job."),
    dg.AssetCheckSpec(CONSUMER_IS_ALIVE, asset=EVENTS_QUEUE,
                      description="Messages are not left waiting: fails (ERROR) when messages wait and nothing has "
                                  "been received or processed for HEALTH_STALL_SECONDS, or the queue sensor's latest "
                                  "tick failed or it stopped ticking; WARN while prison_events_sensor is stopped."),
    dg.AssetCheckSpec(OLDEST_MESSAGE_AGE_OK, asset=EVENTS_QUEUE,
                      description="The oldest message is younger than HEALTH_MAX_MESSAGE_AGE_SECONDS (WARN; ERROR "
                                  "above three times that). Estimated from the SentTimestamp of received messages and "
                                  "the time visible messages have been waiting."),
]


@dg.multi_asset_check(specs=CHECK_SPECS, name="queue_health_checks",
                      description="Evaluate the queue health checks now (queue_health_sensor does this every minute).")
def queue_health_checks(context: dg.AssetCheckExecutionContext, events_queue: EventsQueueResource):
    instance = context.instance
    latest = instance.fetch_observations(EVENTS_QUEUE, limit=1).records
    backlog_since = None
    observed_at = time.time() - 2 * DEFAULT_INTERVAL_SECONDS
    if latest:
        observed_at = latest[0].timestamp
        value = latest[0].asset_observation.metadata.get("backlog_since") if latest[0].asset_observation else None
        backlog_since = getattr(value, "value", None)
    report = evaluate(instance, events_queue.queue(), backlog_since=backlog_since, since=observed_at)
    context.log.info(report.log_line())
    for outcome in report.checks:
        yield dg.AssetCheckResult(asset_key=EVENTS_QUEUE, check_name=outcome.name, passed=outcome.passed,
                                  severity=dg.AssetCheckSeverity(outcome.severity), description=outcome.description,
                                  metadata=outcome.metadata)


def _interval_seconds() -> int:
    """HEALTH_SENSOR_INTERVAL_SECONDS, read when the code location loads (a deployment setting)."""
    return int_env("HEALTH_SENSOR_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS, minimum=5)


@dg.sensor(
    name=HEALTH_SENSOR,
    minimum_interval_seconds=_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Observes events_queue (depths, oldest-message age, consumer state) and reports its checks "
                "dlq_is_empty, consumer_is_alive and oldest_message_age_ok. Launches no runs and never receives "
                "from the queues.",
)
def queue_health_sensor(context: dg.SensorEvaluationContext, events_queue: EventsQueueResource):
    settings = HealthSettings.from_env()
    now = time.time()
    cursor = _load_cursor(context.cursor)
    since = cursor.get("at") or now - 2 * _interval_seconds()
    try:
        report = evaluate(context.instance, events_queue.queue(), backlog_since=cursor.get("backlog_since"),
                          since=since, settings=settings, now=now)
    except Exception as exc:   # SQS unreachable: say so on the check, keep the previous observation
        context.log.warning(kv("queue_health", error=type(exc).__name__))
        return dg.SensorResult(asset_events=[cannot_read_queue(exc)],
                               skip_reason=f"queue attributes could not be read ({type(exc).__name__})",
                               cursor=json.dumps({**cursor, "at": now}))
    events, cursor = select_events(report, cursor, settings)
    context.log.info(report.log_line(reported=len(events)))
    return dg.SensorResult(asset_events=events, skip_reason=report.summary(), cursor=json.dumps(cursor))


def select_events(report: HealthReport, cursor: dict[str, Any], settings: HealthSettings) -> tuple[list, dict]:
    """What to report this tick: the observation when the depths or the consumer's state changed; a check when its
    result or state changed (the DLQ count, the consumer's state, the oldest age in whole minutes); failing checks
    again every ``heartbeat_seconds / 5``; everything at least every ``heartbeat_seconds``. Runless events are not
    pruned with runs, so a quiet queue must not add thousands of them a day."""
    now = report.at
    events: list = []
    obs_key = [report.depth.visible, report.depth.in_flight, report.depth.delayed, report.dlq.total,
               report.activity.sensor_status]
    heartbeat = now - cursor.get("reported_at", 0.0) >= settings.heartbeat_seconds
    if heartbeat or obs_key != cursor.get("obs_key"):
        events.append(dg.AssetObservation(asset_key=EVENTS_QUEUE, metadata=report.observation_metadata()))
    refresh_failing = now - cursor.get("failing_at", 0.0) >= settings.heartbeat_seconds / 5
    previous = cursor.get("checks", {})
    checks = {}
    for outcome in report.checks:
        checks[outcome.name] = outcome.key
        if heartbeat or (refresh_failing and not outcome.passed) or checks[outcome.name] != previous.get(outcome.name):
            events.append(check_evaluation(outcome))
    new_cursor = {"at": now, "backlog_since": report.backlog_since, "obs_key": obs_key, "checks": checks,
                  "reported_at": now if heartbeat else cursor.get("reported_at", now),
                  "failing_at": now if heartbeat or refresh_failing else cursor.get("failing_at", now)}
    return events, new_cursor


def _load_cursor(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


defs = dg.Definitions(assets=[events_queue], asset_checks=[queue_health_checks], sensors=[queue_health_sensor])
