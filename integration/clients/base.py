"""The source-records interface the pipeline depends on, and the errors it can raise.

Two implementations: ``clients.hmpps.HmppsSourceApi`` (HTTP, OAuth2 client credentials) and
``clients.fake.FakeSourceApi`` (in memory, for unit tests of ops and assets).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class UpstreamError(Exception):
    """A call to an upstream API failed. ``reason`` is readable and never contains a response body or token."""

    retryable = True

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class DetailUrlNotAllowed(UpstreamError):
    """The event's detailUrl is not on the allow-list (design.md §1): never sent a token; not retryable."""

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
