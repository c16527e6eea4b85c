"""Publishes realistic HMPPS domain events (SNS-wrapped, docs/upstream-apis.md §1.3) to an SQS queue, at a steady
rate.

Each ``step()`` is one logical change in the prison systems, made in the stand-in store *before* its event is sent
(as the real APIs publish after their commit):

=====================  ====================================================================================
action                 what happens
=====================  ====================================================================================
case_note_created      a new note of a type of interest, then ``person.case-note.created``
case_note_updated      an amendment added to an existing note, then ``person.case-note.updated``
case_note_filtered     a new note of a type of interest that a content filter drops (blank, TRN, ZZGHI, OCG)
not_of_interest        a new note the SNS filter lets through but the consumer drops (GEN HIS, TRANSFER TOL,
                       ALERT ...), then its created event
alert_created          a new alert (now and then DOCGM), then ``person.alert.created``
alert_inactive         an active alert made inactive, then ``person.alert.updated`` AND ``person.alert.inactive``
duplicate              a recently sent body sent again, unchanged (SNS/SQS at-least-once delivery)
linkage                an unlinked Delius offender gets its NOMS number (``UPDATE offender``), then
                       ``probation-case.prison-identifier.added``
case_note_moved        a note of interest moved to another prisoner (a correction in NOMIS), then
                       ``person.case-note.moved`` naming the new holder and ``previousNomsNumber``
prisoner_merged        two prison records merged: the one Delius knows (removed) into a prison-only one (retained).
                       Delius's NOMS number is replaced (``UPDATE offender``); the Case Notes API moves every note and
                       publishes ``person.case-note.moved`` for each; the Alerts API resyncs the retained prisoner's
                       alerts (new ids, no ``prisonCodeWhenCreated``, no per-alert event); then
                       ``probation-case.prison-identifier.updated``
poison                 (only with ``poison_rate`` > 0) a body no consumer can parse
=====================  ====================================================================================

Most events are about people Delius knows; some (``not_in_delius_share``) are about prisoners it does not. Choices
come from a seeded generator, so a seed gives the same sequence of actions, ids and records (timestamps and
``occurredAt`` are wall-clock). Log lines and ``step()`` results carry ids, types and counts only, never text.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from integration.core.events import CASE_NOTE_MOVED_EVENT_TYPE, LINKAGE_EVENT_TYPE, LINKAGE_UPDATED_EVENT_TYPE
from integration.local import event_factory
from integration.local.standins.store import SourceStore, deactivate_alert, london_now
from integration.local.world import (
    ALERT_WEIGHTS,
    NOT_OF_INTEREST_SNS,
    OCG_ALERT,
    TYPES_OF_INTEREST,
    Person,
    RecordFactory,
    World,
    seeded_uuid,
)

log = logging.getLogger(__name__)

DEFAULT_RATE = 2.0
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "case_note_created": 0.41,
    "case_note_updated": 0.12,
    "case_note_filtered": 0.04,
    "not_of_interest": 0.10,
    "alert_created": 0.14,
    "alert_inactive": 0.09,
    "duplicate": 0.05,
    "linkage": 0.01,
    "case_note_moved": 0.02,
    "prisoner_merged": 0.01,
}
ACTIONS = tuple(DEFAULT_WEIGHTS) + ("poison",)
POISON_KINDS = ("not_json", "not_an_object", "no_message", "message_not_json", "no_event_type")
FILTERED_KINDS = ("blank", "transit", "test", "ocg")


class Simulator:
    """Changes the stand-in store (and, for linkage, the Delius database) and publishes the matching events.

    ``client`` is a boto3 SQS client and ``queue_url`` the queue to send to; ``case_notes_url``/``alerts_url`` are
    the stand-ins' base URLs (for ``detailUrl``). ``engine`` (the Delius database) is needed for linkage events;
    without it no linkage happens. ``rate`` is logical events per second for ``run``. ``poison_rate`` is the chance
    per step of a poison message instead (0 = never). ``max_queue_depth`` pauses ``run`` while the queue holds
    that many messages (moto slows down with depth, docs/dagster-notes.md §8).
    """

    def __init__(
        self,
        world: World,
        store: SourceStore,
        client: Any,
        queue_url: str,
        *,
        case_notes_url: str,
        alerts_url: str,
        engine: Engine | None = None,
        rate: float = DEFAULT_RATE,
        seed: int | str = 0,
        poison_rate: float = 0.0,
        not_in_delius_share: float = 0.15,
        weights: Mapping[str, float] | None = None,
        max_queue_depth: int | None = None,
        clock: Callable[[], Any] = london_now,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if not 0 <= poison_rate <= 1:
            raise ValueError("poison_rate must be between 0 and 1")
        self.world = world
        self.store = store
        self.client = client
        self.queue_url = queue_url
        self.case_notes_url = case_notes_url.rstrip("/")
        self.alerts_url = alerts_url.rstrip("/")
        self.engine = engine
        self.rate = rate
        self.poison_rate = poison_rate
        self.not_in_delius_share = not_in_delius_share
        self.max_queue_depth = max_queue_depth
        self._weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(self._weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown actions: {sorted(unknown)}")
        self._clock = clock
        self._rng = random.Random(f"simulator:{seed}")
        self._factory = RecordFactory(self._rng, legacy_start=self._rng.randint(100_000_000, 900_000_000))
        self._lock = threading.Lock()
        self._recent: deque[tuple[str, str]] = deque(maxlen=50)  # (body, eventType) for duplicates
        self._counters: Counter[str] = Counter()
        self._actions: Counter[str] = Counter()
        self._event_types: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if engine is not None:
            world.sync_links(engine)
        # Indexes over the world (people by status; note ids of interest by person; active alert ids).
        self._matchable = [p for p in world.people if p.matchable]
        self._others = [p for p in world.people if not p.matchable]
        self._unlinked = [p for p in world.people if p.in_delius and not p.noms_linked]
        self._notes: dict[str, list[str]] = {}
        for note in world.case_notes:
            if (note["type"], note["subType"]) in TYPES_OF_INTEREST:
                self._notes.setdefault(note["offenderIdentifier"], []).append(note["caseNoteId"])
        self._active_alerts: list[str] = [a["alertUuid"] for a in world.alerts if a["isActive"]]

    # --- public -------------------------------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        """Make one change and publish its event(s). Returns ``{"action", "eventTypes", "messages", ...ids}``."""
        with self._lock:
            rng = self._rng
            if self.poison_rate and rng.random() < self.poison_rate:
                result = self._poison()
            else:
                action = rng.choices(list(self._weights), weights=list(self._weights.values()))[0]
                result = getattr(self, f"_{action}")()
                if result is None:  # not possible right now (nothing to update, nobody left to link...)
                    result = self._case_note_created()
            self._counters["steps"] += 1
            self._actions[result["action"]] += 1
            if result.get("inDelius") is False:
                self._counters["notInDelius"] += 1
            return result

    @property
    def counters(self) -> dict[str, Any]:
        """A snapshot: steps, messages sent, errors, events about people Delius cannot match, per action and per
        event type."""
        with self._lock:
            return {
                "steps": self._counters["steps"],
                "messages": self._counters["messages"],
                "errors": self._counters["errors"],
                "notInDelius": self._counters["notInDelius"],
                "pausedForDepth": self._counters["pausedForDepth"],
                "actions": dict(self._actions),
                "eventTypes": dict(self._event_types),
            }

    def run(self, stop_event: threading.Event) -> None:
        """``step()`` at ``rate`` per second until ``stop_event`` is set. Errors are counted and logged (type only)
        and the loop carries on after a short pause; it never bursts to catch up after a stall."""
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        depth_checked_at = 0.0
        failures = 0
        while not stop_event.is_set():
            if self.max_queue_depth is not None and time.monotonic() - depth_checked_at >= 2.0:
                depth_checked_at = time.monotonic()
                try:
                    if self._queue_depth() >= self.max_queue_depth:
                        with self._lock:
                            self._counters["pausedForDepth"] += 1
                        stop_event.wait(2.0)
                        next_at = time.monotonic()
                        continue
                except Exception as exc:  # noqa: BLE001 - the queue is unreachable: the step below will tell
                    log.debug("queue depth check failed: %s", type(exc).__name__)
            try:
                self.step()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a bulkhead: whatever one step raises, the loop goes on
                failures += 1
                with self._lock:
                    self._counters["errors"] += 1
                log.warning("simulator step failed (%s); carrying on", type(exc).__name__)
                stop_event.wait(min(10.0, 0.5 * 2 ** min(failures, 5)))
                next_at = time.monotonic()
                continue
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < -1.0:  # fell behind (slow queue): pick up the rate from now instead of bursting
                next_at = time.monotonic()
                delay = 0.0
            if delay > 0:
                stop_event.wait(delay)

    def start(self) -> threading.Thread:
        """Run in a daemon thread until ``stop()``."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="simulator", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- plumbing -------------------------------------------------------------------------------------------------
    def _send(self, body: str, event_type: str, *, remember: bool = True) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=body)
        self._counters["messages"] += 1
        self._event_types[event_type] += 1
        if remember:
            self._recent.append((body, event_type))

    def _queue_depth(self) -> int:
        attrs = self.client.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", 0))

    def _message_id(self) -> str:
        return seeded_uuid(self._rng)

    def _person(self) -> Person:
        rng = self._rng
        pool = (
            self._others
            if (self._others and (not self._matchable or rng.random() < self.not_in_delius_share))
            else self._matchable
        )
        return rng.choice(pool)

    def _now(self):
        return self._clock()

    def _publish_case_note(self, note: dict[str, Any], event_type: str) -> str:
        body = event_factory.case_note_event(
            note["offenderIdentifier"],
            note["caseNoteId"],
            note["type"],
            note["subType"],
            case_notes_url=self.case_notes_url,
            event_type=event_type,
            legacy_id=note.get("legacyId"),
            message_id=self._message_id(),
        )
        self._send(body, event_type)
        return body

    def _new_note(self, person: Person, key: tuple[str, str]) -> dict[str, Any]:
        now = self._now()
        occurred = now - timedelta(minutes=self._rng.randint(0, 240))
        return self._factory.case_note(
            person,
            *key,
            occurred=occurred,
            created=now,
            sensitive=key[0] in {"OMIC", "KA"} and self._rng.random() < 0.05,
        )

    def _note_result(
        self, action: str, note: dict[str, Any], person: Person, event_type: str, **extra: Any
    ) -> dict[str, Any]:
        return {
            "action": action,
            "eventTypes": [event_type],
            "messages": 1,
            "noms": person.noms_number,
            "inDelius": person.matchable,
            "caseNoteId": note["caseNoteId"],
            "type": note["type"],
            "subType": note["subType"],
            **extra,
        }

    # --- actions --------------------------------------------------------------------------------------------------
    def _case_note_created(self) -> dict[str, Any]:
        person = self._person()
        key = self._rng.choices(list(TYPES_OF_INTEREST), weights=list(TYPES_OF_INTEREST.values()))[0]
        note = self.store.put_case_note(self._new_note(person, key))
        self._notes.setdefault(person.noms_number, []).append(note["caseNoteId"])
        self._publish_case_note(note, "person.case-note.created")
        return self._note_result("case_note_created", note, person, "person.case-note.created")

    def _case_note_updated(self) -> dict[str, Any] | None:
        rng = self._rng
        for _ in range(5):
            person = self._person()
            ids = self._notes.get(person.noms_number)
            if not ids:
                continue
            note = self.store.get_case_note(rng.choice(ids))
            if note is None:  # removed through the admin API
                continue
            note = self.store.put_case_note(self._factory.amend(note, person, self._now()))
            self._publish_case_note(note, "person.case-note.updated")
            return self._note_result(
                "case_note_updated",
                note,
                person,
                "person.case-note.updated",
                amendments=len(note.get("amendments", [])),
            )
        return None

    def _case_note_filtered(self) -> dict[str, Any]:
        person = self._person()
        kind = self._rng.choice(FILTERED_KINDS)
        now = self._now()
        occurred = now - timedelta(minutes=self._rng.randint(0, 120))
        note = self.store.put_case_note(self._factory.filtered_note(person, kind, occurred=occurred, created=now))
        self._publish_case_note(note, "person.case-note.created")
        return self._note_result("case_note_filtered", note, person, "person.case-note.created", filter=kind)

    def _not_of_interest(self) -> dict[str, Any]:
        person = self._person()
        key = self._rng.choices(list(NOT_OF_INTEREST_SNS), weights=list(NOT_OF_INTEREST_SNS.values()))[0]
        note = self.store.put_case_note(self._new_note(person, key))
        self._publish_case_note(note, "person.case-note.created")
        return self._note_result("not_of_interest", note, person, "person.case-note.created")

    def _alert_created(self) -> dict[str, Any]:
        rng = self._rng
        person = self._person()
        code = (
            OCG_ALERT
            if rng.random() < 0.05
            else rng.choices(
                [c for c in ALERT_WEIGHTS if c != OCG_ALERT], [w for c, w in ALERT_WEIGHTS.items() if c != OCG_ALERT]
            )[0]
        )
        now = self._now()
        alert = self.store.put_alert(self._factory.alert(person, code, active_from=now.date(), created=now))
        self._active_alerts.append(alert["alertUuid"])
        body = event_factory.alert_event(
            alert["prisonNumber"],
            alert["alertUuid"],
            code,
            alerts_url=self.alerts_url,
            event_type="person.alert.created",
            message_id=self._message_id(),
        )
        self._send(body, "person.alert.created")
        return {
            "action": "alert_created",
            "eventTypes": ["person.alert.created"],
            "messages": 1,
            "noms": person.noms_number,
            "inDelius": person.matchable,
            "alertUuid": alert["alertUuid"],
            "alertCode": code,
        }

    def _alert_inactive(self) -> dict[str, Any] | None:
        rng = self._rng
        while self._active_alerts:
            alert_uuid = self._active_alerts.pop(rng.randrange(len(self._active_alerts)))
            alert = self.store.get_alert(alert_uuid)
            if alert is None or not alert.get("isActive"):
                continue
            person = self.world.person(alert["prisonNumber"])
            staff = self._factory.staff(person.prison)
            when = self._now().replace(microsecond=0)
            last = max(datetime.fromisoformat(v) for v in (alert.get("lastModifiedAt"), alert.get("createdAt")) if v)
            if when <= last:  # keep lastModifiedAt moving forward
                when = last + timedelta(seconds=1)
            alert = self.store.put_alert(
                deactivate_alert(alert, by=staff.username, by_display_name=staff.display, when=when)
            )
            code = alert["alertCode"]["code"]
            event_types = ["person.alert.updated", "person.alert.inactive"]
            for event_type in event_types:  # the Alerts API publishes both for one deactivation
                self._send(
                    event_factory.alert_event(
                        alert["prisonNumber"],
                        alert_uuid,
                        code,
                        alerts_url=self.alerts_url,
                        event_type=event_type,
                        message_id=self._message_id(),
                    ),
                    event_type,
                )
            return {
                "action": "alert_inactive",
                "eventTypes": event_types,
                "messages": 2,
                "noms": person.noms_number,
                "inDelius": person.matchable,
                "alertUuid": alert_uuid,
                "alertCode": code,
            }
        return None

    def _duplicate(self) -> dict[str, Any] | None:
        if not self._recent:
            return None
        body, event_type = self._recent[self._rng.randrange(len(self._recent))]
        self._send(body, event_type, remember=False)
        return {
            "action": "duplicate",
            "eventTypes": [event_type],
            "messages": 1,
            "messageId": json.loads(body)["MessageId"],
        }

    def _linkage(self) -> dict[str, Any] | None:
        if self.engine is None or not self._unlinked:
            return None
        rng = self._rng
        person = self._unlinked.pop(rng.randrange(len(self._unlinked)))
        self.world.link(self.engine, person)  # Delius first, then the event (as prison-identifier-and-delius)
        self._others.remove(person)
        self._matchable.append(person)
        booking = f"{rng.randint(10_000, 99_999)}{rng.choice('ABCDEFGH')}"
        assert person.crn is not None  # _unlinked holds only people in Delius
        body = event_factory.linkage_event(
            person.noms_number, person.crn, booking_number=booking, message_id=self._message_id()
        )
        self._send(body, LINKAGE_EVENT_TYPE)
        return {
            "action": "linkage",
            "eventTypes": [LINKAGE_EVENT_TYPE],
            "messages": 1,
            "noms": person.noms_number,
            "crn": person.crn,
            "inDelius": True,
        }

    def _case_note_moved(self) -> dict[str, Any] | None:
        rng = self._rng
        for _ in range(5):
            person = self._person()
            ids = self._notes.get(person.noms_number)
            if not ids:
                continue
            note_id = rng.choice(ids)
            target = self._person()
            if target.noms_number == person.noms_number or self.store.get_case_note(note_id) is None:
                continue
            [note] = self.store.move_case_notes(person.noms_number, target.noms_number, [note_id])
            ids.remove(note_id)
            self._notes.setdefault(target.noms_number, []).append(note_id)
            self._send(
                event_factory.case_note_moved_event(
                    note, person.noms_number, case_notes_url=self.case_notes_url, message_id=self._message_id()
                ),
                CASE_NOTE_MOVED_EVENT_TYPE,
            )
            return self._note_result(
                "case_note_moved",
                note,
                target,
                CASE_NOTE_MOVED_EVENT_TYPE,
                previousNoms=person.noms_number,
                previousInDelius=person.matchable,
            )
        return None

    def _prisoner_merged(self) -> dict[str, Any] | None:
        """The removed record is one Delius knows (linked); the retained one a prison-only record, whose NOMS number
        Delius takes. Nothing happens without a Delius engine or without such a pair."""
        rng = self._rng
        removed_pool = [p for p in self._matchable if self.store.case_notes(p.noms_number)]
        retained_pool = [p for p in self._others if not p.in_delius]
        if self.engine is None or not removed_pool or not retained_pool:
            return None
        removed = removed_pool[rng.randrange(len(removed_pool))]
        retained = retained_pool[rng.randrange(len(retained_pool))]
        crn = removed.crn
        assert crn is not None
        # Delius first: prison-identifier-and-delius replaces the NOMS number, then publishes (below)
        retained.crn, retained.manager_team, removed.crn = crn, removed.manager_team, None
        retained.noms_linked, removed.noms_linked = False, False
        self.world.link(self.engine, retained)
        self._matchable.remove(removed)
        self._others.remove(retained)
        self._matchable.append(retained)
        # The Case Notes API moves every note of the removed record, one event each
        moved = self.store.move_case_notes(removed.noms_number, retained.noms_number)
        self._notes.setdefault(retained.noms_number, []).extend(self._notes.pop(removed.noms_number, []))
        for note in moved:
            self._send(
                event_factory.case_note_moved_event(
                    note, removed.noms_number, case_notes_url=self.case_notes_url, message_id=self._message_id()
                ),
                CASE_NOTE_MOVED_EVENT_TYPE,
            )
        # The Alerts API resyncs the retained record's alerts from NOMIS (both records' alerts, new ids)
        previous = self.store.alerts(removed.noms_number) + self.store.alerts(retained.noms_number)
        self.store.resync_alerts(removed.noms_number, [])
        resynced = self.store.resync_alerts(retained.noms_number, previous)
        gone = {a["alertUuid"] for a in previous}
        self._active_alerts = [a for a in self._active_alerts if a not in gone]
        self._active_alerts += [a["alertUuid"] for a in resynced if a["isActive"]]
        self._send(
            event_factory.identifier_updated_event(
                retained.noms_number, crn, removed.noms_number, message_id=self._message_id()
            ),
            LINKAGE_UPDATED_EVENT_TYPE,
        )
        event_types = [CASE_NOTE_MOVED_EVENT_TYPE] * len(moved) + [LINKAGE_UPDATED_EVENT_TYPE]
        return {
            "action": "prisoner_merged",
            "eventTypes": event_types,
            "messages": len(event_types),
            "noms": retained.noms_number,
            "previousNoms": removed.noms_number,
            "crn": crn,
            "inDelius": True,
            "caseNotesMoved": len(moved),
            "alertsResynced": len(resynced),
        }

    def _poison(self) -> dict[str, Any]:
        kind = self._rng.choice(POISON_KINDS)
        message_id = self._message_id()
        body = {
            "not_json": "this is not JSON {",
            "not_an_object": json.dumps(["person.case-note.created"]),
            "no_message": json.dumps({"Type": "Notification", "MessageId": message_id}),
            "message_not_json": json.dumps(
                {"Type": "Notification", "MessageId": message_id, "Message": '{"eventType": ', "MessageAttributes": {}}
            ),
            "no_event_type": json.dumps(
                {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "Message": json.dumps({"version": 1}),
                    "MessageAttributes": {},
                }
            ),
        }[kind]
        self._send(body, "poison", remember=False)
        return {"action": "poison", "eventTypes": ["poison"], "messages": 1, "kind": kind}


__all__ = ["ACTIONS", "DEFAULT_RATE", "DEFAULT_WEIGHTS", "POISON_KINDS", "Simulator"]
