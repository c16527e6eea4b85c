"""HTTP plumbing for the upstream clients: one pooled ``requests.Session``, requests under a total deadline with
retries, and URL-origin helpers for the allow-list.

``send()`` makes one logical request: every attempt, the pauses between them and the reading of the body share one
``Deadline``. Each attempt's connect and read timeouts are cut to the time left, and the socket timeout is cut again
before every chunk of the body, so a server that never answers, or answers a trickle at a time, costs at most the
deadline (a server that dribbles its status line or headers can add at most one read timeout per header read).
Retries: connection failures, timeouts and HTTP 500/502/503/504, for GET and POST (the only POST is the read-only
case-note search), with exponential back-off and ``Retry-After`` honoured up to a cap, but never a pause the deadline
cannot afford: then the last answer is handed back so the caller can report its status. Redirects are never followed.

Nothing here logs, and no exception raised here holds a URL's query, a header, a token or a body.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import LocationParseError
from urllib3.util import Retry, parse_url

from ..core.ports import UpstreamError

# (connect, read) seconds for one attempt; the deadline cuts them down as it nears.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10)
# Total seconds for one fetch: token, connects, reads, retries and back-off (docs/decisions.md, "Upstream clients").
DEFAULT_DEADLINE: float = 15.0
RETRY_STATUSES: frozenset[int] = frozenset({500, 502, 503, 504})
RETRY_METHODS: frozenset[str] = frozenset({"GET", "POST"})
DEFAULT_RETRY_AFTER_MAX = 10  # seconds: a Retry-After longer than this is cut down to it
DEFAULT_BREAKER_COOLDOWN = 30.0  # seconds a hung upstream is not called once its breaker opens
BODY_CHUNK = 64 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Deadline:
    """A point in time a fetch must finish by (monotonic clock)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError("a deadline must be positive")
        self.seconds = float(seconds)
        self._clock = clock
        self.expires_at = clock() + self.seconds

    def remaining(self) -> float:
        return self.expires_at - self._clock()


