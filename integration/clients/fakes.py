"""In-memory fakes of the ports (core/ports.py), for the fast unit tier: ``FakeSourceApi`` and ``FakeEventsQueue``.

``FakeSourceApi``: an in-memory ``SourceApi`` for unit tests of flows, ops and assets (no HTTP).

Case notes and alerts are held by detail URL and by person; every call is recorded; an exception can be set for a
detail URL or a person (``raise_for``), optionally for the next N calls only. Its contract is the real client's
(``clients.hmpps``): a person's case notes come oldest first, complete or not at all (an error), alerts active and
inactive; what the real client raises on a timeout, a hung API or a short read is an ``UpstreamError`` that
``raise_for`` can stand in for.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.messages import (
    ATTEMPTS,
    FAILED_AT,
    FAILED_BY,
    FAILURE_REASON,
    MAX_ATTRIBUTE_LENGTH,
    QueueDepth,
    QueueMessage,
)
from ..core.ports import DetailUrlNotAllowed, SourceApi
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
        return sorted(
            notes,
            key=lambda n: (
                str(n.get("occurrenceDateTime") or ""),
                str(n.get("creationDateTime") or ""),
                str(n.get("caseNoteId") or ""),
            ),
        )

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


class FakeEventsQueue:
    """An in-memory ``EventsQueue`` (core/ports.py) with SQS's semantics where the flows depend on them: receipt
    handles per delivery, visibility timeouts, receive counts, a dead-letter queue. Thread-safe; time is a clock
    the test may move (``clock``)."""

    def __init__(
        self, queue_url: str = "fake://events", dlq_url: str = "fake://events-dlq", *, clock: Any = None
    ) -> None:
        import time as _time

        self.queue_url = queue_url
        self._dlq_url = dlq_url
        self._clock = clock or _time.time
        self._lock = threading.Lock()
        self._queues: dict[str, dict[str, dict[str, Any]]] = {queue_url: {}, dlq_url: {}}
        self._ids = 0

    @property
    def dlq_url(self) -> str:
        return self._dlq_url

    # --- seeding and inspection -------------------------------------------------------------------------------
    def messages(self, queue_url: str | None = None) -> list[QueueMessage]:
        """Every message held (visible or not), without changing anything."""
        with self._lock:
            return [self._as_message(m, "") for m in self._queues[queue_url or self.queue_url].values()]

    # --- EventsQueue ------------------------------------------------------------------------------------------
    def send(
        self,
        body: str,
        attributes: Mapping[str, str] | None = None,
        *,
        delay_seconds: int = 0,
        queue_url: str | None = None,
    ) -> str:
        with self._lock:
            self._ids += 1
            message_id = f"fake-{self._ids}"
            self._queues[queue_url or self.queue_url][message_id] = {
                "id": message_id,
                "body": body,
                "attributes": dict(attributes or {}),
                "receives": 0,
                "visible_at": self._clock() + delay_seconds,
                "handle": None,
                "sent": self._clock(),
            }
            return message_id

    def receive(
        self,
        max_messages: int = 10,
        *,
        wait_seconds: int = 0,
        visibility_timeout: int | None = None,
        queue_url: str | None = None,
    ) -> list[QueueMessage]:
        now = self._clock()
        taken: list[QueueMessage] = []
        with self._lock:
            for held in self._queues[queue_url or self.queue_url].values():
                if len(taken) >= max(1, min(10, max_messages)):
                    break
                if held["visible_at"] > now:
                    continue
                held["receives"] += 1
                held["handle"] = f"{held['id']}#{held['receives']}"
                held["visible_at"] = now + (30 if visibility_timeout is None else visibility_timeout)
                taken.append(self._as_message(held, held["handle"], received_at=now))
        return taken

    def delete(self, messages: Sequence[tuple[str, str]], *, queue_url: str | None = None) -> list[str]:
        failed = []
        with self._lock:
            held = self._queues[queue_url or self.queue_url]
            for message_id, handle in messages:
                if message_id in held and held[message_id]["handle"] == handle:
                    del held[message_id]
                else:
                    failed.append(message_id)
        return failed

    def change_visibility(
        self, messages: Sequence[tuple[str, str]], seconds: int, *, queue_url: str | None = None
    ) -> list[str]:
        failed = []
        with self._lock:
            held = self._queues[queue_url or self.queue_url]
            for message_id, handle in messages:
                if message_id in held and held[message_id]["handle"] == handle:
                    held[message_id]["visible_at"] = self._clock() + seconds
                else:
                    failed.append(message_id)
        return failed

    def depth(self, queue_url: str | None = None) -> QueueDepth:
        now = self._clock()
        with self._lock:
            held = list(self._queues[queue_url or self.queue_url].values())
        visible = sum(1 for m in held if m["visible_at"] <= now)
        in_flight = sum(1 for m in held if m["visible_at"] > now and m["receives"] > 0)
        return QueueDepth(visible, in_flight, len(held) - visible - in_flight)

    def dead_letter(
        self, message: QueueMessage, reason: str, *, failed_by: str | None = None, body: str | None = None
    ) -> None:
        attributes = dict(message.attributes)
        attributes.update(
            {FAILURE_REASON: reason[:MAX_ATTRIBUTE_LENGTH], ATTEMPTS: str(message.receive_count), FAILED_AT: "fake"}
        )
        if failed_by:
            attributes[FAILED_BY] = failed_by
        self.send(body if body is not None else message.body, attributes, queue_url=self.dlq_url)
        self.delete([message.handle])

    def receive_dlq(
        self, max_messages: int = 10, *, wait_seconds: int = 0, visibility_timeout: int = 30
    ) -> list[QueueMessage]:
        return self.receive(
            max_messages, wait_seconds=wait_seconds, visibility_timeout=visibility_timeout, queue_url=self.dlq_url
        )

    def delete_dlq(self, messages: Sequence[tuple[str, str]]) -> list[str]:
        return self.delete(messages, queue_url=self.dlq_url)

    def dlq_depth(self) -> QueueDepth:
        return self.depth(self.dlq_url)

    @staticmethod
    def _as_message(held: dict[str, Any], handle: str, received_at: float = 0.0) -> QueueMessage:
        return QueueMessage(
            held["id"],
            handle,
            held["body"],
            max(1, held["receives"]),
            int(held["sent"] * 1000),
            dict(held["attributes"]),
            received_at,
        )
