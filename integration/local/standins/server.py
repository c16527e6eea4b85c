"""``StandIns``: the three stand-in services on their own 127.0.0.1 ports, served from daemon threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .apps import Backend, create_alerts_app, create_auth_app, create_case_notes_app
from .faults import Fault, FaultRegistry
from .store import SourceStore, make_alert, make_case_note
from .tokens import (
    DEFAULT_AUTHORITIES,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_EXPIRES_IN,
    AuthSettings,
    TokenIssuer,
)


class _QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's handler without the per-request access log line (errors still go to stderr)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class _Served:
    name: str
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_port


def _serve(name: str, app: Flask, host: str, port: int) -> _Served:
    server = make_server(host, port, app, threaded=True, request_handler=_QuietRequestHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"standin-{name}", daemon=True
    )
    thread.start()
    return _Served(name, server, thread)


class StandIns:
    """HMPPS Auth, the Case Notes API and the Alerts API, each on its own origin, sharing one ``SourceStore``.

    Start with ``StandIns.start(...)`` (or use as a context manager); URLs have no trailing slash and ``auth_url``
    includes ``/auth`` (as ``HMPPS_AUTH_URL`` does).
    """

    def __init__(self, backend: Backend, host: str, served: dict[str, _Served]) -> None:
        self._backend = backend
        self._served = served
        self.host = host
        self.auth_url = f"http://{host}:{served['auth'].port}/auth"
        self.case_notes_url = f"http://{host}:{served['case_notes'].port}"
        self.alerts_url = f"http://{host}:{served['alerts'].port}"
        backend.issuer.issuer = f"{self.auth_url}/issuer"
        self._stopped = False

    @classmethod
    def start(
        cls,
        host: str = "127.0.0.1",
        auth_port: int = 0,
        case_notes_port: int = 0,
        alerts_port: int = 0,
        store: SourceStore | None = None,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        expires_in: int = DEFAULT_EXPIRES_IN,
        authorities: list[str] | tuple[str, ...] = DEFAULT_AUTHORITIES,
        tie_seed: int | None = None,
    ) -> StandIns:
        """``tie_seed`` seeds the order in which equal sort keys come back (``None``: a different order each run)."""
        issuer = TokenIssuer(
            AuthSettings(
                client_id=client_id, client_secret=client_secret, expires_in=expires_in, authorities=tuple(authorities)
            )
        )
        backend = Backend(store if store is not None else SourceStore(), issuer, tie_seed)
        served: dict[str, _Served] = {}
        try:
            for name, factory, port in (
                ("auth", create_auth_app, auth_port),
                ("case_notes", create_case_notes_app, case_notes_port),
                ("alerts", create_alerts_app, alerts_port),
            ):
                served[name] = _serve(name, factory(backend), host, port)
        except BaseException:
            for s in served.values():
                s.server.shutdown()
                s.server.server_close()
            raise
        return cls(backend, host, served)

    # --- lifecycle ------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._backend.faults.release_hung()
        for served in self._served.values():
            served.server.shutdown()
        for served in self._served.values():
            served.server.server_close()
            served.thread.join(timeout=5)

    def __enter__(self) -> StandIns:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def reset(self) -> None:
        """Clear faults (letting hung requests go), request log, recorded searches, crafted answers, token count and
        the store; auth settings and the order of equal sort keys back to start."""
        self._backend.reset()

    def set_tie_seed(self, seed: int | None) -> None:
        """Seed the order in which equal sort keys come back from now on (``reset`` restarts the sequence)."""
        self._backend.set_tie_seed(seed)

    # --- data -----------------------------------------------------------------------------------------------------
    @property
    def store(self) -> SourceStore:
        return self._backend.store

    def add_case_note(self, noms_number: str = "A1234BC", **kwargs: Any) -> dict[str, Any]:
        """``make_case_note(...)`` and store it; returns the stored record."""
        return self.store.put_case_note(make_case_note(noms_number, **kwargs))

    def add_alert(self, prison_number: str = "A1234BC", **kwargs: Any) -> dict[str, Any]:
        """``make_alert(...)`` and store it; returns the stored record."""
        return self.store.put_alert(make_alert(prison_number, **kwargs))

    def case_note_url(self, note: dict[str, Any], *, legacy: bool = False) -> str:
        """The event ``detailUrl`` of a case note: ``{case_notes_url}/case-notes/{NOMS}/{uuid or legacyId}``."""
        identifier = note["legacyId"] if legacy else note["caseNoteId"]
        return f"{self.case_notes_url}/case-notes/{note['offenderIdentifier']}/{identifier}"

    def alert_url(self, alert: dict[str, Any]) -> str:
        """The event ``detailUrl`` of an alert: ``{alerts_url}/alerts/{alertUuid}``."""
        return f"{self.alerts_url}/alerts/{alert['alertUuid']}"

    def serve(self, url: str, body: str, *, status: int = 200) -> None:
        """Answer requests for ``url`` (a ``detailUrl``, or a path such as ``/prisoners/A1234BC/alerts``) with
        ``body`` verbatim, after the token check, until ``reset``: crafted answers the store cannot hold (an id that
        is not a UUID, deeply nested JSON, a 5,000-digit number, escaped NULs or surrogates)."""
        path = unquote(urlsplit(url).path) if "://" in url else url
        self._backend.set_answer(path, body, status)

    def clear_answers(self) -> None:
        self._backend.clear_answers()

    # --- faults ---------------------------------------------------------------------------------------------------
    @property
    def faults(self) -> FaultRegistry:
        return self._backend.faults

    def set_fault(
        self,
        route: str,
        *,
        status: int | None = None,
        times: int | None = None,
        latency_ms: int = 0,
        malformed: bool = False,
        probability: float | None = None,
        seed: int | None = None,
        retry_after: int | None = None,
        body: str | None = None,
        hang: bool = False,
        location: str | None = None,
    ) -> Fault:
        """Fault a route ("token", "jwks", "get_case_note", "search_case_notes", "get_alert", "person_alerts", "*").

        ``hang``: hold each matching request unanswered until the fault is cleared or the stand-ins are reset or
        stopped (a hung upstream); ``location``: a ``Location`` header, with a 3xx ``status`` a redirect."""
        return self.faults.set(
            route,
            Fault(
                status=status,
                times=times,
                latency_ms=latency_ms,
                malformed=malformed,
                probability=probability,
                seed=seed,
                retry_after=retry_after,
                body=body,
                hang=hang,
                location=location,
            ),
        )

    def clear_faults(self, route: str | None = None) -> None:
        """Remove the fault of ``route`` (or all), and answer every request a hang is holding."""
        self.faults.clear(route)

    # --- observations ---------------------------------------------------------------------------------------------
    def requests(self, route: str | None = None) -> int:
        """How many requests a route (or all routes) received since the last reset, faulted ones included."""
        return self._backend.log.count(route)

    def request_log(self, route: str | None = None) -> list[dict[str, Any]]:
        """``{route, method, path, query, status, at, durationMs}`` per request (no bodies, no headers)."""
        return self._backend.log.entries(route)

    def clear_requests(self) -> None:
        self._backend.log.clear()

    @property
    def search_requests(self) -> list[dict[str, Any]]:
        """``{person, body}`` of every case-note search received (the bodies hold only codes, dates and paging)."""
        return self._backend.search_requests()

    # --- auth -----------------------------------------------------------------------------------------------------
    @property
    def client_id(self) -> str:
        return self._backend.issuer.settings.client_id

    @property
    def client_secret(self) -> str:
        return self._backend.issuer.settings.client_secret

    @property
    def tokens_issued(self) -> int:
        return self._backend.issuer.tokens_issued

    def configure_auth(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        expires_in: int | None = None,
        authorities: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        """Change what the token endpoint accepts and issues from now on (``reset()`` restores the start values)."""
        self._backend.issuer.configure(
            client_id=client_id, client_secret=client_secret, expires_in=expires_in, authorities=authorities
        )

    def issue_token(self, *, authorities: list[str] | None = None, expires_in: int | None = None) -> str:
        """A signed access token straight from the issuer (not counted in ``tokens_issued``), e.g. expired ones."""
        return self._backend.issuer.issue(authorities=authorities, expires_in=expires_in, count=False)["access_token"]

    def rotate_keys(self) -> None:
        """New signing key: every token issued so far is rejected with 401 from now on."""
        self._backend.issuer.rotate_keys()

    def urls(self) -> dict[str, str]:
        """The configuration variables (README.md, "Configuration") that point the project at these stand-ins."""
        return {
            "HMPPS_AUTH_URL": self.auth_url,
            "CASE_NOTES_API_URL": self.case_notes_url,
            "ALERTS_API_URL": self.alerts_url,
        }

    def __repr__(self) -> str:
        return (
            f"StandIns(auth_url={self.auth_url!r}, case_notes_url={self.case_notes_url!r}, "
            f"alerts_url={self.alerts_url!r})"
        )