class HangBreaker:
    """Counts fetches of one upstream that ran out of time in a row; at ``threshold``, calls fail fast
    (``UpstreamError``, retryable) for ``cooldown`` seconds instead of each waiting out its deadline. Any HTTP answer
    closes it again. ``threshold`` 0 turns it off. Thread-safe."""

    def __init__(
        self,
        name: str,
        threshold: int,
        cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 0 or cooldown < 0:
            raise ValueError("breaker settings must not be negative")
        self.name = name
        self.threshold = threshold
        self.cooldown = float(cooldown)
        self._clock = clock
        self._lock = threading.Lock()
        self._timeouts_in_a_row = 0
        self._open_until = 0.0

    def check(self) -> None:
        if self.threshold <= 0:
            return
        with self._lock:
            if self._clock() < self._open_until:
                raise UpstreamError(
                    f"{self.name} not called: its last {self._timeouts_in_a_row} fetches timed out "
                    f"(paused for {self.cooldown:g} s)"
                )

    def answered(self) -> None:
        with self._lock:
            self._timeouts_in_a_row = 0
            self._open_until = 0.0

    def timed_out(self) -> None:
        with self._lock:
            self._timeouts_in_a_row += 1
            if self.threshold > 0 and self._timeouts_in_a_row >= self.threshold:
                self._open_until = self._clock() + self.cooldown


@dataclass(frozen=True)
class RetryPolicy:
    """``total_retries`` retries after the first attempt; pause before retry n is ``backoff_factor * 2**(n-1)``."""

    total_retries: int = 3
    backoff_factor: float = 0.1
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX

    def __post_init__(self) -> None:
        if self.total_retries < 0 or self.backoff_factor < 0 or self.retry_after_max < 0:
            raise ValueError("retry settings must not be negative")

    def pause(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based); a ``Retry-After`` in seconds wins, capped."""
        if retry_after:
            try:
                return min(max(float(retry_after.strip()), 0.0), float(self.retry_after_max))
            except ValueError:
                pass  # an HTTP-date or garbage: use the back-off
        return self.backoff_factor * (2 ** (retry - 1))


@dataclass
class Answer:
    """A complete HTTP answer: status, headers and the whole body (already read within the deadline)."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    attempts: int = 1


class TransportError(Exception):
    """No usable answer: ``kind`` is ``timeout`` (incl. the deadline), ``connect`` or ``other``.

    ``detail`` names the exception class only; the message never holds a URL, header or body.
    """

    def __init__(self, kind: str, detail: str = "", attempts: int = 1) -> None:
        super().__init__(kind if not detail else f"{kind} ({detail})")
        self.kind = kind
        self.detail = detail
        self.attempts = attempts

    @property
    def timeout(self) -> bool:
        return self.kind == "timeout"


def _split(timeout: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(timeout, tuple):
        return float(timeout[0]), float(timeout[1])
    return float(timeout), float(timeout)


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> Answer:
    """One logical request with retries, all within ``deadline``; raises ``TransportError`` when no answer came."""
    connect_timeout, read_timeout = _split(timeout)
    method = method.upper()
    retryable_method = method in RETRY_METHODS
    retries = 0
    while True:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise TransportError("timeout", "deadline", retries + 1)
        attempt_timeout = (min(connect_timeout, remaining), min(read_timeout, remaining))
        try:
            response = session.request(
                method, url, timeout=attempt_timeout, allow_redirects=False, stream=True, **kwargs
            )
            try:
                body = _read_body(response, deadline, read_timeout)
            except BaseException:
                response.close()  # a half-read connection cannot be reused
                raise
            response.raw.release_conn()  # read to the end: back to the pool, kept alive
        except (requests.RequestException, urllib3.exceptions.HTTPError, _DeadlineReached) as exc:
            # urllib3's own errors come from reading the body (requests wraps only what happens before it).
            kind = (
                "timeout"
                if isinstance(exc, _DeadlineReached) or is_timeout(exc)
                else "connect"
                if isinstance(exc, (requests.ConnectionError, urllib3.exceptions.ProtocolError))
                else "other"
            )
            detail = "deadline" if isinstance(exc, _DeadlineReached) else type(exc).__name__
            if kind != "other" and retryable_method and retries < policy.total_retries:
                pause = policy.pause(retries + 1)
                if pause < deadline.remaining():
                    sleep(pause)
                    retries += 1
                    continue
            raise TransportError(kind, detail, retries + 1) from None
        answer = Answer(response.status_code, response.headers, body, retries + 1)
        if answer.status in RETRY_STATUSES and retryable_method and retries < policy.total_retries:
            pause = policy.pause(retries + 1, answer.headers.get("Retry-After"))
            if pause < deadline.remaining():
                sleep(pause)
                retries += 1
                continue
        return answer


class _DeadlineReached(Exception):
    pass


def _read_body(response: requests.Response, deadline: Deadline, read_timeout: float) -> bytes:
    """The whole body, each socket wait cut to the time left; ``_DeadlineReached`` if the deadline passes.

    ``read1`` returns as soon as any bytes arrive, so the deadline is checked however slowly they come (a plain
    ``read`` of a 64 KiB chunk would wait for all of it)."""
    raw = response.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)

    def cut_socket_timeout() -> None:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise _DeadlineReached()
        if sock is not None:
            try:
                sock.settimeout(min(read_timeout, remaining))
            except OSError:
                pass  # the connection is already closed: the next read says so

    chunks: list[bytes] = []
    while True:
        cut_socket_timeout()
        chunk = raw.read1(BODY_CHUNK, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def is_timeout(exc: BaseException) -> bool:
    """True if a requests error is, or wraps, a timeout (urllib3 and requests nest them in several ways).

    urllib3's NewConnectionError (connection refused) subclasses ConnectTimeoutError: it is not a timeout here.
    """
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewConnectionError):
            return False
        if isinstance(current, (ReadTimeoutError, ConnectTimeoutError, requests.Timeout, TimeoutError)):
            return True
        stack.extend(
            [
                getattr(current, "reason", None),
                current.__cause__,
                current.__context__,
                *[a for a in getattr(current, "args", ()) if isinstance(a, BaseException)],
            ]
        )
    return False


def build_session(pool_size: int = 16) -> requests.Session:
    """A pooled ``requests.Session`` without urllib3 retries or redirects (``send`` retries, within a deadline).

    Timeouts are not a session setting: ``send`` passes them per attempt.
    """
    session = requests.Session()
    session.headers["Accept"] = "application/json"
    adapter = HTTPAdapter(
        max_retries=Retry(
            total=0,
            connect=0,
            read=False,
            redirect=False,
            status=0,
            other=0,
            raise_on_redirect=False,
            raise_on_status=False,
        ),
        pool_connections=pool_size,
        pool_maxsize=pool_size,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class NotAnOrigin(ValueError):
    """The text is not an absolute http(s) URL with a host (message holds no part of the input)."""


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL, lower-cased, default ports (80/443) dropped.

    Refuses what could make this check and the HTTP library disagree about the host: user info, backslashes,
    whitespace or control characters, and non-http(s) schemes.
    """
    if not isinstance(url, str) or not url:
        raise NotAnOrigin("not a URL")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise NotAnOrigin("URL holds whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise NotAnOrigin("URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise NotAnOrigin("URL scheme is not http or https")
    if "@" in parts.netloc:
        raise NotAnOrigin("URL holds user info")
    host = (parts.hostname or "").lower()
    if not host:
        raise NotAnOrigin("URL has no host")
    # Defence in depth: the parser requests/urllib3 will connect with must agree on the host and port.
    try:
        seen_by_urllib3 = parse_url(url)
    except LocationParseError:
        raise NotAnOrigin("URL cannot be parsed") from None
    if (seen_by_urllib3.host or "").strip("[]").lower() != host or seen_by_urllib3.port != port:
        raise NotAnOrigin("URL is ambiguous")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_allowlist(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Normalised origins from a comma-separated string (``DETAIL_URL_ALLOWLIST``) or a list; blanks ignored."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    origins: list[str] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            origin = origin_of(item)
        except NotAnOrigin as exc:
            raise ValueError(f"allow-list entry {item!r} is not an http(s) origin: {exc}") from None
        if origin not in origins:
            origins.append(origin)
    return origins
