"""Dagster resources: configuration read when a run or sensor starts (``EnvVar``), never at import time.

Required settings come from ``dg.EnvVar`` (design.md §1); optional ones (``DELIUS_USERNAME``,
``DETAIL_URL_ALLOWLIST``, ``HMPPS_API_DEADLINE_SECONDS``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``, the ``CONSUMER_*``
tunables) fall back to the environment, then to defaults, when the resource is used.
"""


import logging
import os
import threading
from abc import ABC, abstractmethod
from typing import Optional

import boto3
import dagster as dg
from pydantic import PrivateAttr

from .clients.base import SourceApi
from .clients.fake import FakeSourceApi
from .clients.hmpps import HmppsSourceApi, parse_deadline
from .clients.http import DEFAULT_DEADLINE
from .clients.queue import EventsQueue, sqs_client
from .delius.engine import create_delius_engine
from .delius.merge import DeliusStore
from .delius.reference_data import SERVICE_USERNAME
from .logfmt import kv
from .pipeline import PipelineSettings

log = logging.getLogger(__name__)

DEFAULT_REGION = "eu-west-2"
_engines: dict[str, object] = {}
_engines_lock = threading.Lock()


def _env(name: str, value: Optional[str]) -> Optional[str]:
    return value if value not in (None, "") else (os.environ.get(name) or None)


class DeliusDatabase(dg.ConfigurableResource):
    """The Delius database (``DELIUS_DATABASE_URL``), written as ``DELIUS_USERNAME``."""

    url: str
    username: Optional[str] = None

    def store(self) -> DeliusStore:
        with _engines_lock:   # one engine (connection pool) per URL and process, shared by sensor ticks
            engine = _engines.get(self.url)
            if engine is None:
                engine = _engines[self.url] = create_delius_engine(self.url)
        return DeliusStore(engine, username=_env("DELIUS_USERNAME", self.username) or SERVICE_USERNAME)


class EventsQueueResource(dg.ConfigurableResource):
    """The SQS queue of HMPPS domain events (``EVENTS_QUEUE_URL``) and its dead-letter queue."""

    queue_url: str
    dlq_url: Optional[str] = None
    region_name: Optional[str] = None
    endpoint_url: Optional[str] = None

    def queue(self) -> EventsQueue:
        region = _env("AWS_REGION", self.region_name) or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        endpoint = _env("AWS_ENDPOINT_URL", self.endpoint_url)
        return EventsQueue(self.queue_url, dlq_url=_env("EVENTS_DLQ_URL", self.dlq_url),
                           client=_cached_sqs_client(region, endpoint))


_clients: dict[tuple, object] = {}


def _cached_sqs_client(region: str, endpoint: Optional[str]):
    key = (region, endpoint)
    client = _clients.get(key)
    if client is None:
        if endpoint and boto3.Session().get_credentials() is None:
            # A local endpoint (moto) needs some credentials to sign with; production uses IRSA and never gets here.
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        client = _clients[key] = sqs_client(region, endpoint)
    return client


class SourceApiResource(dg.ConfigurableResource, ABC):
    """Case notes and alerts: the real HMPPS APIs, or an in-memory fake for unit tests."""

    @abstractmethod
    def client(self) -> SourceApi: ...


class HmppsApis(SourceApiResource):
    """The Offender Case Notes API and Prison Alerts API, with an HMPPS Auth client-credentials token."""

    auth_url: str
    client_id: str
    client_secret: str
    case_notes_url: str
    alerts_url: str
    detail_url_allowlist: Optional[str] = None
    timeout_seconds: float = 10.0
    retries: int = 3
    deadline_seconds: Optional[float] = None  # HMPPS_API_DEADLINE_SECONDS, else 15 (clients/http.py)

    _client: Optional[HmppsSourceApi] = PrivateAttr(default=None)

    def client(self) -> SourceApi:
        if self._client is None:
            deadline = self.deadline_seconds or parse_deadline(_env("HMPPS_API_DEADLINE_SECONDS", None)
                                                               or DEFAULT_DEADLINE)
            self._client = HmppsSourceApi(
                self.auth_url, self.client_id, self.client_secret, self.case_notes_url, self.alerts_url,
                allowlist=_env("DETAIL_URL_ALLOWLIST", self.detail_url_allowlist),
                timeout=(3.05, self.timeout_seconds), total_retries=self.retries, deadline=deadline)
        return self._client


_fakes: dict[str, FakeSourceApi] = {}


class InMemorySourceApi(SourceApiResource):
    """A named in-memory ``FakeSourceApi`` (register it with ``InMemorySourceApi.register``): unit tests only."""

    name: str = "default"

    @staticmethod
    def register(name: str, fake: FakeSourceApi) -> "InMemorySourceApi":
        _fakes[name] = fake
        return InMemorySourceApi(name=name)

    def client(self) -> SourceApi:
        return _fakes[self.name]


class ConsumerSettings(dg.ConfigurableResource):
    """Tunables of the queue consumer. Each can be overridden by the environment variable ``CONSUMER_<FIELD>``."""

    max_events_per_run: int = 2000      # micro-batch size (a tick's messages are split into equal batches)
    max_events_per_tick: int = 2000     # receive at most this many messages per sensor tick
    tick_seconds: float = 4.0           # receive for at most this long per tick (ticks start at most every 5 s)
    max_pending_runs: int = 2           # stop receiving while this many batch runs wait in the run queue
    visibility_timeout: int = 300       # the lease on a received message, extended while its run works
    max_attempts: int = 3               # deliveries before a retryable failure is dead-lettered
    retry_delays: str = "10,60,300"     # seconds before retry 1, 2, 3...
    fetch_workers: int = 16             # concurrent fetches per run
    merge_chunk: int = 500              # messages merged in one transaction and then acknowledged, as a run goes

    def resolved(self) -> "ConsumerSettings":
        """The settings with ``CONSUMER_<FIELD>`` applied; a bad value is logged and the default kept (a typo must
        never stop the queue sensor)."""
        values = {}
        for name in type(self).model_fields:
            default = getattr(self, name)
            raw = (os.environ.get(f"CONSUMER_{name.upper()}") or "").strip()
            try:
                values[name] = type(default)(raw) if raw else default
            except ValueError:
                log.warning(kv("invalid_setting", setting=f"CONSUMER_{name.upper()}", value=raw, using=default))
                values[name] = default
        return ConsumerSettings(**values)

    def pipeline_settings(self) -> PipelineSettings:
        s = self.resolved()
        return PipelineSettings(fetch_workers=s.fetch_workers, merge_chunk=max(1, s.merge_chunk),
                                visibility_timeout=s.visibility_timeout,
                                lease_margin=min(60, s.visibility_timeout // 3), max_attempts=s.max_attempts,
                                retry_delays=tuple(int(x) for x in s.retry_delays.split(",") if x.strip()))
