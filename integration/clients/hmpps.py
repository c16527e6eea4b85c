"""``HmppsSourceApi``: the Offender Case Notes API and the Prison Alerts API over HTTP, with HMPPS Auth tokens.

- Detail URLs from events are checked against the allow-list of ``scheme://host[:port]`` origins *before* any
  request, so a forged or misrouted event never receives the bearer token.
- Every fetch has a total deadline (``deadline``, 15 s by default): the token, every attempt, the back-off and the
  body all fit in it (``clients.http.send``). What is left of a failure becomes ``UpstreamError`` (retryable).
- An API whose fetches keep running out of time is not called for a while (``breaker_threshold`` fetches in a row,
  then ``breaker_cooldown`` seconds): the rest of a batch fails fast and retryably instead of each waiting its
  deadline, so a hung API cannot hold a run past its lease or ``dagster/max_runtime``.
- A person's case notes and alerts are read in one page each (the APIs allow any page size and sort on keys that
  can tie, so paging could skip records) and the distinct ids are checked against ``totalElements``; a short read is
  re-read, and if it stays short the call fails rather than return a partial list (docs/decisions.md).
- 404 on a detail URL means the record was deleted: ``None``. 401 drops the cached token and retries once.
- Redirects are never followed (a redirect could lead the token off the allow-list).
- Reasons in errors name the API, the status and the origin, never a body, note text, token or secret.

Thread-safe: one instance serves the pipeline's thread pool.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
import requests.auth

from ..core.ports import DetailUrlNotAllowed, SourceApi, UnreadableAnswer, UpstreamError
from .auth import DEFAULT_AUTH_BREAKER_THRESHOLD, DEFAULT_SKEW_SECONDS, TokenProvider
from .http import (
    DEFAULT_BREAKER_COOLDOWN,
    DEFAULT_DEADLINE,
    DEFAULT_TIMEOUT,
    Answer,
    Deadline,
    HangBreaker,
    NotAnOrigin,
    RetryPolicy,
    TransportError,
    build_session,
    origin_of,
    parse_allowlist,
    send,
)

CASE_NOTES = "case notes API"
ALERTS = "alerts API"
ONE_PAGE = 2147483647  # Java's Integer.MAX_VALUE: neither API caps the page size (docs/decisions.md)
SEARCH_SORT = "occurredAt,desc"
PERSON_READS = 3  # reads of a person's records before a short read is an error
SEARCH_DEADLINE_FACTOR = 4  # a person's whole record may take this many detail-fetch deadlines
DEFAULT_BREAKER_THRESHOLD = 8  # detail fetches of one API in a row that ran out of time
MAX_PAGES = 100_000  # a guard against a server that never says it is done


class HmppsSourceApi(SourceApi):
    """The real ``SourceApi``: case notes and alerts over HTTP with OAuth2 client credentials.

    ``deadline`` bounds one detail fetch, ``search_deadline`` (4 × ``deadline`` unless given) each read of a person's
    records; ``timeout`` is one attempt's (connect, read), cut down by the deadline. ``clock`` is the monotonic clock
    of the token cache and the hang breakers (tests pass a fake one; deadlines always use the real clock).
    """

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
        deadline: float = DEFAULT_DEADLINE,
        search_deadline: float | None = None,
        total_retries: int = 3,
        backoff_factor: float = 0.1,
        pool_size: int = 16,
        page_size: int = ONE_PAGE,
        alerts_page_size: int = ONE_PAGE,
        person_reads: int = PERSON_READS,
        breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        token_skew_seconds: float = DEFAULT_SKEW_SECONDS,
        session: requests.Session | None = None,
        token_provider: TokenProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not case_notes_url or not alerts_url:
            raise ValueError("case_notes_url and alerts_url are required")
        if page_size < 1 or alerts_page_size < 1 or person_reads < 1:
            raise ValueError("page sizes and person_reads must be at least 1")
        if deadline <= 0 or (search_deadline is not None and search_deadline <= 0):
            raise ValueError("deadlines must be positive")
        self.case_notes_url = case_notes_url.rstrip("/")
        self.alerts_url = alerts_url.rstrip("/")
        origins = parse_allowlist(allowlist)
        if not origins:
            origins = parse_allowlist([self.case_notes_url, self.alerts_url])
        self.allowlist: frozenset[str] = frozenset(origins)
        self.timeout = timeout
        self.deadline = float(deadline)
        self.search_deadline = float(search_deadline) if search_deadline else self.deadline * SEARCH_DEADLINE_FACTOR
        self.page_size = page_size
        self.alerts_page_size = alerts_page_size
        self.person_reads = person_reads
        self.retry = RetryPolicy(total_retries, backoff_factor)
        self._owns_session = session is None
        self._session = session if session is not None else build_session(pool_size)
        self.tokens = token_provider or TokenProvider(
            auth_url,
            client_id,
            client_secret,
            timeout=timeout,
            total_retries=total_retries,
            backoff_factor=backoff_factor,
            deadline=deadline,
            skew_seconds=token_skew_seconds,
            breaker_threshold=min(breaker_threshold, DEFAULT_AUTH_BREAKER_THRESHOLD),
            breaker_cooldown=breaker_cooldown,
            clock=clock,
        )
        self._breakers = {
            api: HangBreaker(api, breaker_threshold, breaker_cooldown, clock) for api in (CASE_NOTES, ALERTS)
        }
        self._stats_lock = threading.Lock()
        self._http_calls: dict[str, int] = {CASE_NOTES: 0, ALERTS: 0}
        self._rereads = 0

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
        """Every matching case note of the person (sensitive included), oldest first.

        ``POST /search/case-notes/{NOMS}`` asked for one page of ``page_size`` (2³¹−1 by default, as the reference
        does); the distinct notes read must number ``totalElements``, else it is read again (``person_reads``
        times in all) and then fails with a retryable ``UpstreamError``."""
        url = f"{self.case_notes_url}/search/case-notes/{_segment(noms_number.upper())}"

        def read() -> tuple[list[dict[str, Any]], int | None]:
            return self._read_pages(
                CASE_NOTES,
                "POST",
                url,
                "caseNoteId",
                self.page_size,
                first_page=1,
                request=lambda page: {
                    "json": {
                        "typeSubTypes": type_subtypes,
                        "includeSensitive": True,
                        "page": page,
                        "size": self.page_size,
                        "sort": SEARCH_SORT,
                    }
                },
                total_of=_search_total,
            )

        notes = self._read_person(CASE_NOTES, "case notes", read)
        return sorted(notes, key=_note_order)

    def get_person_alerts(self, noms_number: str) -> list[dict[str, Any]]:
        """Every alert of the person, active and inactive: ``GET /prisoners/{NOMS}/alerts`` in one page (no
        ``isActive``), with the same completeness check as the case-note search."""
        url = f"{self.alerts_url}/prisoners/{_segment(noms_number.upper())}/alerts"

        def read() -> tuple[list[dict[str, Any]], int | None]:
            return self._read_pages(
                ALERTS,
                "GET",
                url,
                "alertUuid",
                self.alerts_page_size,
                first_page=0,
                request=lambda page: {"params": {"page": page, "size": self.alerts_page_size}},
                total_of=_spring_page_total,
            )

        return self._read_person(ALERTS, "alerts", read)

    # --- metrics ----------------------------------------------------------------------------------------------
    @property
    def http_calls(self) -> int:
        """Logical calls made to the two APIs (retries count once; token fetches not included)."""
        with self._stats_lock:
            return sum(self._http_calls.values())

    def stats(self) -> dict[str, int]:
        """HTTP calls per API and successful token fetches, for run metadata."""
        with self._stats_lock:
            calls = dict(self._http_calls)
        return {
            "case_notes_calls": calls[CASE_NOTES],
            "alerts_calls": calls[ALERTS],
            "token_fetches": self.tokens.fetches,
        }

    @property
    def rereads(self) -> int:
        """Person reads that came back short and were read again."""
        with self._stats_lock:
            return self._rereads

    def close(self) -> None:
        if self._owns_session:
            self._session.close()
        self.tokens.close()

    def __enter__(self) -> HmppsSourceApi:
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
        answer = self._call(api, "GET", url, self.deadline)
        if answer.status == 404:
            return None
        return self._expect_ok(api, answer)

    def _read_person(
        self, api: str, what: str, read: Callable[[], tuple[list[dict[str, Any]], int | None]]
    ) -> list[dict[str, Any]]:
        """``read()`` until what it returns is as many distinct records as the API says it holds."""
        for attempt in range(1, self.person_reads + 1):
            records, total = read()
            if total is None or len(records) == total:
                return records
            if attempt < self.person_reads:
                with self._stats_lock:
                    self._rereads += 1
        raise UpstreamError(
            f"{api} returned {len(records)} distinct {what} of {total} "
            f"in {self.person_reads} reads: not all could be read"
        )

    def _read_pages(
        self,
        api: str,
        method: str,
        url: str,
        id_field: str,
        size: int,
        *,
        first_page: int,
        request: Callable[[int], dict[str, Any]],
        total_of: Callable[[dict[str, Any]], int | None],
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Pages from ``first_page`` until ``totalElements`` (or a short page); distinct records by ``id_field``
        (records without a string id are kept, each counted once) and the last ``totalElements`` seen."""
        records: dict[str, dict[str, Any]] = {}
        unidentified: list[dict[str, Any]] = []
        total: int | None = None
        for page in range(first_page, first_page + MAX_PAGES):
            data = self._expect_ok(api, self._call(api, method, url, self.search_deadline, **request(page)))
            content = data.get("content")
            if not isinstance(content, list):
                raise UpstreamError(f"{api} answer has no content list")
            for record in content:
                record_id = record.get(id_field) if isinstance(record, dict) else None
                if isinstance(record_id, str):
                    records[record_id] = record
                else:
                    unidentified.append(record)
            total = total_of(data)
            pages_read = page - first_page + 1
            if not content or len(content) < size or (total is not None and pages_read * size >= total):
                break
        return list(records.values()) + unidentified, total

    def _call(self, api: str, method: str, url: str, seconds: float, **kwargs: Any) -> Answer:
        """One logical request within ``seconds`` (token included); on 401, drop the token and try once more."""
        breaker = self._breakers[api]
        breaker.check()
        deadline = Deadline(seconds)
        for attempt in (1, 2):
            token = self.tokens.get_token(deadline)
            with self._stats_lock:
                self._http_calls[api] += 1
            try:
                # The token as the request's auth, not a header: requests then neither reads ~/.netrc for every
                # request (a measurable share of a fetch's CPU, docs/performance.md) nor lets an entry there
                # replace the bearer token with Basic credentials.
                answer = send(
                    self._session,
                    method,
                    url,
                    deadline=deadline,
                    timeout=self.timeout,
                    policy=self.retry,
                    headers={"Accept": "application/json"},
                    auth=_Bearer(token),
                    **kwargs,
                )
            except TransportError as exc:
                if exc.timeout:
                    breaker.timed_out()
                    raise UpstreamError(f"timeout calling {api}") from None
                if exc.kind == "connect":
                    raise UpstreamError(f"cannot connect to {api}") from None
                raise UpstreamError(f"request to {api} failed: {exc.detail or exc.kind}") from None
            breaker.answered()
            if answer.status == 401:
                self.tokens.invalidate(token)
                if attempt == 1:
                    continue
                raise UpstreamError(f"{api} rejected a fresh token (HTTP 401)", 401)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _expect_ok(api: str, answer: Answer) -> dict[str, Any]:
        status = answer.status
        if status == 403:
            raise UpstreamError(f"{api} refused access (HTTP 403): the client lacks the role", 403)
        if 300 <= status < 400:
            raise UpstreamError(f"{api} answered with a redirect (HTTP {status}), not followed", status)
        if status != 200:
            raise UpstreamError(f"{api} answered HTTP {status}", status)
        try:
            data = json.loads(answer.body)
        except json.JSONDecodeError:
            raise UpstreamError(f"{api} answered with invalid JSON") from None
        except (ValueError, RecursionError) as exc:  # too deep, or a number of over 4,300 digits
            raise UnreadableAnswer(
                f"{api} answered with JSON too deeply nested or with a number too long to read ({type(exc).__name__})"
            ) from None
        if not isinstance(data, dict):
            raise UpstreamError(f"{api} answered with JSON that is not an object")
        return data


def parse_deadline(value: str | float) -> float:
    """A deadline in seconds from configuration: a positive number."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError("HMPPS_API_DEADLINE_SECONDS must be a number of seconds") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("HMPPS_API_DEADLINE_SECONDS must be a positive number of seconds")
    return seconds


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _search_total(data: dict[str, Any]) -> int | None:
    metadata = data.get("metadata")
    return _int_or_none(metadata.get("totalElements")) if isinstance(metadata, dict) else None


def _spring_page_total(data: dict[str, Any]) -> int | None:
    return _int_or_none(data.get("totalElements"))


def _note_order(note: Any) -> tuple[str, str, str]:
    if not isinstance(note, dict):
        return ("", "", "")
    return (
        str(note.get("occurrenceDateTime") or ""),
        str(note.get("creationDateTime") or ""),
        str(note.get("caseNoteId") or ""),
    )


def _segment(value: str) -> str:
    return quote(value, safe="")


class _Bearer(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on one request."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request
