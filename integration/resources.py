"""Dagster resources: the Delius database, the events queue, the HMPPS APIs, the consumer's tunables, the notifier.

Configuration is read when a run or sensor uses a resource, never at import time: required settings are ``EnvVar``
fields (wired in definitions.py), optional ones come from ``settings.py`` at use.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from . import settings
from .clients.hmpps import HmppsSourceApi, parse_deadline
from .clients.http import DEFAULT_DEADLINE
from .clients.sqs import SqsEventsQueue, sqs_client
from .clients.webhook import post_json
from .core.consumer import LoopSettings, SupervisionSettings
from .core.logfmt import kv
from .core.ports import EventsQueue, SourceApi
from .delius.engine import create_delius_engine
from .delius.reference_data import SERVICE_USERNAME
from .delius.store import DeliusStore
from .flows.batch import BatchSettings
from .flows.consume import ConsumeSettings

log = logging.getLogger(__name__)

DEFAULT_REGION = "eu-west-2"
_engines: dict[str, Any] = {}
_clients: dict[tuple, Any] = {}
_shared_lock = threading.Lock()


class DeliusDatabase(dg.ConfigurableResource):
    """The Delius database (``DELIUS_DATABASE_URL``), written as ``DELIUS_USERNAME``."""

    url: str
    username: str | None = None

    def store(self) -> DeliusStore:
        with _shared_lock:  # one engine (connection pool) per URL and process, shared by sensor ticks
            engine = _engines.get(self.url)
            if engine is None:
                engine = _engines[self.url] = create_delius_engine(self.url)
        return DeliusStore(engine, username=self.username or settings.text("DELIUS_USERNAME", SERVICE_USERNAME))


class EventsQueueResource(dg.ConfigurableResource):
    """The SQS queue of HMPPS domain events (``EVENTS_QUEUE_URL``) and its dead-letter queue (``EVENTS_DLQ_URL``,
    else the queue's RedrivePolicy); ``AWS_REGION`` and ``AWS_ENDPOINT_URL`` as boto3 reads them."""

    queue_url: str
    dlq_url: str | None = None
    region_name: str | None = None
    endpoint_url: str | None = None

    def queue(self) -> EventsQueue:
        region = (
            self.region_name or settings.text("AWS_REGION") or settings.text("AWS_DEFAULT_REGION") or DEFAULT_REGION
        )
        endpoint = self.endpoint_url or settings.text("AWS_ENDPOINT_URL")
        with _shared_lock:  # one boto3 client per (region, endpoint) and process
            client = _clients.get((region, endpoint))
            if client is None:
                client = _clients[(region, endpoint)] = sqs_client(region, endpoint)
        return SqsEventsQueue(self.queue_url, dlq_url=self.dlq_url or settings.text("EVENTS_DLQ_URL"), client=client)


class SourceApiResource(dg.ConfigurableResource, ABC):
    """Case notes and alerts: the real HMPPS APIs (``HmppsApis``)."""

    @abstractmethod
    def client(self) -> SourceApi: ...


class HmppsApis(SourceApiResource):
    """The Offender Case Notes API and Prison Alerts API, with an HMPPS Auth client-credentials token; detail URLs
    must be on ``DETAIL_URL_ALLOWLIST`` (default: the two API origins)."""

    auth_url: str
    client_id: str
    client_secret: str
    case_notes_url: str
    alerts_url: str
    detail_url_allowlist: str | None = None
    timeout_seconds: float = 10.0
    retries: int = 3
    deadline_seconds: float | None = None  # HMPPS_API_DEADLINE_SECONDS, else 15 (clients/http.py)

    _client: HmppsSourceApi | None = PrivateAttr(default=None)

    def client(self) -> SourceApi:
        if self._client is None:
            deadline = self.deadline_seconds or api_deadline()
            self._client = HmppsSourceApi(
                self.auth_url,
                self.client_id,
                self.client_secret,
                self.case_notes_url,
                self.alerts_url,
                allowlist=self.detail_url_allowlist or settings.text("DETAIL_URL_ALLOWLIST"),
                timeout=(3.05, self.timeout_seconds),
                total_retries=self.retries,
                deadline=deadline,
            )
        return self._client


def api_deadline() -> float:
    """``HMPPS_API_DEADLINE_SECONDS``: the total time one fetch may take (a bad value is logged, the default used)."""
    raw = settings.text("HMPPS_API_DEADLINE_SECONDS")
    if raw is None:
        return DEFAULT_DEADLINE
    try:
        return parse_deadline(raw)
    except ValueError:
        log.warning(
            kv("invalid_setting", setting="HMPPS_API_DEADLINE_SECONDS", value=raw[:100], using=DEFAULT_DEADLINE)
        )
        return DEFAULT_DEADLINE


class ConsumerSettings(dg.ConfigurableResource):
    """Tunables of the queue consumer; each is overridden by the environment variable ``CONSUMER_<FIELD>``
    (README.md lists them; docs/queue-protocol.md says what each does)."""

    tick_seconds: int = 10  # how often the queue sensor looks (read when the code location loads)
    lifetime_seconds: int = 900  # a consumer run exits after this long; the sensor starts the next
    idle_seconds: int = 60  # ... or after this long without receiving a message
    max_runs: int = 2  # consumer runs alive at once, at most (a second one for a deep backlog)
    scale_up_backlog: int = 2000  # visible messages that make a backlog deep (a second run while it lasts)
    receivers: int = 2  # receive calls in parallel per run (each long-polls, 10 messages a call)
    wait_seconds: int = 2  # long poll of one receive call
    max_batch: int = 1000  # messages routed and processed together at most
    max_batch_bytes: int = 32 * 1024 * 1024  # ... and characters of their bodies at most (the buffer: twice this)
    visibility_timeout: int = 300  # the lease on a received message, extended while its run works
    max_attempts: int = 3  # deliveries before a retryable failure is dead-lettered
    retry_delays: str = "10,60,300"  # seconds before retry 1, 2, 3...
    fetch_workers: int = 16  # concurrent fetches per run
    merge_chunk: int = 500  # messages merged in one transaction and then acknowledged, as a run goes
    report_events: int = 500  # outcomes per delius_contacts materialization at most
    report_seconds: int = 30  # a materialization at least this often while outcomes wait
    linkage_visibility_timeout: int = 3600  # lease of a linkage message handed to the sensor
    max_backfills_per_tick: int = 10  # linkage backfill runs the sensor requests per tick at most
    max_pending_backfills: int = 10  # ... and not while this many wait in the run queue or in its custody

    def resolved(self) -> ConsumerSettings:
        """These settings with the ``CONSUMER_<FIELD>`` variables applied (bad values logged, defaults kept)."""
        return settings.load(ConsumerSettings, "CONSUMER_", base=self, minimums=MINIMUMS)

    def batch_settings(self) -> BatchSettings:
        s = self.resolved()
        try:
            delays = tuple(int(x) for x in s.retry_delays.split(",") if x.strip()) or (10, 60, 300)
        except ValueError:
            log.warning(
                kv("invalid_setting", setting="CONSUMER_RETRY_DELAYS", value=s.retry_delays[:100], using="10,60,300")
            )
            delays = (10, 60, 300)
        return BatchSettings(
            fetch_workers=s.fetch_workers,
            merge_chunk=s.merge_chunk,
            visibility_timeout=s.visibility_timeout,
            lease_margin=min(60, s.visibility_timeout // 3),
            max_attempts=s.max_attempts,
            retry_delays=delays,
        )

    def consume_settings(self) -> ConsumeSettings:
        """What a consumer run works with. The lifetime stays well inside the job's ``dagster/max_runtime``."""
        s = self.resolved()
        return ConsumeSettings(
            batch=self.batch_settings(),
            loop=LoopSettings(
                lifetime_seconds=min(s.lifetime_seconds, MAX_LIFETIME_SECONDS), idle_seconds=s.idle_seconds
            ),
            receivers=s.receivers,
            wait_seconds=min(20, s.wait_seconds),
            max_batch=s.max_batch,
            max_batch_bytes=s.max_batch_bytes,
            linkage_visibility_timeout=min(43200, s.linkage_visibility_timeout),
            report_events=s.report_events,
            report_seconds=s.report_seconds,
        )

    def supervision_settings(self) -> SupervisionSettings:
        s = self.resolved()
        return SupervisionSettings(max_runs=s.max_runs, scale_up_backlog=s.scale_up_backlog)


MAX_LIFETIME_SECONDS = 2700  # prison_events_job has dagster/max_runtime 3600 (defs/events/jobs.py)
MINIMUMS = {
    "tick_seconds": 1,
    "lifetime_seconds": 10,
    "idle_seconds": 1,
    "max_runs": 1,
    "scale_up_backlog": 1,
    "receivers": 1,
    "wait_seconds": 0,
    "max_batch": 1,
    "max_batch_bytes": 262144,  # one SQS message at its largest
    "merge_chunk": 1,
    "visibility_timeout": 1,
    "max_attempts": 1,
    "fetch_workers": 1,
    "report_events": 1,
    "report_seconds": 1,
    "linkage_visibility_timeout": 1,
    "max_backfills_per_tick": 0,
    "max_pending_backfills": 0,
}


class Notifier(dg.ConfigurableResource):
    """The chat webhook (``NOTIFY_WEBHOOK_URL``) and the UI address for run links (``DAGSTER_UI_URL``), both
    optional and read when used. Without a webhook URL, notifications are only logged."""

    webhook_url: str | None = None
    dagster_ui_url: str | None = None
    timeout_seconds: float = 5.0

    def run_link(self, run_id: str) -> str | None:
        base = self.dagster_ui_url or settings.text("DAGSTER_UI_URL")
        return f"{base.rstrip('/')}/runs/{run_id}" if base else None

    def post(self, payload: dict[str, Any], log: Any) -> bool:
        """Send, or log why not. Never raises."""
        url = self.webhook_url or settings.text("NOTIFY_WEBHOOK_URL")
        if not url:
            # The message itself is logged instead (ids and counts only, like every notification).
            log.info(kv("notification_skipped", reason="NOTIFY_WEBHOOK_URL is not set", text=payload.get("text", "")))
            return False
        try:
            error = post_json(url, payload, self.timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - a notification must never break what sends it
            error = f"notification failed ({type(exc).__name__})"
        if error:
            log.warning(kv("notification_failed", reason=error))
            return False
        return True
