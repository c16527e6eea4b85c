"""``HmppsSourceApi``: the Offender Case Notes API and the Prison Alerts API over HTTP, with HMPPS Auth tokens.

- Detail URLs from events are checked against the allow-list of ``scheme://host[:port]`` origins *before* any
  request, so a forged or misrouted event never receives the bearer token (upstream-apis.md §8).
- Transient failures (connection and read errors, 500/502/503/504) are retried by the session's adapter; what is
  left becomes ``UpstreamError`` with the status, which the pipeline treats as retryable.
- 404 on a detail URL means the record was deleted: ``None``. 401 drops the cached token and retries once.
- Redirects are never followed (a redirect could lead the token off the allow-list).
- Reasons in errors name the API, the status and the origin, never a body, note text, token or secret.

Thread-safe: one instance serves the pipeline's thread pool.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Mapping
from urllib.parse import quote

import requests

from .auth import DEFAULT_SKEW_SECONDS, TokenProvider, _is_timeout
from ..core.ports import DetailUrlNotAllowed, SourceApi, UpstreamError
from .http import DEFAULT_TIMEOUT, NotAnOrigin, build_session, origin_of, parse_allowlist

CASE_NOTES = "case notes API"
ALERTS = "alerts API"
DEFAULT_PAGE_SIZE = 1000
MAX_PAGES = 100_000  # a guard against a server that never says it is done


class HmppsSourceApi(SourceApi):
    """The real ``SourceApi``: case notes and alerts over HTTP with OAuth2 client credentials."""

    def __init__(
        self,
        auth_url: str,
        client_id: str,
        client_secret: str,
        case_notes_url: str,
        alerts_url: str,
        *,
        allowlist: list[str] | tuple[str, ...] | str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        total_retries: int = 3,
        backoff_factor: float = 0.1,
        pool_size: int = 16,
        page_size: int = DEFAULT_PAGE_SIZE,
        alerts_page_size: int = DEFAULT_PAGE_SIZE,
        token_skew_seconds: float = DEFAULT_SKEW_SECONDS,
        session: requests.Session | None = None,
        token_provider: TokenProvider | None = None,
    ) -> None:
        if not case_notes_url or not alerts_url:
            raise ValueError("case_notes_url and alerts_url are required")
        if page_size < 1 or alerts_page_size < 1:
            raise ValueError("page sizes must be at least 1")
        self.case_notes_url = case_notes_url.rstrip("/")
        self.alerts_url = alerts_url.rstrip("/")
        origins = parse_allowlist(allowlist)
        if not origins:
            origins = parse_allowlist([self.case_notes_url, self.alerts_url])
        self.allowlist: frozenset[str] = frozenset(origins)
        self.timeout = timeout
        self.page_size = page_size
        self.alerts_page_size = alerts_page_size
        self._owns_session = session is None
        self._session = session if session is not None else build_session(total_retries, backoff_factor, pool_size)
        self.tokens = token_provider or TokenProvider(
            auth_url, client_id, client_secret, timeout=timeout, total_retries=total_retries,
            backoff_factor=backoff_factor, skew_seconds=token_skew_seconds,
        )
        self._stats_lock = threading.Lock()
        self._http_calls: dict[str, int] = {CASE_NOTES: 0, ALERTS: 0}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "HmppsSourceApi":
        """Built from design.md §1's variables: HMPPS_AUTH_URL, CLIENT_ID, CLIENT_SECRET, CASE_NOTES_API_URL,
        ALERTS_API_URL and DETAIL_URL_ALLOWLIST (default: the origins of the two API URLs)."""
        env = os.environ if environ is None else environ
        missing = [name for name in ("HMPPS_AUTH_URL", "CLIENT_ID", "CLIENT_SECRET", "CASE_NOTES_API_URL",
                                     "ALERTS_API_URL") if not env.get(name)]
        if missing:
            raise ValueError(f"missing configuration: {', '.join(missing)}")
        overrides.setdefault("allowlist", env.get("DETAIL_URL_ALLOWLIST") or None)
        return cls(env["HMPPS_AUTH_URL"], env["CLIENT_ID"], env["CLIENT_SECRET"], env["CASE_NOTES_API_URL"],
                   env["ALERTS_API_URL"], **overrides)

    def __repr__(self) -> str:
        return f"HmppsSourceApi(case_notes_url={self.case_notes_url!r}, alerts_url={self.alerts_url!r})"

    # --- SourceApi --------------------------------------------------------------------------------------------
    def get_case_note(self, detail_url: str) -> dict[str, Any] | None:
        self._check_allowed(detail_url)
        return self._get_detail(CASE_NOTES, detail_url)

    def get_alert(self, detail_url: str) -> dict[str, Any] | None:
        self._check_allowed(detail_url)
        return self._get_detail(ALERTS, detail_url)

    def search_case_notes(self, noms_number: str, type_subtypes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """All pages of ``POST /search/case-notes/{NOMS}``, oldest first (``occurredAt,asc``: notes added while
        paging land at the end rather than shifting unread ones away). A note seen twice is kept once."""
        url = f"{self.case_notes_url}/search/case-notes/{_segment(noms_number.upper())}"
        notes: dict[str, dict[str, Any]] = {}
        unidentified: list[dict[str, Any]] = []
        page = 1
        while page <= MAX_PAGES:
            body = {"typeSubTypes": type_subtypes, "includeSensitive": True, "page": page, "size": self.page_size,
                    "sort": "occurredAt,asc"}
            body = {k: v for k, v in body.items() if v is not None}
            data = self._expect_ok(CASE_NOTES, self._call(CASE_NOTES, "POST", url, json=body))
            content = data.get("content")
            if not isinstance(content, list):
                raise UpstreamError(f"{CASE_NOTES} search answer has no content list")
            for note in content:
                note_id = note.get("caseNoteId") if isinstance(note, dict) else None
                if isinstance(note_id, str):
                    notes[note_id] = note
                else:
                    unidentified.append(note)
            metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
            total, size = metadata.get("totalElements"), metadata.get("size")
            # Page arithmetic uses the size the server applied (it may cap what was asked for).
            size = size if isinstance(size, int) and size > 0 else self.page_size
            if not content:
                break
            if isinstance(total, int) and not isinstance(total, bool):
                if page * size >= total:
                    break
            elif len(content) < size:
                break
            page += 1
        return list(notes.values()) + unidentified

    def get_person_alerts(self, noms_number: str) -> list[dict[str, Any]]:
        """All pages of ``GET /prisoners/{NOMS}/alerts`` (active and inactive), until the page says ``last``."""
        url = f"{self.alerts_url}/prisoners/{_segment(noms_number.upper())}/alerts"
        alerts: dict[str, dict[str, Any]] = {}
        unidentified: list[dict[str, Any]] = []
        page = 0
        while page < MAX_PAGES:
            params = {"page": page, "size": self.alerts_page_size}
            data = self._expect_ok(ALERTS, self._call(ALERTS, "GET", url, params=params))
            content = data.get("content")
            if not isinstance(content, list):
                raise UpstreamError(f"{ALERTS} answer has no content list")
            for alert in content:
                alert_id = alert.get("alertUuid") if isinstance(alert, dict) else None
                if isinstance(alert_id, str):
                    alerts[alert_id] = alert
                else:
                    unidentified.append(alert)
            if data.get("last", True) is not False or not content:
                break
            page += 1
        return list(alerts.values()) + unidentified

    # --- metrics ----------------------------------------------------------------------------------------------
    @property
    def http_calls(self) -> int:
        """HTTP calls made to the two APIs (adapter retries count once; token fetches not included)."""
        with self._stats_lock:
            return sum(self._http_calls.values())

    def stats(self) -> dict[str, int]:
        """HTTP calls per API and successful token fetches, for run metadata."""
        with self._stats_lock:
            calls = dict(self._http_calls)
        return {"case_notes_calls": calls[CASE_NOTES], "alerts_calls": calls[ALERTS],
                "token_fetches": self.tokens.fetches}

    def close(self) -> None:
        if self._owns_session:
            self._session.close()
        self.tokens.close()

    def __enter__(self) -> "HmppsSourceApi":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------------------------
    def _check_allowed(self, detail_url: str) -> None:
        try:
            origin = origin_of(detail_url)
        except NotAnOrigin as exc:
            raise DetailUrlNotAllowed(f"detailUrl is not an acceptable URL: {exc}") from None
        if origin not in self.allowlist:
            raise DetailUrlNotAllowed(f"detailUrl host not on the allow-list: {origin}")

    def _get_detail(self, api: str, url: str) -> dict[str, Any] | None:
        response = self._call(api, "GET", url)
        if response.status_code == 404:
            return None
        return self._expect_ok(api, response)

    def _call(self, api: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request with a bearer token; on 401, drop the token and try once more with a fresh one."""
        for attempt in (1, 2):
            token = self.tokens.get_token()
            with self._stats_lock:
                self._http_calls[api] += 1
            try:
                response = self._session.request(
                    method, url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    timeout=self.timeout, allow_redirects=False, **kwargs,
                )
            except requests.Timeout:
                raise UpstreamError(f"timeout calling {api}") from None
            except requests.ConnectionError as exc:
                reason = f"timeout calling {api}" if _is_timeout(exc) else f"cannot connect to {api}"
                raise UpstreamError(reason) from None
            except requests.RequestException as exc:
                raise UpstreamError(f"request to {api} failed: {type(exc).__name__}") from None
            if response.status_code == 401:
                response.close()
                self.tokens.invalidate(token)
                if attempt == 1:
                    continue
                raise UpstreamError(f"{api} rejected a fresh token (HTTP 401)", 401)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _expect_ok(api: str, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
        if status == 403:
            raise UpstreamError(f"{api} refused access (HTTP 403): the client lacks the role", 403)
        if 300 <= status < 400:
            raise UpstreamError(f"{api} answered with a redirect (HTTP {status}), not followed", status)
        if status != 200:
            raise UpstreamError(f"{api} answered HTTP {status}", status)
        try:
            data = response.json()
        except (ValueError, json.JSONDecodeError):
            raise UpstreamError(f"{api} answered with invalid JSON") from None
        if not isinstance(data, dict):
            raise UpstreamError(f"{api} answered with JSON that is not an object")
        return data


def _segment(value: str) -> str:
    return quote(value, safe="")
