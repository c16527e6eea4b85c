"""Local stand-ins for HMPPS Auth, the Offender Case Notes API and the Prison Alerts API.

They speak the real request and response shapes (``apps.py`` says where they follow the real services), each on its
own 127.0.0.1 port, share one in-memory ``SourceStore``, and take faults and seed data through Python or
``/__admin/`` on every app::

    with StandIns.start() as standins:
        note = standins.add_case_note("A1234BC", type="GEN", sub_type="OSE")
        standins.set_fault("get_case_note", status=503, times=2)
        standins.serve(f"{standins.case_notes_url}/case-notes/A1234BC/{'x' * 5000}", crafted_json)
        ...

``serve`` answers one path verbatim (after the token check) with what the store cannot hold: an id that is not a
UUID, JSON nested 100,000 deep, a 5,000-digit number, escaped NULs and surrogates (``PUT /__admin/answers`` with
``{"path", "body", "status"}`` from another process).

Run them on fixed ports with ``python -m integration.local.standins --auth-port 9090 ...``.
"""

from .faults import ANY_ROUTE, ROUTES, Fault, FaultRegistry, RequestLog
from .server import StandIns
from .store import (
    ALERT_CODES,
    CASE_NOTE_TYPES,
    RecordError,
    SourceStore,
    deactivate_alert,
    format_date,
    format_local,
    is_active_on,
    london_now,
    london_now_precise,
    make_alert,
    make_amendment,
    make_case_note,
    parse_local,
)
from .tokens import (
    ALERTS_ROLES,
    CASE_NOTES_ROLES,
    DEFAULT_AUTHORITIES,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_EXPIRES_IN,
    AuthSettings,
    TokenIssuer,
)

__all__ = [
    "ALERTS_ROLES",
    "ALERT_CODES",
    "ANY_ROUTE",
    "AuthSettings",
    "CASE_NOTES_ROLES",
    "CASE_NOTE_TYPES",
    "DEFAULT_AUTHORITIES",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_EXPIRES_IN",
    "Fault",
    "FaultRegistry",
    "ROUTES",
    "RecordError",
    "RequestLog",
    "SourceStore",
    "StandIns",
    "TokenIssuer",
    "deactivate_alert",
    "format_date",
    "format_local",
    "is_active_on",
    "london_now",
    "london_now_precise",
    "make_alert",
    "make_amendment",
    "make_case_note",
    "parse_local",
]
