"""OAuth2 client-credentials tokens from HMPPS Auth (upstream-apis.md §6), cached and shared between threads.

``TokenProvider.get_token()`` returns a cached access token until ``skew_seconds`` (60 by default) before it
expires; one lock makes concurrent callers wait for a single fetch instead of stampeding the token endpoint, and
callers that waited while that fetch failed get its error instead of starting another. ``invalidate(token)`` drops
the cache only if it still holds that token (so a 401 seen by many threads costs one refresh).

Failures raise ``UpstreamError`` (retryable) with a readable reason that never holds the secret or a token.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import requests
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests_oauthlib import OAuth2Session

from ..core.ports import UpstreamError
from .http import DEFAULT_TIMEOUT, mount_retrying_adapter

DEFAULT_SKEW_SECONDS = 60.0
DEFAULT_EXPIRES_IN = 300  # used when the token response has no expires_in


class _DropDebug(logging.Filter):
    """requests-oauthlib logs request headers (Basic credentials) and token responses at DEBUG: never let them out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_oauth_logger = logging.getLogger("requests_oauthlib.oauth2_session")
if not any(isinstance(f, _DropDebug) for f in _oauth_logger.filters):
    _oauth_logger.addFilter(_DropDebug())


class _TokenEndpointStatus(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _check_status(response: requests.Response) -> requests.Response:
    # Compliance hook: oauthlib would otherwise try to read an error page as a token.
    if response.status_code != 200:
        raise _TokenEndpointStatus(response.status_code)
    return response


class TokenProvider:
    """Client-credentials access tokens for one client of HMPPS Auth. Thread-safe."""

    def __init__(
        self,
        auth_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        total_retries: int = 3,
        backoff_factor: float = 0.1,
        skew_seconds: float = DEFAULT_SKEW_SECONDS,
        clock: Any = time.monotonic,
    ) -> None:
        if not auth_url:
            raise ValueError("auth_url is required (HMPPS_AUTH_URL, including /auth)")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        self.token_url = f"{auth_url.rstrip('/')}/oauth/token"
        self.client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._skew = float(skew_seconds)
        self._clock = clock
        if self.token_url.lower().startswith("http://"):
            # oauthlib refuses plain HTTP unless told otherwise; the local stand-ins and the in-cluster
            # Auth URL the reference uses (http://hmpps-auth.<ns>.svc.cluster.local/auth) are plain HTTP.
            os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
        self._oauth = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
        mount_retrying_adapter(self._oauth, total_retries, backoff_factor, pool_size=2)
        self._oauth.register_compliance_hook("access_token_response", _check_status)

        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None
        self._completed = 0  # fetches finished so far, failed or not (a generation counter for the stampede guard)
        self._last_error: UpstreamError | None = None
        self.fetches = 0  # successful fetches, for metrics and tests

    def __repr__(self) -> str:  # never the secret or the token
        return f"TokenProvider(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def get_token(self) -> str:
        """A valid access token, fetched only when none is cached or the cached one is about to expire."""
        cached = self._cached  # one (token, refresh_at) tuple: read atomically without the lock
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        completed_seen = self._completed
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            if self._completed != completed_seen and self._last_error is not None:
                # A fetch finished while we waited for the lock, and failed: share its answer, do not hammer Auth.
                raise UpstreamError(self._last_error.reason, self._last_error.status)
            try:
                token, lifetime = self._fetch()
            except UpstreamError as exc:
                self._last_error = exc
                raise
            finally:
                self._completed += 1
            self._last_error = None
            # Refresh skew seconds before expiry, but never sooner than half-way through a short-lived token.
            self._cached = (token, self._clock() + lifetime - min(self._skew, lifetime / 2))
            self.fetches += 1
            return token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token, only if it is still ``token`` (when given): another thread may have renewed it."""
        with self._lock:
            if self._cached is not None and (token is None or self._cached[0] == token):
                self._cached = None

    def _fetch(self) -> tuple[str, float]:
        try:
            response = self._oauth.fetch_token(
                token_url=self.token_url,
                auth=requests.auth.HTTPBasicAuth(self.client_id, self._client_secret),
                include_client_id=False,
                timeout=self._timeout,
            )
        except _TokenEndpointStatus as exc:
            raise UpstreamError(f"HMPPS Auth token request failed: HTTP {exc.status}", exc.status) from None
        except requests.Timeout:
            raise UpstreamError("timeout calling HMPPS Auth for a token") from None
        except requests.ConnectionError as exc:
            reason = "timeout calling HMPPS Auth for a token" if _is_timeout(exc) else \
                "cannot connect to HMPPS Auth for a token"
            raise UpstreamError(reason) from None
        except requests.RequestException as exc:
            raise UpstreamError(f"HMPPS Auth token request failed: {type(exc).__name__}") from None
        except OAuth2Error as exc:
            raise UpstreamError(f"HMPPS Auth token response was not usable: {exc.error}") from None
        except Warning:  # oauthlib's "scope has changed"
            raise UpstreamError("HMPPS Auth token response changed the scope") from None
        except (ValueError, KeyError, TypeError):
            raise UpstreamError("HMPPS Auth token response was not valid JSON or lacked a token") from None
        token = response.get("access_token") if isinstance(response, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamError("HMPPS Auth token response lacked an access_token")
        try:
            lifetime = float(response.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError):
            lifetime = float(DEFAULT_EXPIRES_IN)
        return token, max(lifetime, 0.0)

    def close(self) -> None:
        self._oauth.close()


def _is_timeout(exc: BaseException) -> bool:
    """True if a requests ConnectionError wraps a timeout (urllib3 raises MaxRetryError once retries run out).

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
        stack.extend([getattr(current, "reason", None), current.__cause__, current.__context__,
                      *[a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]])
    return False
