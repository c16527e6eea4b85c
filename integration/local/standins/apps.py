"""The three Flask apps: HMPPS Auth, the Offender Case Notes API and the Prison Alerts API, plus ``/__admin/``.

They share one ``Backend`` (store, token issuer, faults, request log). Request and response shapes follow
upstream-apis.md §2, §3 and §6. Nothing here logs a body, a note text, an alert description, a secret or a token.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import uuid
from datetime import date, datetime
from typing import Any, Callable

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .faults import Applied, Fault, FaultRegistry, RequestLog
from .store import RecordError, SourceStore, parse_local
from .tokens import ALERTS_ROLES, CASE_NOTES_ROLES, InvalidToken, TokenIssuer

MAX_INT = 2147483647
ALERT_NOT_FOUND = "The alert associated with this identifier was not found."
ALERT_SORT_FIELDS = frozenset(
    {"alertUuid", "prisonNumber", "activeFrom", "activeTo", "createdAt", "lastModifiedAt", "activeToLastSetAt",
     "madeInactiveAt", "isActive", "authorisedBy", "prisonCodeWhenCreated"}
)
MALFORMED_BODY = '{"content": [{"caseNoteId": "0ec15f8b-6b57'


class Backend:
    """State shared by the three apps of one ``StandIns``."""

    def __init__(self, store: SourceStore, issuer: TokenIssuer) -> None:
        self.store = store
        self.issuer = issuer
        self.faults = FaultRegistry()
        self.log = RequestLog()
        self._lock = threading.Lock()
        self._search_requests: list[dict[str, Any]] = []

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
        if store:
            self.store.clear()


# --- responses ---------------------------------------------------------------------------------------------------
def error_response(status: int, user_message: str, developer_message: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """The HMPPS ``ErrorResponse`` (nulls omitted)."""
    response = jsonify({"status": status, "userMessage": user_message,
                        "developerMessage": developer_message or user_message})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def oauth_error(status: int, error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response


def _fault_response(route: str, applied: Applied) -> Response:
    status = applied.status or 200
    if applied.malformed:
        response = Response(applied.body or MALFORMED_BODY, status=status, mimetype="application/json")
    elif applied.body is not None:
        response = Response(applied.body, status=status, mimetype="application/json")
    elif route == "token":
        response = oauth_error(status, "server_error" if status >= 500 else "invalid_request",
                               f"Injected fault: HTTP {status}")
    else:
        response = error_response(status, f"Injected fault: HTTP {status}")
    if applied.retry_after is not None:
        response.headers["Retry-After"] = str(applied.retry_after)
    return response


def _bearer_check(backend: Backend, roles: frozenset[str]) -> Response | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(401, "Unauthorised: full authentication is required",
                              headers={"WWW-Authenticate": "Bearer"})
    try:
        claims = backend.issuer.verify(token.strip())
    except InvalidToken as exc:
        return error_response(401, f"Unauthorised: {exc}",
                              headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc}"'})
    authorities = claims.get("authorities") or []
    if not roles.intersection(authorities):
        return error_response(403, "Access denied: the token lacks the role for this API")
    return None


def endpoint(backend: Backend, route: str, roles: frozenset[str] | None = None) -> Callable:
    """Log the request, apply any fault for ``route``, check the bearer token when ``roles`` is given."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            entry = backend.log.start(route, request.method, request.path,
                                      request.query_string.decode("latin-1"))
            status = 500
            try:
                applied = backend.faults.take(route)
                if applied is not None and applied.latency_ms:
                    time.sleep(applied.latency_ms / 1000)
                if applied is not None and applied.replaces_response:
                    response = _fault_response(route, applied)
                else:
                    denied = _bearer_check(backend, roles) if roles is not None else None
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


def _int_field(body: dict[str, Any], name: str, default: int, minimum: int) -> int:
    value = body.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{name} must be a whole number")
    if value < minimum:
        raise _Invalid(f"{name} must be at least {minimum}")
    return value


