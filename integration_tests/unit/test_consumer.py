"""The long-lived consumer's decisions (core/consumer.py) and its loop (flows/consume.py) on fakes: when the sensor
starts a run, when a run stops receiving, what happens to linkage messages in custody, and what makes a run red."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from integration.clients.fakes import FakeEventsQueue, FakeSourceApi
from integration.core.consumer import (
    IDLE,
    LIFETIME,
    PAUSED,
    STOPPED,
    Custody,
    LiveConsumer,
    LoopSettings,
    SupervisionSettings,
    consumers_to_start,
    exit_reason,
    linkage_run_key,
    plan_custody,
)
from integration.core.messages import FAILURE_REASON, QueueDepth
from integration.core.outcomes import Action, MergeOutcome
from integration.flows.batch import DEAD_LETTERED, RETRY, BatchSettings, EventOutcome
from integration.flows.consume import HANDED_OVER, ConsumeSettings, classify, consume
from integration.local import event_factory as ev
from integration.local.standins.store import make_case_note

NOW = 1_800_000_000.0
S = SupervisionSettings(max_runs=2, scale_up_backlog=1000, scale_up_after=15, handover_seconds=30)


def depth(visible: int, in_flight: int = 0) -> QueueDepth:
    return QueueDepth(visible, in_flight, 0)


# --------------------------------------------------------------------------------------------- supervision


def test_no_visible_work_starts_nothing_and_waiting_work_starts_one_consumer():
    assert consumers_to_start(depth(0, 40), [], 0, S, now=NOW, deep_since=None).start == 0
    assert consumers_to_start(depth(3), [], 0, S, now=NOW, deep_since=None).start == 1


def test_a_lasting_consumer_or_a_recent_request_means_no_second_one_for_a_shallow_queue():
    lasting = [LiveConsumer("a", until=NOW + 600)]
    assert consumers_to_start(depth(50), lasting, 0, S, now=NOW, deep_since=None).start == 0
    assert (
        consumers_to_start(depth(50), [LiveConsumer("queued", until=None)], 0, S, now=NOW, deep_since=None).start == 0
    )
    assert consumers_to_start(depth(50), [], 1, S, now=NOW, deep_since=None).start == 0  # requested, not yet stored


def test_a_retiring_consumer_gets_a_successor_within_the_cap():
    retiring = [LiveConsumer("a", until=NOW + 20)]
    assert consumers_to_start(depth(5), retiring, 0, S, now=NOW, deep_since=None).start == 1
    both_retiring = [LiveConsumer("a", until=NOW + 20), LiveConsumer("b", until=NOW + 25)]
    assert consumers_to_start(depth(5), both_retiring, 0, S, now=NOW, deep_since=None).start == 0  # the cap


def test_a_deep_backlog_gets_a_second_consumer_once_it_has_lasted_and_never_a_third():
    one = [LiveConsumer("a", until=NOW + 600)]
    first = consumers_to_start(depth(5000), one, 0, S, now=NOW, deep_since=None)
    assert first.start == 0 and first.deep_since == NOW
    later = consumers_to_start(depth(5000), one, 0, S, now=NOW + 16, deep_since=first.deep_since)
    assert later.start == 1
    two = one + [LiveConsumer("b", until=NOW + 900)]
    assert consumers_to_start(depth(9000), two, 0, S, now=NOW + 60, deep_since=NOW).start == 0
    assert consumers_to_start(depth(10), one, 0, S, now=NOW + 60, deep_since=NOW).deep_since is None


# --------------------------------------------------------------------------------------------- a run's loop


def test_a_consumer_stops_receiving_after_its_lifetime_when_idle_when_paused_or_asked():
    s = LoopSettings(lifetime_seconds=900, idle_seconds=60)
    assert exit_reason(s, now=NOW + 100, started=NOW, last_received=NOW + 90) is None
    assert exit_reason(s, now=NOW + 900, started=NOW, last_received=NOW + 899) == LIFETIME
    assert exit_reason(s, now=NOW + 200, started=NOW, last_received=NOW + 140) == IDLE
    assert exit_reason(s, now=NOW + 10, started=NOW, last_received=NOW, paused=True) == PAUSED
    assert exit_reason(s, now=NOW + 10, started=NOW, last_received=NOW, paused=True, stop_requested=True) == STOPPED


# --------------------------------------------------------------------------------------------- linkage custody


def test_custody_deletes_settled_messages_extends_expiring_leases_and_forgets_expired_ones():
    settled = Custody("m1", "h1", linkage_run_key("m1"), NOW + 3000)
    expiring = Custody("m2", "h2", linkage_run_key("m2"), NOW + 60)
    expired = Custody("m3", "h3", linkage_run_key("m3"), NOW - 1)
    waiting = Custody("m4", "h4", linkage_run_key("m4"), NOW + 3000)
    plan = plan_custody(
        [settled, expiring, expired, waiting],
        {settled.run_key},
        now=NOW,
        extend_margin=120,
        per_tick=10,
        max_pending=10,
        pending_runs=3,
    )
    assert (plan.delete, plan.extend, plan.forget, plan.keep) == ([settled], [expiring], [expired], [waiting])
    assert plan.may_request == 10 - 3 - 2  # back-pressure: runs waiting and requests still in custody


def test_new_backfills_are_capped_per_tick_and_stop_while_the_run_queue_is_full():
    assert (
        plan_custody([], set(), now=NOW, extend_margin=120, per_tick=5, max_pending=10, pending_runs=0).may_request == 5
    )
    assert (
        plan_custody([], set(), now=NOW, extend_margin=120, per_tick=5, max_pending=10, pending_runs=12).may_request
        == 0
    )


def test_the_backfill_run_key_is_the_same_for_every_delivery_of_a_linkage_message():
    assert linkage_run_key("abc") == linkage_run_key("abc") != linkage_run_key("abd")
    assert Custody.from_json(Custody("m", "h", "k", NOW).as_json()) == Custody("m", "h", "k", NOW)


# --------------------------------------------------------------------------------------------- red means act


def test_only_failures_an_operator_must_act_on_make_a_run_red():
    def outcome(action, disposition=None, retryable=False):
        return EventOutcome("m", action=action, disposition=disposition, retryable=retryable)

    assert classify(outcome("created", "acked")) is None
    assert classify(outcome("failed", DEAD_LETTERED, retryable=False)) == "data"  # in the DLQ with a reason
    assert classify(outcome("failed", DEAD_LETTERED, retryable=True)) == "action"  # an outage used its attempts
    assert classify(outcome("failed", RETRY, retryable=True)) == "action"  # left for a retry
    assert classify(outcome("skipped", "lease lost (will be redelivered)")) == "action"


# --------------------------------------------------------------------------------------------- the loop on fakes


class WaitingQueue(FakeEventsQueue):
    """The fake queue, with a long poll's pause when nothing is visible (the fake returns at once)."""

    def receive(self, max_messages=10, *, wait_seconds=0, visibility_timeout=None, queue_url=None):
        messages = super().receive(
            max_messages, wait_seconds=wait_seconds, visibility_timeout=visibility_timeout, queue_url=queue_url
        )
        if not messages:
            time.sleep(0.02)
        return messages


