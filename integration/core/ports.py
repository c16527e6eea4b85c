"""The ports: what the flows need from the outside world, and the errors those parts may raise.

* ``SourceApi`` -- case notes and alerts: ``clients.hmpps.HmppsSourceApi`` (HTTP with HMPPS Auth tokens) and
  ``clients.fakes.FakeSourceApi`` (in memory, for unit tests);
* ``EventsQueue`` -- the events queue and its dead-letter queue: ``clients.sqs.SqsEventsQueue`` and
  ``clients.fakes.FakeEventsQueue``.

The Delius side (``delius.store.DeliusStore``) raises the errors of ``core/outcomes.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .messages import QueueDepth, QueueMessage


class UpstreamError(Exception):
    """A call to an upstream API failed. ``reason`` is readable and never contains a response body or token."""

    retryable = True

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class DetailUrlNotAllowed(UpstreamError):
    """The event's detailUrl is not on the allow-list (``DETAIL_URL_ALLOWLIST``): never sent a token; not retryable."""

    retryable = False


class UnreadableAnswer(UpstreamError):
    """The API answered 200 with JSON the integration will not read: nested deeper than the parser's recursion limit,
    or a number of more digits than Python converts (4,300). The same record gives the same answer: not retryable
    (a body that is not JSON at all may be a proxy's page in an outage, and stays retryable)."""

    retryable = False


class SourceApi(ABC):
    """Case notes and alerts as the Offender Case Notes API and Prison Alerts API serve them (raw JSON dicts)."""

    @abstractmethod
    def get_case_note(self, detail_url: str) -> dict[str, Any] | None:
        """GET the case note at ``detail_url``; None when the API answers 404."""

    @abstractmethod
    def get_alert(self, detail_url: str) -> dict[str, Any] | None:
        """GET the alert at ``detail_url``; None when the API answers 404."""

    @abstractmethod
    def search_case_notes(self, noms_number: str, type_subtypes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every case note of the person with one of ``type_subtypes``, sensitive included, all dates, all pages."""

    @abstractmethod
    def get_person_alerts(self, noms_number: str) -> list[dict[str, Any]]:
        """Every alert of the person (active and inactive), all pages."""


class EventsQueue(Protocol):
    """The HMPPS domain-events queue and its dead-letter queue. Messages are acknowledged by (id, receipt handle);
    the batch calls return the ids that failed."""

    queue_url: str

    @property
    def dlq_url(self) -> str: ...

    def receive(
        self,
        max_messages: int = 10,
        *,
        wait_seconds: int = 0,
        visibility_timeout: int | None = None,
        queue_url: str | None = None,
    ) -> list[QueueMessage]: ...

    def delete(self, messages: Sequence[tuple[str, str]], *, queue_url: str | None = None) -> list[str]: ...

    def change_visibility(
        self, messages: Sequence[tuple[str, str]], seconds: int, *, queue_url: str | None = None
    ) -> list[str]: ...

    def send(
        self,
        body: str,
        attributes: Mapping[str, str] | None = None,
        *,
        delay_seconds: int = 0,
        queue_url: str | None = None,
    ) -> str: ...

    def depth(self, queue_url: str | None = None) -> QueueDepth: ...

    def dead_letter(
        self, message: QueueMessage, reason: str, *, failed_by: str | None = None, body: str | None = None
    ) -> None: ...

    def receive_dlq(
        self, max_messages: int = 10, *, wait_seconds: int = 0, visibility_timeout: int = 30
    ) -> list[QueueMessage]: ...

    def delete_dlq(self, messages: Sequence[tuple[str, str]]) -> list[str]: ...

    def dlq_depth(self) -> QueueDepth: ...