def _parse_search(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Invalid("the request body must be a SearchNotesRequest JSON object")
    page = _int_field(body, "page", 1, 1)
    size = _int_field(body, "size", 10, 1)
    sort = body.get("sort") or "occurredAt,desc"
    if not isinstance(sort, str):
        raise _Invalid("sort must be a string")
    field, _, direction = sort.partition(",")
    direction = (direction or "asc").strip().lower()
    if field.strip() not in ("occurredAt", "createdAt") or direction not in ("asc", "desc"):
        raise _Invalid("Sort field invalid, please provide one of occurredAt or createdAt, with asc or desc")
    include_sensitive = body.get("includeSensitive", False)
    if include_sensitive is None:
        include_sensitive = False
    if not isinstance(include_sensitive, bool):
        raise _Invalid("includeSensitive must be true or false")
    type_subtypes = body.get("typeSubTypes") or []
    if not isinstance(type_subtypes, list):
        raise _Invalid("typeSubTypes must be a list")
    filters: list[tuple[str, frozenset[str]]] = []
    for item in type_subtypes:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise _Invalid("each typeSubTypes entry needs a type")
        sub_types = item.get("subTypes") or []
        if not isinstance(sub_types, list) or not all(isinstance(s, str) for s in sub_types):
            raise _Invalid("subTypes must be a list of codes")
        filters.append((item["type"], frozenset(sub_types)))
    try:
        occurred_from = parse_local(body.get("occurredFrom"))
        occurred_to = parse_local(body.get("occurredTo"))
    except (TypeError, ValueError):
        raise _Invalid("occurredFrom and occurredTo must be ISO date-times") from None
    return {"page": page, "size": size, "sort_field": field.strip(), "descending": direction == "desc",
            "include_sensitive": include_sensitive, "filters": filters,
            "occurred_from": occurred_from, "occurred_to": occurred_to}


def _matches_types(note: dict[str, Any], filters: list[tuple[str, frozenset[str]]]) -> bool:
    if not filters:
        return True
    return any(note.get("type") == t and (not subs or note.get("subType") in subs) for t, subs in filters)


def create_case_notes_app(backend: Backend) -> Flask:
    app = _new_app("case-notes-api-standin", backend)

    @app.get("/case-notes/<person>/<identifier>")
    @endpoint(backend, "get_case_note", CASE_NOTES_ROLES)
    def get_case_note(person: str, identifier: str) -> Response:
        if not (_is_uuid(identifier) or _is_int(identifier)):
            return error_response(400, "Invalid case note identifier: expected a UUID or a legacy number")
        note = backend.store.get_case_note(identifier, person.upper())
        if note is None:
            return error_response(404, f"Resource with id [{identifier}] not found.")
        return jsonify(note)

    @app.post("/search/case-notes/<person>")
    @endpoint(backend, "search_case_notes", CASE_NOTES_ROLES)
    def search_case_notes(person: str) -> Response:
        person = person.upper()
        body = request.get_json(silent=True)
        backend.record_search(person, body)
        try:
            params = _parse_search(body)
        except _Invalid as exc:
            return error_response(400, f"Validation failure: {exc}")
        everything = backend.store.case_notes(person)
        selected = [
            note
            for note in everything
            if _matches_types(note, params["filters"])
            and (params["include_sensitive"] or not note.get("sensitive", False))
            and (params["occurred_from"] is None
                 or (parse_local(note.get("occurrenceDateTime")) or datetime.min) >= params["occurred_from"])
            and (params["occurred_to"] is None
                 or (parse_local(note.get("occurrenceDateTime")) or datetime.max) <= params["occurred_to"])
        ]
        primary = "occurrenceDateTime" if params["sort_field"] == "occurredAt" else "creationDateTime"
        secondary = "creationDateTime" if primary == "occurrenceDateTime" else "occurrenceDateTime"

        def sort_key(note: dict[str, Any]) -> tuple:
            return (str(parse_local(note.get(primary)) or ""), str(parse_local(note.get(secondary)) or ""),
                    note["caseNoteId"])

        selected.sort(key=sort_key, reverse=params["descending"])
        start = (params["page"] - 1) * params["size"]
        return jsonify(
            {
                "content": selected[start:start + params["size"]],
                "metadata": {"totalElements": len(selected), "page": params["page"], "size": params["size"]},
                "hasCaseNotes": bool(everything),
            }
        )

    return app


# --- Alerts API -----------------------------------------------------------------------------------------------------
def _csv_args(name: str) -> set[str]:
    values: set[str] = set()
    for raw in request.args.getlist(name):
        values.update(v.strip() for v in raw.split(",") if v.strip())
    return values


def _int_arg(name: str, default: int, minimum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not _is_int(raw):
        raise _Invalid(f"{name} must be a whole number")
    value = int(raw)
    if value < minimum:
        raise _Invalid(f"{name} must be at least {minimum}")
    return value


def _sort_alerts(alerts: list[dict[str, Any]], sorts: list[str]) -> list[dict[str, Any]]:
    # A stable base order (created, then id), then each requested key from last to first.
    ordered = sorted(alerts, key=lambda a: (str(a.get("createdAt") or ""), a["alertUuid"]))
    for spec in reversed(sorts):
        field, _, direction = spec.partition(",")
        field, direction = field.strip(), (direction or "asc").strip().lower()
        if field not in ALERT_SORT_FIELDS or direction not in ("asc", "desc"):
            raise _Invalid(f"cannot sort by {spec!r}")
        present = [a for a in ordered if a.get(field) is not None]
        missing = [a for a in ordered if a.get(field) is None]
        present.sort(key=lambda a: str(a[field]), reverse=direction == "desc")
        ordered = present + missing if direction == "asc" else missing + present
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

    @app.get("/alerts/<alert_uuid>")
    @endpoint(backend, "get_alert", ALERTS_ROLES)
    def get_alert(alert_uuid: str) -> Response:
        if not _is_uuid(alert_uuid):
            return error_response(400, "Validation failure: alertUuid must be a UUID")
        alert = backend.store.get_alert(alert_uuid)
        if alert is None:
            return error_response(404, f"Not found: {ALERT_NOT_FOUND}", ALERT_NOT_FOUND)
        return jsonify(alert)

    @app.get("/prisoners/<prison_number>/alerts")
    @endpoint(backend, "person_alerts", ALERTS_ROLES)
    def person_alerts(prison_number: str) -> Response:
        try:
            is_active_raw = request.args.get("isActive")
            is_active: bool | None = None
            if is_active_raw not in (None, ""):
                if is_active_raw.lower() not in ("true", "false"):
                    raise _Invalid("isActive must be true or false")
                is_active = is_active_raw.lower() == "true"
            codes, types = _csv_args("alertCode"), _csv_args("alertType")
            try:
                from_start = date.fromisoformat(request.args["activeFromStart"]) \
                    if request.args.get("activeFromStart") else None
                from_end = date.fromisoformat(request.args["activeFromEnd"]) \
                    if request.args.get("activeFromEnd") else None
            except ValueError:
                raise _Invalid("activeFromStart and activeFromEnd must be dates") from None
            search = (request.args.get("search") or "").strip().lower()
            page = _int_arg("page", 0, 0)
            size = _int_arg("size", MAX_INT, 1)
            sorts = request.args.getlist("sort") or ["activeFrom,DESC"]
            alerts = [
                a
                for a in backend.store.alerts(prison_number)
                if (is_active is None or bool(a.get("isActive")) == is_active)
                and (not codes or (a.get("alertCode") or {}).get("code") in codes)
                and (not types or (a.get("alertCode") or {}).get("alertTypeCode") in types)
                and (from_start is None or _active_from(a) >= from_start)
                and (from_end is None or _active_from(a) <= from_end)
                and (not search or search in (a.get("description") or "").lower()
                     or search in str((a.get("alertCode") or {}).get("description") or "").lower())
            ]
            alerts = _sort_alerts(alerts, sorts)
        except _Invalid as exc:
            return error_response(400, f"Validation failure: {exc}")
        total = len(alerts)
        content = alerts[page * size:(page + 1) * size]
        total_pages = math.ceil(total / size) if total else 0
        return jsonify(
            {
                "content": content,
                "pageable": {"pageNumber": page, "pageSize": size, "sort": _sort_object(True),
                             "offset": page * size, "paged": True, "unpaged": False},
                "totalElements": total,
                "totalPages": total_pages,
                "last": page >= total_pages - 1,
                "first": page == 0,
                "size": size,
                "number": page,
                "numberOfElements": len(content),
                "sort": _sort_object(True),
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
        return jsonify({"client_id": settings.client_id, "expires_in": settings.expires_in,
                        "authorities": list(settings.authorities), "scope": list(settings.scope)})

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