class Store:
    def __init__(self):
        self.merged = []
        self.lock = threading.Lock()

    def merge(self, drafts):
        with self.lock:
            self.merged += drafts
            return [
                MergeOutcome(urn=d.urn, action=Action.CREATED, contact_id=len(self.merged), crn="X100001")
                for d in drafts
            ]


class Hooks:
    def __init__(self, paused=False):
        self.is_paused = paused
        self.hand_overs = []
        self.reports = []

    def paused(self):
        return self.is_paused

    def hand_over_linkage(self, message, noms_number, visible_until, event_type):
        self.hand_overs.append((message.message_id, noms_number, visible_until))

    def report(self, chunk):
        self.reports.append(chunk)


SETTINGS = ConsumeSettings(
    batch=BatchSettings(fetch_workers=4, visibility_timeout=30, lease_margin=5),
    loop=LoopSettings(lifetime_seconds=60, idle_seconds=0.5),
    receivers=2,
    wait_seconds=0,
    max_batch=50,
    report_events=4,
    report_seconds=60,
    pause_check_seconds=0.1,
)


@pytest.fixture
def world():
    source, queue = FakeSourceApi(), WaitingQueue()
    notes = [
        make_case_note("A1000AA", type="KA", sub_type="KS", case_note_id=f"00000000-0000-4000-8000-00000000000{n}")
        for n in range(6)
    ]
    for note in notes:
        source.add_case_note(note)
        queue.send(ev.case_note_event_for(note, case_notes_url=source.case_notes_url))
    return source, queue, notes


