"""The three Flask apps: HMPPS Auth, the Offender Case Notes API and the Prison Alerts API, plus ``/__admin/``.

They share one ``Backend`` (store, token issuer, faults, request log, and the RNG that orders equal sort keys).
They answer as the real services do, as far as this project depends on it:

* case-note search: the body must hold ``page`` (≥ 1), ``size`` (≥ 1) and ``includeSensitive``; ``sort`` is
  ``occurredAt`` or ``createdAt`` (default ``occurredAt,desc``; any direction but ``asc`` is descending); any page
  size is served (no cap); ``metadata`` echoes the requested page and size;
* equal sort keys come back in no fixed order: a fresh shuffle per request from a seedable RNG (the real APIs sort
  on one key with no tie-breaker), so a client paging through ties can skip records, as it could for real;
* errors have the real bodies: the Case Notes API's ``ErrorResponse`` omits nulls and a 404 holds only ``status``
  and ``developerMessage``; the Alerts API's keeps every field, nulls included;
* the prisoner-alerts list is a Spring ``Page``: page size defaults to 2³¹−1 with no cap, a page or size that does
  not parse or is below range falls back to the default, ``isActive`` filters on ``activeTo`` (null or after
  today: active) and an unknown sort property fails the query (500).

Nothing here logs a body, a note text, an alert description, a secret or a token.
"""

from __future__ import annotations

import functools
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from .faults import Applied, Fault, FaultRegistry, RequestLog
from .store import RecordError, SourceStore, is_active_on, parse_local
from .tokens import ALERTS_ROLES, CASE_NOTES_ROLES, InvalidToken, TokenIssuer

MAX_INT = 2147483647
ALERT_NOT_FOUND = "Alert not found"
# The Alerts API sorts on its entity's attributes (the JSON name where it differs): anything else fails the query.
ALERT_SORT_FIELDS: dict[str, str] = {
    "id": "alertUuid",
    "prisonNumber": "prisonNumber",
    "description": "description",
    "authorisedBy": "authorisedBy",
    "activeFrom": "activeFrom",
    "activeTo": "activeTo",
    "createdAt": "createdAt",
    "prisonCodeWhenCreated": "prisonCodeWhenCreated",
    "lastModifiedAt": "lastModifiedAt",
}
CASE_NOTE_SORT_FIELDS = {"occurredAt": "occurrenceDateTime", "createdAt": "creationDateTime"}
MALFORMED_BODY = '{"content": [{"caseNoteId": "0ec15f8b-6b57'


class Backend:
    """State shared by the three apps of one ``StandIns``."""

    def __init__(self, store: SourceStore, issuer: TokenIssuer, tie_seed: int | None = None) -> None:
        self.store = store
        self.issuer = issuer
        self.faults = FaultRegistry()
        self.log = RequestLog()
        self._lock = threading.Lock()
        self._search_requests: list[dict[str, Any]] = []
        self._tie_seed = tie_seed
        self._ties = random.Random(tie_seed)
        self._answers: dict[str, tuple[int, str]] = {}

    def set_answer(self, path: str, body: str, status: int = 200) -> None:
        """Answer every authorised GET or POST of ``path`` (as the app sees it: decoded, no query) with ``body``
        verbatim, instead of the store: records the store cannot hold (ids that are not UUIDs, JSON nested
        100,000 deep, numbers of 5,000 digits, escaped NULs and surrogates), for hostile-input tests."""
        if not 100 <= int(status) <= 599:
            raise ValueError("status must be an HTTP status code")
        with self._lock:
            self._answers[path] = (int(status), body)

    def answer_for(self, path: str) -> tuple[int, str] | None:
        with self._lock:
            return self._answers.get(path)

    def clear_answers(self) -> None:
        with self._lock:
            self._answers.clear()

    def set_tie_seed(self, seed: int | None) -> None:
        """Seed the order of equal sort keys from now on (``None``: unpredictable); ``reset`` re-applies it."""
        with self._lock:
            self._tie_seed = seed
            self._ties = random.Random(seed)

    def shuffle_ties(self, records: list[dict[str, Any]]) -> None:
        """Put records in a fresh random order before a stable sort: equal keys then come back in no fixed order."""
        with self._lock:
            self._ties.shuffle(records)

    def record_search(self, person: str, body: Any) -> None:
        # The search body holds only type codes, dates and paging: no note text, safe to keep for assertions.
        with self._lock:
            self._search_requests.append({"person": person, "body": body})

    def search_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._search_requests]

    def reset(self, *, store: bool = True) -> None:
        self.faults.clear()
        self.log.clear()
        self.issuer.reset()
        with self._lock:
            self._search_requests.clear()
            self._ties = random.Random(self._tie_seed)
            self._answers.clear()
        if store:
            self.store.clear()


