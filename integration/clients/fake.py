"""``FakeSourceApi``: an in-memory ``SourceApi`` for unit tests of ops and assets (no HTTP).

Case notes and alerts are held by detail URL and by person; every call is recorded; an exception can be set for a
detail URL or a person (``raise_for``), optionally for the next N calls only. Its contract is the real client's
(``clients.hmpps``): a person's case notes come oldest first, complete or not at all (an error), alerts active and
inactive; what the real client raises on a timeout, a hung API or a short read is an ``UpstreamError`` that
``raise_for`` can stand in for.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from .base import DetailUrlNotAllowed, SourceApi
from .http import NotAnOrigin, origin_of, parse_allowlist

FAKE_CASE_NOTES_URL = "http://case-notes.fake"
FAKE_ALERTS_URL = "http://alerts.fake"


def _matches(note: dict[str, Any], type_subtypes: list[dict[str, Any]] | None) -> bool:
    if not type_subtypes:
        return True
    for entry in type_subtypes:
        if note.get("type") == entry.get("type"):
            sub_types = entry.get("subTypes") or []
            if not sub_types or note.get("subType") in sub_types:
                return True
    return False


class FakeSourceApi(SourceApi):
    """In-memory case notes and alerts. Thread-safe. Returns copies, as a real client returns fresh JSON."""

    def __init__(
        self,
        case_notes_url: str = FAKE_CASE_NOTES_URL,
        alerts_url: str = FAKE_ALERTS_URL,
        allowlist: list[str] | str | None = None,
    ) -> None:
        self.case_notes_url = case_notes_url.rstrip("/")
        self.alerts_url = alerts_url.rstrip("/")
        # None: no allow-list check (the default); otherwise DetailUrlNotAllowed as the real client raises it.
        self.allowlist = frozenset(parse_allowlist(allowlist)) if allowlist is not None else None
        self._lock = threading.Lock()
        self.case_notes_by_url: dict[str, dict[str, Any]] = {}
        self.case_notes_by_person: dict[str, list[dict[str, Any]]] = {}
        self.alerts_by_url: dict[str, dict[str, Any]] = {}
        self.alerts_by_person: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, Any]] = []
        self._errors: dict[str, list[Any]] = {}  # key -> [exception, remaining times or None]

    # --- seeding ----------------------------------------------------------------------------------------------
    def case_note_url(self, note: dict[str, Any]) -> str:
        return f"{self.case_notes_url}/case-notes/{note['offenderIdentifier']}/{note['caseNoteId']}"

    def alert_url(self, alert: dict[str, Any]) -> str:
        return f"{self.alerts_url}/alerts/{alert['alertUuid']}"

    def add_case_note(self, note: dict[str, Any], detail_url: str | None = None) -> str:
        """Hold ``note`` (replacing one with the same ``caseNoteId``); returns its detail URL."""
        url = detail_url or self.case_note_url(note)
        person = str(note["offenderIdentifier"]).upper()
        with self._lock:
            self._remove_case_note(note.get("caseNoteId"))
            stored = copy.deepcopy(note)
            self.case_notes_by_url[url] = stored
            self.case_notes_by_person.setdefault(person, []).append(stored)
        return url

    def add_alert(self, alert: dict[str, Any], detail_url: str | None = None) -> str:
        """Hold ``alert`` (replacing one with the same ``alertUuid``); returns its detail URL."""
        url = detail_url or self.alert_url(alert)
        person = str(alert["prisonNumber"]).upper()
        with self._lock:
            self._remove_alert(alert.get("alertUuid"))
            stored = copy.deepcopy(alert)
            self.alerts_by_url[url] = stored
            self.alerts_by_person.setdefault(person, []).append(stored)
        return url

    def remove_case_note(self, case_note_id: str) -> None:
        with self._lock:
            self._remove_case_note(case_note_id)

    def remove_alert(self, alert_uuid: str) -> None:
        with self._lock:
            self._remove_alert(alert_uuid)

    def _remove_case_note(self, case_note_id: Any) -> None:
        for url, held in list(self.case_notes_by_url.items()):
            if held.get("caseNoteId") == case_note_id:
                del self.case_notes_by_url[url]
        for notes in self.case_notes_by_person.values():
            notes[:] = [n for n in notes if n.get("caseNoteId") != case_note_id]

    def _remove_alert(self, alert_uuid: Any) -> None:
        for url, held in list(self.alerts_by_url.items()):
            if held.get("alertUuid") == alert_uuid:
                del self.alerts_by_url[url]
        for alerts in self.alerts_by_person.values():
            alerts[:] = [a for a in alerts if a.get("alertUuid") != alert_uuid]

    def raise_for(self, key: str, error: BaseException | type[BaseException], times: int | None = None) -> None:
        """Raise ``error`` on calls for ``key``: a detail URL (get_*), or a NOMS number (search/person alerts).
        ``times`` limits it to the next N such calls."""
        with self._lock:
            self._errors[key.upper() if "://" not in key else key] = [error, times]

    def clear_errors(self) -> None:
        with self._lock:
            self._errors.clear()

    def calls_to(self, method: str) -> list[Any]:
        """The arguments of every call to ``method`` (e.g. ``"get_case_note"``)."""
        with self._lock:
            return [arg for name, arg in self.calls if name == method]

    # --- SourceApi --------------------------------------------------------------------------------------------
    def get_case_note(self, detail_url: str) -> dict[str, Any] | None:
        self._enter("get_case_note", detail_url, detail_url)
        self._check_allowed(detail_url)
        with self._lock:
            note = self.case_notes_by_url.get(detail_url)
            return copy.deepcopy(note) if note is not None else None

    def get_alert(self, detail_url: str) -> dict[str, Any] | None:
        self._enter("get_alert", detail_url, detail_url)
        self._check_allowed(detail_url)
        with self._lock:
            alert = self.alerts_by_url.get(detail_url)
            return copy.deepcopy(alert) if alert is not None else None

    def search_case_notes(self, noms_number: str, type_subtypes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        noms = noms_number.upper()
        self._enter("search_case_notes", (noms, copy.deepcopy(type_subtypes)), noms)
        with self._lock:
            notes = [copy.deepcopy(n) for n in self.case_notes_by_person.get(noms, []) if _matches(n, type_subtypes)]
        # The real client's order: oldest first by occurrence, then creation, then id.
        return sorted(notes, key=lambda n: (str(n.get("occurrenceDateTime") or ""),
                                            str(n.get("creationDateTime") or ""), str(n.get("caseNoteId") or "")))

    def get_person_alerts(self, noms_number: str) -> list[dict[str, Any]]:
        noms = noms_number.upper()
        self._enter("get_person_alerts", noms, noms)
        with self._lock:
            return [copy.deepcopy(a) for a in self.alerts_by_person.get(noms, [])]

    # --- internals --------------------------------------------------------------------------------------------
    def _enter(self, method: str, args: Any, key: str) -> None:
        with self._lock:
            self.calls.append((method, args))
            entry = self._errors.get(key)
            if entry is None:
                return
            error, remaining = entry
            if remaining is not None:
                entry[1] = remaining - 1
                if entry[1] <= 0:
                    del self._errors[key]
        raise error

    def _check_allowed(self, detail_url: str) -> None:
        if self.allowlist is None:
            return
        try:
            origin = origin_of(detail_url)
        except NotAnOrigin as exc:
            raise DetailUrlNotAllowed(f"detailUrl is not an acceptable URL: {exc}") from None
        if origin not in self.allowlist:
            raise DetailUrlNotAllowed(f"detailUrl host not on the allow-list: {origin}")