def test_a_consumer_works_until_idle_dead_letters_poison_hands_over_linkage_and_reports_in_chunks(world):
    source, queue, notes = world
    queue.send("{not json")
    linkage = queue.send(ev.linkage_event("A2000BB", "X200002"))
    store, hooks = Store(), Hooks()

    result = consume(queue, source=source, store=store, hooks=hooks, settings=SETTINGS, run_id="run-1")

    assert result.exit_reason == IDLE and not result.failed and result.received == 8
    assert len(store.merged) == 6
    outcomes = [o for chunk in hooks.reports for o in chunk.outcomes]
    assert sorted(o.action for o in outcomes) == ["created"] * 6 + ["failed", "linkage"]
    assert max(len(chunk.outcomes) for chunk in hooks.reports) <= 4  # capped reports
    assert sum(chunk.counts["created"] for chunk in hooks.reports) == 6
    [(message_id, noms, until)] = hooks.hand_overs
    assert (message_id, noms) == (linkage, "A2000BB") and until > time.time() + 3000
    [handed] = [o for o in outcomes if o.action == "linkage"]
    assert handed.disposition == HANDED_OVER
    # The linkage message is held by its long lease (the sensor deletes it); the poison is in the DLQ with a reason.
    assert queue.depth() == QueueDepth(0, 1, 0)
    [dead] = queue.messages(queue.dlq_url)
    assert dead.attributes[FAILURE_REASON].startswith("unreadable message")
    assert result.data_failures and not result.needs_action


def test_the_chunk_reports_count_the_characters_replaced_in_their_records(world):
    source, queue, _ = world
    for text in ("nul\x00here", "lone \ud800 surrogate and \x00"):
        note = make_case_note("A1000AA", type="KA", sub_type="KS", text=text)
        source.add_case_note(note)
        queue.send(ev.case_note_event_for(note, case_notes_url=source.case_notes_url))
    hooks = Hooks()

    consume(queue, source=source, store=Store(), hooks=hooks, settings=SETTINGS)

    outcomes = [o for chunk in hooks.reports for o in chunk.outcomes]
    assert sorted(o.replaced_characters for o in outcomes) == [0] * 6 + [1, 2]
    assert sum(chunk.replaced_characters for chunk in hooks.reports) == 3


def test_a_batch_holds_at_most_max_batch_bytes_of_bodies_and_nothing_is_left_behind():
    source, queue = FakeSourceApi(), WaitingQueue()
    for _ in range(10):
        note = make_case_note("A1000AA", type="KA", sub_type="KS")
        source.add_case_note(note)
        body = json.loads(ev.case_note_event_for(note, case_notes_url=source.case_notes_url))
        body["Padding"] = "x" * 10_000  # an SNS envelope field the integration does not read
        queue.send(json.dumps(body))
    store = BatchesStore()
    settings = dataclasses.replace(SETTINGS, max_batch_bytes=25_000)

    result = consume(queue, source=source, store=store, hooks=Hooks(), settings=settings)

    assert result.received == 10 and sum(store.batches) == 10
    assert max(store.batches) <= 3  # a batch stops taking once 25,000 characters are in it
    assert queue.depth() == QueueDepth(0, 0, 0)


class BatchesStore(Store):
    def __init__(self):
        super().__init__()
        self.batches = []

    def merge(self, drafts):
        self.batches.append(len(drafts))
        return super().merge(drafts)


def test_a_consumer_paused_before_it_starts_receives_nothing(world):
    source, queue, _ = world
    result = consume(queue, source=source, store=Store(), hooks=Hooks(paused=True), settings=SETTINGS)
    assert result.exit_reason == PAUSED and result.received == 0
    assert queue.depth().visible == 6


def test_a_consumer_that_is_paused_while_it_works_stops_receiving_and_finishes_what_it_holds(world):
    source, queue, notes = world
    hooks = Hooks()
    store = Store()

    class PausingStore(Store):
        def merge(self, drafts):
            hooks.is_paused = True  # the operator stops the sensor while the first batch merges
            return store.merge(drafts)

    result = consume(queue, source=source, store=PausingStore(), hooks=hooks, settings=SETTINGS)
    assert result.exit_reason == PAUSED
    done = sum(len(chunk.outcomes) for chunk in hooks.reports)
    assert done == result.received == len(store.merged)  # everything received was processed
    assert queue.depth().visible == 6 - done and queue.depth().in_flight == 0


def test_an_outage_leaves_events_for_retry_and_makes_the_run_fail_with_the_reason(world):
    from integration.core.ports import UpstreamError

    source, queue, notes = world
    for note in notes:
        source.raise_for(source.case_note_url(note), UpstreamError("case notes API answered HTTP 503", 503))
    result = consume(queue, source=source, store=Store(), hooks=Hooks(), settings=SETTINGS)
    assert result.failed
    assert result.failure_summary() == "6 x case notes API answered HTTP 503 -> retry later"