# --- responses ---------------------------------------------------------------------------------------------------
def error_response(
    status: int, user_message: str, developer_message: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """An HMPPS ``ErrorResponse`` with both messages (401s, the admin API and injected faults)."""
    response = jsonify(
        {"status": status, "userMessage": user_message, "developerMessage": developer_message or user_message}
    )
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def case_notes_error(status: int, developer_message: str, user_message: str | None = None) -> Response:
    """The Case Notes API's ``ErrorResponse``: nulls omitted, so most errors hold only status and developerMessage."""
    body: dict[str, Any] = {"status": status}
    if user_message is not None:
        body["userMessage"] = user_message
    body["developerMessage"] = developer_message
    response = jsonify(body)
    response.status_code = status
    return response


def alerts_error(status: int, user_message: str, developer_message: str) -> Response:
    """The Alerts API's ``ErrorResponse``: every field, nulls included."""
    response = jsonify(
        {
            "status": status,
            "errorCode": None,
            "userMessage": user_message,
            "developerMessage": developer_message,
            "moreInfo": None,
        }
    )
    response.status_code = status
    return response


def oauth_error(status: int, error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response


def _fault_response(route: str, applied: Applied) -> Response:
    status = applied.status or (503 if applied.hang else 302 if applied.location else 200)
    if applied.malformed:
        response = Response(applied.body or MALFORMED_BODY, status=status, mimetype="application/json")
    elif applied.body is not None:
        response = Response(applied.body, status=status, mimetype="application/json")
    elif route == "token":
        response = oauth_error(
            status, "server_error" if status >= 500 else "invalid_request", f"Injected fault: HTTP {status}"
        )
    else:
        response = error_response(status, f"Injected fault: HTTP {status}")
    if applied.retry_after is not None:
        response.headers["Retry-After"] = str(applied.retry_after)
    if applied.location is not None:
        response.headers["Location"] = applied.location
    return response


def _bearer_check(
    backend: Backend, roles: frozenset[str], forbidden: Callable[[], Response] | None = None
) -> Response | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(
            401, "Unauthorised: full authentication is required", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        claims = backend.issuer.verify(token.strip())
    except InvalidToken as exc:
        return error_response(
            401,
            f"Unauthorised: {exc}",
            headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc}"'},
        )
    authorities = claims.get("authorities") or []
    if not roles.intersection(authorities):
        return forbidden() if forbidden else error_response(403, "Access denied: the token lacks the role")
    return None


def endpoint(
    backend: Backend, route: str, roles: frozenset[str] | None = None, forbidden: Callable[[], Response] | None = None
) -> Callable:
    """Log the request, apply any fault for ``route``, check the bearer token when ``roles`` is given."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            entry = backend.log.start(route, request.method, request.path, request.query_string.decode("latin-1"))
            status = 500
            try:
                applied = backend.faults.take(route)
                if applied is not None and applied.latency_ms:
                    time.sleep(applied.latency_ms / 1000)
                if applied is not None and applied.hang:
                    backend.faults.hang()
                if applied is not None and applied.replaces_response:
                    response = _fault_response(route, applied)
                else:
                    denied = _bearer_check(backend, roles, forbidden) if roles is not None else None
                    crafted = backend.answer_for(request.path) if denied is None else None
                    if crafted is not None:
                        response = Response(crafted[1], status=crafted[0], mimetype="application/json")
                    else:
                        response = denied or view(*args, **kwargs)
                status = response.status_code
                return response
            finally:
                backend.log.finish(entry, status)

        return wrapper

    return decorator


def _json_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_response(exc.code or 500, exc.name, exc.description)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:  # pragma: no cover - a bug in the stand-in
        return error_response(500, "Unexpected error in the stand-in", type(exc).__name__)


def _new_app(name: str, backend: Backend) -> Flask:
    app = Flask(name)
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's default provider, the one with sort_keys
    app.json.sort_keys = False  # keep the APIs' field order
    _json_errors(app)
    app.register_blueprint(admin_blueprint(backend))
    return app


# --- HMPPS Auth ----------------------------------------------------------------------------------------------------
def create_auth_app(backend: Backend) -> Flask:
    app = _new_app("hmpps-auth-standin", backend)

    @app.post("/auth/oauth/token")
    @endpoint(backend, "token")
    def token() -> Response:
        grant_type = request.args.get("grant_type") or request.form.get("grant_type")
        credentials = request.authorization
        if credentials is None or credentials.type != "basic":
            response = oauth_error(401, "unauthorized", "Full authentication is required to access this resource")
            response.headers["WWW-Authenticate"] = 'Basic realm="oauth2/client"'
            return response
        if not backend.issuer.check_client(credentials.username, credentials.password):
            return oauth_error(401, "unauthorized", "Bad credentials")
        if grant_type != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
        response = jsonify(backend.issuer.issue())
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/auth/.well-known/jwks.json")
    @endpoint(backend, "jwks")
    def jwks() -> Response:
        return jsonify(backend.issuer.jwks())

    return app


# --- Case Notes API -------------------------------------------------------------------------------------------------
def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_int(value: str) -> bool:
    return value.lstrip("-").isdigit()


class _Invalid(ValueError):
    pass


class _Unreadable(ValueError):
    """The body cannot be turned into the request object (a required field missing or of the wrong type)."""


def _required_int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Unreadable(f"{name} is required and must be a whole number")
    return value


def _validation_failure(messages: list[str]) -> Response:
    """The Case Notes API's answer to failed field constraints (its ``ControllerAdvice``)."""
    messages = sorted(set(messages))
    if len(messages) > 1:
        message = "Validation failures: \n" + "\n".join(messages) + "\n"
    else:
        message = f"Validation failure: {messages[0]}"
    return case_notes_error(400, f"400 BAD_REQUEST {message}", message)


def _parse_sort(sort: str) -> tuple[str, bool]:
    """``(field, descending)`` as the Case Notes API reads ``sort``: a field of ``CASE_NOTE_SORT_FIELDS``, then an
    optional direction where anything but ``asc`` (any case) means descending. No trimming."""
    parts = sort.split(",")
    if parts[0] not in CASE_NOTE_SORT_FIELDS:
        raise _Invalid("Sort field invalid, please provide one of [occurredAt, createdAt]")
    return parts[0], not (len(parts) > 1 and parts[1].lower() == "asc")


def _parse_search(body: Any) -> dict[str, Any]:
    """The ``SearchNotesRequest``: ``_Unreadable`` if it cannot be built, then constraints (``_validation_failure``
    messages in ``constraint_errors``); the sort is checked later, as the API does when it builds the query."""
    if not isinstance(body, dict):
        raise _Unreadable("the request body must be a SearchNotesRequest JSON object")
    page, size = _required_int(body, "page"), _required_int(body, "size")
    include_sensitive = body.get("includeSensitive")
    if not isinstance(include_sensitive, bool):
        raise _Unreadable("includeSensitive is required and must be true or false")
    sort = body.get("sort", "occurredAt,desc")
    if sort is None:
        sort = "occurredAt,desc"
    if not isinstance(sort, str):
        raise _Unreadable("sort must be a string")
    type_subtypes = body.get("typeSubTypes")
    if type_subtypes is None:
        type_subtypes = []
    if not isinstance(type_subtypes, list):
        raise _Unreadable("typeSubTypes must be a list")
    filters: dict[str, set[str]] = {}
    for item in type_subtypes:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise _Unreadable("each typeSubTypes entry needs a type")
        sub_types = item.get("subTypes")
        if sub_types is None:
            sub_types = []
        if not isinstance(sub_types, list) or not all(isinstance(s, str) for s in sub_types):
            raise _Unreadable("subTypes must be a list of codes")
        filters[item["type"]] = set(sub_types)  # the API keys its filter by type: a later entry wins
    try:
        occurred_from = parse_local(body.get("occurredFrom"))
        occurred_to = parse_local(body.get("occurredTo"))
    except (TypeError, ValueError, AttributeError):
        raise _Unreadable("occurredFrom and occurredTo must be ISO date-times") from None
    constraint_errors = []
    if page < 1:
        constraint_errors.append("Page number must be at least 1")
    if size < 1:
        constraint_errors.append("Page size must be at least 1")
    return {
        "page": page,
        "size": size,
        "sort": sort,
        "include_sensitive": include_sensitive,
        "filters": filters,
        "occurred_from": occurred_from,
        "occurred_to": occurred_to,
        "constraint_errors": constraint_errors,
    }


def _matches_types(note: dict[str, Any], filters: dict[str, set[str]]) -> bool:
    if not filters:
        return True
    subs = filters.get(note.get("type"))  # type: ignore[arg-type]
    return subs is not None and (not subs or note.get("subType") in subs)


def _time_key(value: Any) -> datetime:
    try:
        return parse_local(value) or datetime.min
    except (TypeError, ValueError):
        return datetime.min


def create_case_notes_app(backend: Backend) -> Flask:
    app = _new_app("case-notes-api-standin", backend)
    forbidden = functools.partial(case_notes_error, 403, "Access Denied")

    @app.get("/case-notes/<person>/<identifier>")
    @endpoint(backend, "get_case_note", CASE_NOTES_ROLES, forbidden)
    def get_case_note(person: str, identifier: str) -> Response:
        if not (_is_uuid(identifier) or _is_int(identifier)):
            return case_notes_error(400, f"Invalid UUID string: {identifier}")
        note = backend.store.get_case_note(identifier, person.upper())
        if note is None:
            return case_notes_error(404, f"Resource with id [{identifier}] not found.")
        return jsonify(note)

    @app.post("/search/case-notes/<person>")
    @endpoint(backend, "search_case_notes", CASE_NOTES_ROLES, forbidden)
    def search_case_notes(person: str) -> Response:
        person = person.upper()
        body = request.get_json(silent=True)
        backend.record_search(person, body)
        try:
            params = _parse_search(body)
        except _Unreadable as exc:
            return case_notes_error(400, f"Required request body is missing or unreadable: {exc}")
        if params["constraint_errors"]:
            return _validation_failure(params["constraint_errors"])
        try:
            field, descending = _parse_sort(params["sort"])
        except _Invalid as exc:
            return case_notes_error(400, f"400 BAD_REQUEST Validation failure: {exc}")
        everything = backend.store.case_notes(person)
        visible = [n for n in everything if params["include_sensitive"] or not n.get("sensitive", False)]
        selected = [
            note
            for note in visible
            if _matches_types(note, params["filters"])
            and (
                params["occurred_from"] is None or _time_key(note.get("occurrenceDateTime")) >= params["occurred_from"]
            )
            and (params["occurred_to"] is None or _time_key(note.get("occurrenceDateTime")) <= params["occurred_to"])
        ]
        key = CASE_NOTE_SORT_FIELDS[field]
        backend.shuffle_ties(selected)  # one sort key and no tie-breaker: equal keys in no fixed order
        selected.sort(key=lambda note: _time_key(note.get(key)), reverse=descending)
        start = (params["page"] - 1) * params["size"]
        return jsonify(
            {
                "content": selected[start : start + params["size"]],
                "metadata": {"totalElements": len(selected), "page": params["page"], "size": params["size"]},
                # whether the person has any case note the caller may see, whatever the type filter
                "hasCaseNotes": bool(visible),
            }
        )

    return app


# --- Alerts API -----------------------------------------------------------------------------------------------------
def _csv_args(name: str) -> set[str]:
    values: set[str] = set()
    for raw in request.args.getlist(name):
        values.update(v.strip() for v in raw.split(",") if v.strip())
    return values


def _pageable_arg(name: str, default: int) -> int:
    """Spring's reading of ``page``/``size``: what does not parse counts as 0, below 0 as 0, and a size below 1 is
    the default (no upper cap: the Alerts API sets its maximum page size to 2³¹−1)."""
    raw = request.args.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = max(int(raw), 0)
    except ValueError:
        value = 0
    value = min(value, MAX_INT)
    if name == "size" and value < 1:
        return default
    return value


class _SortFailure(Exception):
    pass


def _sort_alerts(backend: Backend, alerts: list[dict[str, Any]], sorts: list[str]) -> list[dict[str, Any]]:
    """Each ``property[,ASC|DESC]`` (later ones break earlier ties); equal keys otherwise in no fixed order."""
    orders: list[tuple[str, bool]] = []
    for spec in sorts:
        field, _, direction = spec.partition(",")
        direction = direction.strip().lower() or "asc"
        if field.strip() not in ALERT_SORT_FIELDS or direction not in ("asc", "desc"):
            raise _SortFailure(f"No property '{field.strip()}' found for type 'Alert'")
        orders.append((ALERT_SORT_FIELDS[field.strip()], direction == "desc"))
    ordered = list(alerts)
    backend.shuffle_ties(ordered)
    for json_field, descending in reversed(orders):
        present = [a for a in ordered if a.get(json_field) is not None]
        missing = [a for a in ordered if a.get(json_field) is None]
        present.sort(key=lambda a: str(a[json_field]), reverse=descending)
        ordered = present + missing if not descending else missing + present  # PostgreSQL: nulls sort high
    return ordered


def _active_from(alert: dict[str, Any]) -> date:
    try:
        return date.fromisoformat(str(alert.get("activeFrom"))[:10])
    except ValueError:
        return date.min


def _sort_object(sorted_: bool) -> dict[str, bool]:
    return {"empty": not sorted_, "sorted": sorted_, "unsorted": not sorted_}


def create_alerts_app(backend: Backend) -> Flask:
    app = _new_app("alerts-api-standin", backend)
    forbidden = functools.partial(
        alerts_error, 403, "Authentication problem. Check token and roles - Access Denied", "Access Denied"
    )

    @app.get("/alerts/<alert_uuid>")
    @endpoint(backend, "get_alert", ALERTS_ROLES, forbidden)
    def get_alert(alert_uuid: str) -> Response:
        if not _is_uuid(alert_uuid):
            return alerts_error(
                400,
                "Validation failure: Parameter alertUuid must be of type java.util.UUID",
                "Method parameter 'alertUuid': Failed to convert value of type 'java.lang.String' "
                "to required type 'java.util.UUID'",
            )
        alert = backend.store.get_alert(alert_uuid)
        if alert is None:
            return alerts_error(404, f"Not found: {ALERT_NOT_FOUND}", f"Alert not found with identifier {alert_uuid}")
        return jsonify(alert)

    @app.get("/prisoners/<prison_number>/alerts")
    @endpoint(backend, "person_alerts", ALERTS_ROLES, forbidden)
    def person_alerts(prison_number: str) -> Response:
        is_active_raw = request.args.get("isActive")
        is_active: bool | None = None
        if is_active_raw not in (None, ""):
            if is_active_raw.lower() not in ("true", "false"):
                return alerts_error(
                    400,
                    "Validation failure: Parameter isActive must be of type java.lang.Boolean",
                    "Method parameter 'isActive': Failed to convert value of type "
                    "'java.lang.String' to required type 'java.lang.Boolean'",
                )
            is_active = is_active_raw.lower() == "true"
        codes, types = _csv_args("alertCode"), _csv_args("alertType")
        try:
            from_start = (
                date.fromisoformat(request.args["activeFromStart"]) if request.args.get("activeFromStart") else None
            )
            from_end = date.fromisoformat(request.args["activeFromEnd"]) if request.args.get("activeFromEnd") else None
        except ValueError:
            return alerts_error(
                400,
                "Validation failure: Parameter activeFromStart/activeFromEnd must be of type java.time.LocalDate",
                "Failed to convert a date parameter",
            )
        search = (request.args.get("search") or "").strip().lower()
        page = _pageable_arg("page", 0)
        size = _pageable_arg("size", MAX_INT)
        sorts = request.args.getlist("sort") or ["activeFrom,DESC"]
        today = backend.store.today()
        alerts = [
            a
            for a in backend.store.alerts(prison_number)
            if (is_active is None or is_active_on(a, today) == is_active)
            and (not codes or (a.get("alertCode") or {}).get("code") in codes)
            and (not types or (a.get("alertCode") or {}).get("alertTypeCode") in types)
            and (from_start is None or _active_from(a) >= from_start)
            and (from_end is None or _active_from(a) <= from_end)
            and (
                not search
                or search in (a.get("description") or "").lower()
                or search in (a.get("authorisedBy") or "").lower()
            )
        ]
        try:
            alerts = _sort_alerts(backend, alerts, sorts)
        except _SortFailure as exc:  # the real query fails, and its catch-all handler answers 500
            return alerts_error(500, f"Unexpected error: {exc}", str(exc))
        total = len(alerts)
        content = alerts[page * size : (page + 1) * size]
        total_pages = math.ceil(total / size) if total else 0
        return jsonify(
            {
                "content": content,
                "pageable": {
                    "pageNumber": page,
                    "pageSize": size,
                    "sort": _sort_object(True),
                    "offset": page * size,
                    "paged": True,
                    "unpaged": False,
                },
                "last": page >= total_pages - 1,
                "totalPages": total_pages,
                "totalElements": total,
                "size": size,
                "number": page,
                "sort": _sort_object(True),
                "first": page == 0,
                "numberOfElements": len(content),
                "empty": not content,
            }
        )

    return app


# --- admin ------------------------------------------------------------------------------------------------------------
def admin_blueprint(backend: Backend) -> Blueprint:
    """``/__admin/`` on every app: faults, request log, reset, seeding, auth settings. Unauthenticated (local only)."""
    admin = Blueprint("standins_admin", __name__, url_prefix="/__admin")

    def body_json() -> Any:
        data = request.get_json(silent=True)
        if data is None:
            raise _Invalid("a JSON body is required")
        return data

    @admin.errorhandler(_Invalid)
    def _invalid(exc: _Invalid) -> Response:
        return error_response(400, str(exc))

    @admin.errorhandler(ValueError)
    def _value_error(exc: ValueError) -> Response:
        return error_response(400, str(exc))

    @admin.errorhandler(TypeError)
    def _type_error(exc: TypeError) -> Response:
        return error_response(400, "invalid fields in the request body")

    @admin.get("/health")
    def health() -> Response:
        return jsonify({"status": "UP", **backend.store.counts()})

    @admin.post("/reset")
    def reset() -> Response:
        backend.reset()
        return jsonify({"reset": True})

    @admin.get("/faults")
    def list_faults() -> Response:
        return jsonify(backend.faults.active())

    @admin.put("/faults/<route>")
    def set_fault(route: str) -> Response:
        data = body_json()
        if not isinstance(data, dict):
            raise _Invalid("a fault must be a JSON object")
        fault = backend.faults.set(route, Fault.from_json(data))
        return jsonify({route: fault.describe()})

    @admin.delete("/faults/<route>")
    def clear_fault(route: str) -> Response:
        backend.faults.clear(route)
        return jsonify({"cleared": route})

    @admin.delete("/faults")
    def clear_faults() -> Response:
        backend.faults.clear()
        return jsonify({"cleared": "all"})

    @admin.put("/answers")
    def set_answer() -> Response:
        data = body_json()
        if not isinstance(data, dict) or not isinstance(data.get("path"), str) or not isinstance(data.get("body"), str):
            raise _Invalid("an answer is a JSON object with a path and a body (strings) and an optional status")
        backend.set_answer(data["path"], data["body"], int(data.get("status", 200)))
        return jsonify({"answer": data["path"]})

    @admin.delete("/answers")
    def clear_answers() -> Response:
        backend.clear_answers()
        return jsonify({"cleared": "answers"})

    @admin.get("/requests")
    def requests_log() -> Response:
        route = request.args.get("route")
        return jsonify({"counts": backend.log.counts(), "log": backend.log.entries(route)})

    @admin.delete("/requests")
    def clear_requests() -> Response:
        backend.log.clear()
        return jsonify({"cleared": True})

    @admin.get("/search-requests")
    def search_requests() -> Response:
        return jsonify(backend.search_requests())

    @admin.get("/tokens")
    def tokens() -> Response:
        return jsonify({"tokensIssued": backend.issuer.tokens_issued})

    @admin.put("/auth")
    def configure_auth() -> Response:
        data = body_json()
        if not isinstance(data, dict):
            raise _Invalid("auth settings must be a JSON object")
        allowed = {"client_id", "client_secret", "expires_in", "authorities", "scope"}
        if set(data) - allowed:
            raise _Invalid(f"unknown auth settings: {sorted(set(data) - allowed)}")
        settings = backend.issuer.configure(**data)
        return jsonify(
            {
                "client_id": settings.client_id,
                "expires_in": settings.expires_in,
                "authorities": list(settings.authorities),
                "scope": list(settings.scope),
            }
        )

    @admin.post("/auth/rotate-keys")
    def rotate_keys() -> Response:
        backend.issuer.rotate_keys()
        return jsonify({"rotated": True})

    def _records(data: Any) -> list[dict[str, Any]]:
        records = data if isinstance(data, list) else [data]
        if not all(isinstance(r, dict) for r in records):
            raise _Invalid("records must be JSON objects")
        return records

    @admin.put("/case-notes")
    def put_case_notes() -> Response:
        try:
            stored = backend.store.put_case_notes(_records(body_json()))
        except RecordError as exc:
            raise _Invalid(str(exc)) from None
        return jsonify({"upserted": len(stored), "ids": [n["caseNoteId"] for n in stored]})

    @admin.get("/case-notes")
    def get_case_notes() -> Response:
        return jsonify(backend.store.case_notes(request.args.get("person")))

    @admin.post("/case-notes/move")
    def move_case_notes() -> Response:
        """Body ``{"fromPersonIdentifier", "toPersonIdentifier", "caseNoteIds"?}``, the Case Notes API's move."""
        data = body_json()
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) and data.get(k) for k in ("fromPersonIdentifier", "toPersonIdentifier")
        ):
            raise _Invalid("fromPersonIdentifier and toPersonIdentifier are required")
        ids = data.get("caseNoteIds")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            raise _Invalid("caseNoteIds must be a list of ids")
        moved = backend.store.move_case_notes(data["fromPersonIdentifier"], data["toPersonIdentifier"], ids)
        return jsonify({"moved": len(moved), "ids": [n["caseNoteId"] for n in moved]})

    @admin.delete("/case-notes/<case_note_id>")
    def delete_case_note(case_note_id: str) -> Response:
        if not backend.store.delete_case_note(case_note_id):
            return error_response(404, f"Resource with id [{case_note_id}] not found.")
        return Response(status=204)

    @admin.put("/alerts")
    def put_alerts() -> Response:
        try:
            stored = backend.store.put_alerts(_records(body_json()))
        except RecordError as exc:
            raise _Invalid(str(exc)) from None
        return jsonify({"upserted": len(stored), "ids": [a["alertUuid"] for a in stored]})

    @admin.get("/alerts")
    def get_alerts() -> Response:
        return jsonify(backend.store.alerts(request.args.get("person")))

    @admin.delete("/alerts/<alert_uuid>")
    def delete_alert(alert_uuid: str) -> Response:
        if not backend.store.delete_alert(alert_uuid):
            return error_response(404, ALERT_NOT_FOUND)
        return Response(status=204)

    @admin.delete("/store")
    def clear_store() -> Response:
        backend.store.clear()
        return jsonify({"cleared": True})

    return admin
