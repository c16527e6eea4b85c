"""One retrying ``requests.Session`` for the upstream APIs, default timeouts, and URL-origin helpers.

Retries (urllib3 ``Retry``): connection errors, read errors and HTTP 500/502/503/504, for GET and POST (the only
POST is the read-only case-note search), exponential back-off, ``Retry-After`` respected (capped), and the last
response handed back instead of an exception (``raise_on_status=False``) so callers can report its status.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import LocationParseError
from urllib3.util import Retry, parse_url

# (connect, read) seconds; the clients pass these on every call.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10)
RETRY_STATUSES: frozenset[int] = frozenset({500, 502, 503, 504})
RETRY_METHODS: frozenset[str] = frozenset({"GET", "POST"})
DEFAULT_RETRY_AFTER_MAX = 10  # seconds: a Retry-After longer than this is cut down to it

_DEFAULT_PORTS = {"http": 80, "https": 443}


def build_retry(
    total_retries: int = 3, backoff_factor: float = 0.1, retry_after_max: int = DEFAULT_RETRY_AFTER_MAX
) -> Retry:
    """The retry policy: ``total_retries`` retries after the first attempt, for the failures that are worth it."""
    return Retry(
        total=total_retries,
        connect=total_retries,
        read=total_retries,
        status=total_retries,
        other=0,
        redirect=0,
        allowed_methods=RETRY_METHODS,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor,
        raise_on_status=False,
        raise_on_redirect=False,
        respect_retry_after_header=True,
        retry_after_max=retry_after_max,
    )


def mount_retrying_adapter(
    session: requests.Session,
    total_retries: int = 3,
    backoff_factor: float = 0.1,
    pool_size: int = 16,
    retry_after_max: int = DEFAULT_RETRY_AFTER_MAX,
) -> requests.Session:
    """Mount the retrying, pooled adapter on ``session`` for http:// and https://; returns the session."""
    adapter = HTTPAdapter(
        max_retries=build_retry(total_retries, backoff_factor, retry_after_max),
        pool_connections=pool_size,
        pool_maxsize=pool_size,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def build_session(total_retries: int = 3, backoff_factor: float = 0.1, pool_size: int = 16) -> requests.Session:
    """A ``requests.Session`` with the retrying adapter. Timeouts are not a session setting: pass them per call."""
    session = requests.Session()
    session.headers["Accept"] = "application/json"
    return mount_retrying_adapter(session, total_retries, backoff_factor, pool_size)


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