# --------------------------------------------------------------------------------------------- docs agree with the code


def test_the_readme_lists_every_consumer_setting_with_the_default_of_the_code():
    import re
    from pathlib import Path

    from integration.resources import ConsumerSettings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    documented = {
        name: default.strip().strip("`")
        for name, default in re.findall(r"^\| `CONSUMER_([A-Z_]+)` \|[^|]*\| ([^|]+) \|$", readme, flags=re.MULTILINE)
    }
    defaults = {name.upper(): str(field.default) for name, field in ConsumerSettings.model_fields.items()}
    assert documented == defaults


def test_the_protocol_document_quotes_the_defaults_of_the_code():
    from pathlib import Path

    from integration.resources import ConsumerSettings

    doc = (Path(__file__).resolve().parents[2] / "docs" / "queue-protocol.md").read_text(encoding="utf-8")
    s = ConsumerSettings()
    for name, shown in [
        ("RECEIVERS", s.receivers),
        ("WAIT_SECONDS", f"{s.wait_seconds} s"),
        ("MAX_BATCH", f"{s.max_batch:,}"),
        ("VISIBILITY_TIMEOUT", f"{s.visibility_timeout} s"),
        ("FETCH_WORKERS", s.fetch_workers),
        ("MERGE_CHUNK", s.merge_chunk),
        ("REPORT_EVENTS", s.report_events),
        ("REPORT_SECONDS", f"{s.report_seconds} s"),
        ("LIFETIME_SECONDS", s.lifetime_seconds),
        ("IDLE_SECONDS", s.idle_seconds),
        ("MAX_RUNS", s.max_runs),
        ("SCALE_UP_BACKLOG", f"{s.scale_up_backlog:,}"),
        ("LINKAGE_VISIBILITY_TIMEOUT", f"{s.linkage_visibility_timeout:,} s"),
        ("MAX_BACKFILLS_PER_TICK", s.max_backfills_per_tick),
        ("MAX_PENDING_BACKFILLS", s.max_pending_backfills),
        ("MAX_ATTEMPTS", s.max_attempts),
    ]:
        assert f"`CONSUMER_{name}` ({shown}" in doc, name


def test_the_daemon_reloads_its_code_location_and_pings_its_code_server_at_the_configured_intervals():
    import os
    import subprocess
    import sys

    def daemon(heartbeat: str | None, code: str = IN_THE_DAEMON, **extra: str) -> subprocess.Popen:
        names = ("DAEMON_CODE_SERVER_HEARTBEAT_SECONDS", "DAEMON_CODE_RELOAD_SECONDS", "DAGSTER_IS_DEV_CLI")
        env = {k: v for k, v in os.environ.items() if k not in names}
        env.update(extra)
        if heartbeat is not None:
            env["DAEMON_CODE_SERVER_HEARTBEAT_SECONDS"] = heartbeat
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)

    # The interpreters start at once (each imports Dagster: seconds), then each is read.
    started = [
        daemon(None),
        daemon("2"),
        daemon("60"),
        daemon(None, DAGSTER_IS_DEV_CLI="1"),
        daemon(None, code=OUTSIDE_THE_DAEMON),
    ]
    seen = []
    for proc in started:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        seen.append(out.strip())
    # (code reload seconds, heartbeat seconds): 900 and 5 by default; the heartbeat never more than a quarter of the
    # code server's 20 s without a ping; `dagster dev` keeps Dagster's own minute and second, and so does every
    # process but the daemon.
    assert seen == ["900 5.0", "900 2.0", "900 5.0", "60 1.0", "1.0"]


IN_THE_DAEMON = (
    "import dagster._daemon.controller as d, dagster._grpc.client as c; "
    "print(d.RELOAD_WORKSPACE_INTERVAL, float(c.CLIENT_HEARTBEAT_INTERVAL))"
)
OUTSIDE_THE_DAEMON = "import dagster._grpc.client as c; print(float(c.CLIENT_HEARTBEAT_INTERVAL))"


def test_the_queue_sensor_looks_every_consumer_tick_seconds(monkeypatch):
    from integration.defs.events import sensors

    assert sensors.prison_events_sensor.minimum_interval_seconds == sensors.INTERVAL_SECONDS == 10
    monkeypatch.setenv("CONSUMER_TICK_SECONDS", "5")
    assert sensors._tick_seconds() == 5
    monkeypatch.setenv("CONSUMER_TICK_SECONDS", "0")
    assert sensors._tick_seconds() == 1  # raised to the minimum, logged
