"""OAuth2 client-credentials tokens from HMPPS Auth, cached and shared between threads.

The token request is a plain ``POST {HMPPS_AUTH_URL}/oauth/token`` with the form body ``grant_type=client_credentials``
and the client id and secret as HTTP Basic credentials. It follows no redirect: any answer but a 200 from that URL is
an error, so a token can only ever come from ``HMPPS_AUTH_URL`` (docs/decisions.md, "Upstream clients"). It runs
under the caller's deadline (``clients.http.send``): a hanging Auth costs a fetch its deadline, not more.

``TokenProvider.get_token()`` returns a cached access token until ``skew_seconds`` (60 by default) before it
expires; one lock makes concurrent callers wait for a single fetch instead of stampeding the token endpoint (each
waits no longer than its own deadline), and callers that waited while that fetch failed get its error instead of
starting another. ``invalidate(token)`` drops the cache only if it still holds that token (so a 401 seen by many
threads costs one refresh).

Failures raise ``UpstreamError`` (retryable) with a readable reason that never holds the secret, a token or a body.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import requests

from ..core.ports import UpstreamError
from .http import (
    DEFAULT_BREAKER_COOLDOWN,
    DEFAULT_DEADLINE,
    DEFAULT_TIMEOUT,
    Deadline,
    HangBreaker,
    NotAnOrigin,
    RetryPolicy,
    TransportError,
    build_session,
    origin_of,
    send,
)

DEFAULT_SKEW_SECONDS = 60.0
DEFAULT_EXPIRES_IN = 300  # used when the token response has no expires_in
# Token fetches in a row that ran out of time before Auth is not called for a while: one fetch serves every waiting
# worker, so each counts for a whole wave of fetches.
DEFAULT_AUTH_BREAKER_THRESHOLD = 3
AUTH = "HMPPS Auth"


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
        deadline: float = DEFAULT_DEADLINE,
        skew_seconds: float = DEFAULT_SKEW_SECONDS,
        breaker_threshold: int = DEFAULT_AUTH_BREAKER_THRESHOLD,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        clock: Any = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        if not auth_url:
            raise ValueError("auth_url is required (HMPPS_AUTH_URL, including /auth)")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        self.token_url = f"{auth_url.rstrip('/')}/oauth/token"
        try:
            origin_of(self.token_url)
        except NotAnOrigin as exc:
            raise ValueError(f"HMPPS_AUTH_URL is not an http(s) URL: {exc}") from None
        self.client_id = client_id
        self._auth = requests.auth.HTTPBasicAuth(client_id, client_secret)
        self._timeout = timeout
        self._policy = RetryPolicy(total_retries, backoff_factor)
        self._deadline = float(deadline)
        self._skew = float(skew_seconds)
        self._clock = clock
        self._owns_session = session is None
        self._session = session if session is not None else build_session(pool_size=2)
        self.breaker = HangBreaker(AUTH, breaker_threshold, breaker_cooldown, clock)

        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None
        self._completed = 0  # fetches finished so far, failed or not (a generation counter for the stampede guard)
        self._last_error: UpstreamError | None = None
        self.fetches = 0  # successful fetches, for metrics and tests

    def __repr__(self) -> str:  # never the secret or the token
        return f"TokenProvider(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def get_token(self, deadline: Deadline | None = None) -> str:
        """A valid access token, fetched only when none is cached or the cached one is about to expire.

        ``deadline`` is the caller's (one fetch's) deadline; without one, the provider's own applies.
        """
        cached = self._cached  # one (token, refresh_at) tuple: read atomically without the lock
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        self.breaker.check()
        deadline = deadline or Deadline(self._deadline)
        completed_seen = self._completed
        if not self._lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise UpstreamError(f"timeout waiting for a token from {AUTH}")
        try:
            cached = self._cached
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            if self._completed != completed_seen and self._last_error is not None:
                # A fetch finished while we waited for the lock, and failed: share its answer, do not hammer Auth.
                raise UpstreamError(self._last_error.reason, self._last_error.status)
            try:
                token, lifetime = self._fetch(deadline)
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
        finally:
            self._lock.release()

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token, only if it is still ``token`` (when given): another thread may have renewed it."""
        with self._lock:
            if self._cached is not None and (token is None or self._cached[0] == token):
                self._cached = None

    def _fetch(self, deadline: Deadline) -> tuple[str, float]:
        try:
            answer = send(
                self._session,
                "POST",
                self.token_url,
                deadline=deadline,
                timeout=self._timeout,
                policy=self._policy,
                data={"grant_type": "client_credentials"},
                auth=self._auth,
                headers={"Accept": "application/json"},
            )
        except TransportError as exc:
            if exc.timeout:
                self.breaker.timed_out()
            reason = {
                "timeout": f"timeout calling {AUTH} for a token",
                "connect": f"cannot connect to {AUTH} for a token",
            }.get(exc.kind, f"{AUTH} token request failed: {exc.detail or exc.kind}")
            raise UpstreamError(reason) from None
        self.breaker.answered()
        if 300 <= answer.status < 400:
            raise UpstreamError(
                f"{AUTH} token request was redirected (HTTP {answer.status}): not followed", answer.status
            )
        if answer.status != 200:
            raise UpstreamError(f"{AUTH} token request failed: HTTP {answer.status}", answer.status)
        try:
            data = json.loads(answer.body)
        except (ValueError, RecursionError):
            data = None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamError(f"{AUTH} token response was not valid JSON or lacked an access_token")
        token_type = data.get("token_type")
        if token_type is not None and (not isinstance(token_type, str) or token_type.lower() != "bearer"):
            raise UpstreamError(f"{AUTH} token response is not a bearer token")
        try:
            lifetime = float(data.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError, OverflowError):
            lifetime = float(DEFAULT_EXPIRES_IN)
        if lifetime != lifetime:  # NaN
            lifetime = float(DEFAULT_EXPIRES_IN)
        return token, min(max(lifetime, 0.0), 86_400.0)

    def close(self) -> None:
        if self._owns_session:
            self._session.close()
