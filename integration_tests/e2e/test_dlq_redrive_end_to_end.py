"""Issue 4's promise, end to end on the local stack: a poison message and an upstream outage end visibly in the UI
(the outage as a failed consumer run with a readable reason and an ``hmpps/failure`` tag; the poison, already in the
DLQ with its reason, in no red run: red means act; the ``dlq_is_empty`` check for both) and in the dead-letter queue
(with their reasons), and
``redrive_dlq_job``, launched the way the UI launches it, brings them back once the cause is gone, with nothing lost:
every case note becomes exactly one contact, and the poison message stays parked in the DLQ (never readable, so
never sent back) rather than gone.

The stack's parts (moto, the stand-ins with their fault-injection admin API, the SQLite Delius of a generated world)
run in this process; ``dagster dev`` (webserver + daemon + run workers) runs as a subprocess with only the stack's
environment and short consumer settings.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
from sqlalchemy import func, select

from integration.clients.sqs import SqsEventsQueue
from integration.core.messages import FAILURE_REASON, REDRIVE_COUNT
from integration.delius import models as m
from integration.flows.redrive import peek
from integration.local import event_factory as ev
from integration.local.world import note_kind
from integration_tests.harness.ui import GraphQL, running_local_stack, wait_until

pytestmark = [pytest.mark.sqs, pytest.mark.daemon, pytest.mark.slow]

FAST = {
    "CONSUMER_RETRY_DELAYS": "1,1,1",  # three deliveries a few seconds apart, then the DLQ
    "CONSUMER_VISIBILITY_TIMEOUT": "30",
    "HEALTH_SENSOR_INTERVAL_SECONDS": "5",  # the health checks every 5 s instead of every minute
    "CONSUMER_IDLE_SECONDS": "5",  # a consumer run ends (and shows its colour) soon after the work
}
LIVE = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED"]
NOTES = 5
OUTAGE_REASON = "case notes API answered HTTP 503"


def case_note_urn(note: dict) -> str:
    return f"urn:uk:gov:hmpps:prison-case-note:{note['caseNoteId']}"


def queue_total(client, url: str) -> int:
    attrs = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    """One local stack with dagster dev for the tests of this module (they use different case notes)."""
    with running_local_stack(tmp_path_factory.mktemp("stack"), people=30, rate=0, extra_env=FAST) as (stack, url):
        yield stack, url


def notes_of_interest(stack) -> list[dict]:
    """Case notes of the generated world that must become contacts (people in Delius, notes of interest)."""
    matchable = {p.noms_number for p in stack.world.people if p.matchable}
    return [n for n in stack.world.case_notes if note_kind(n) == "of_interest" and n["offenderIdentifier"] in matchable]


def contact_count(stack, urns: set[str]) -> int:
    with stack.engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(m.contact).where(m.contact.c.external_reference.in_(urns))
        ).scalar_one()


def publish(stack, note: dict) -> None:
    stack.sqs_client.send_message(
        QueueUrl=stack.queue_url, MessageBody=ev.case_note_event_for(note, case_notes_url=stack.standins.case_notes_url)
    )


def assert_no_note_text_in_dagster(stack, notes: list[dict]) -> None:
    """The notes reached Delius, but their text is nowhere in Dagster's storage, compute logs or dagster dev's log."""
    texts = [n["text"].encode() for n in notes if len(n["text"].strip()) >= 20]
    assert texts
    leaks = [
        str(path)
        for path in stack.log.parent.rglob("*")  # the test's directory: Dagster's home, the log
        if path.is_file()
        and not path.is_relative_to(stack.options.state)  # (not the Delius database)
        and any(t in path.read_bytes() for t in texts)
    ]
    assert leaks == []


def test_poison_and_an_outage_end_in_the_dlq_and_the_redrive_brings_them_back(local_stack):
    stack, url = local_stack
    gql = GraphQL(url)
    sqs = stack.sqs_client
    queue = SqsEventsQueue(stack.queue_url, dlq_url=stack.dlq_url, client=sqs)
    diagnostics = stack.log_tail
    notes = notes_of_interest(stack)[:NOTES]
    assert len(notes) == NOTES
    urns = {case_note_urn(n) for n in notes}

    def contacts() -> int:
        return contact_count(stack, urns)

    # The Case Notes API goes down (the stand-ins' admin API, as an operator of the local stack would do it).
    admin = f"{stack.standins.case_notes_url}/__admin"
    requests.put(f"{admin}/faults/get_case_note", json={"status": 503}, timeout=10).raise_for_status()
    for note in notes:
        publish(stack, note)
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{not json")

    # Everything ends in the DLQ: the poison at once, the case notes after three attempts each.
    wait_until(
        lambda: queue_total(sqs, stack.dlq_url) == NOTES + 1 and queue_total(sqs, stack.queue_url) == 0,
        180,
        "the poison message and the case notes in the DLQ",
        diagnostics=diagnostics,
    )
    assert contacts() == 0
    dead = peek(queue, 20)
    assert Counter(row["failure_reason"] for row in dead) == {
        OUTAGE_REASON: NOTES,
        "unreadable message: body is not valid JSON": 1,
    }
    assert {row["attempts"] for row in dead if row["failure_reason"] == OUTAGE_REASON} == {"3"}

    # ... and in the UI: a failed run that says why (its step failure and its hmpps/failure tag), no run red for the
    # poison message (it is in the DLQ with its reason: the check shows it), and a failing dlq_is_empty check.
    failed = wait_until(
        lambda: gql.runs("prison_events_job", ["FAILURE"]),
        120,
        "the consumer run that met the outage to end red",
        diagnostics=diagnostics,
    )
    failures = [message for run in failed for message in gql.failure_messages(run["runId"])]
    assert any(f"{OUTAGE_REASON} -> dead-lettered" in message for message in failures), failures
    assert not any("unreadable message" in message for message in failures), failures
    tags = [tag for run in failed for tag in run["tags"] if tag["key"] == "hmpps/failure"]
    assert tags and all(OUTAGE_REASON in tag["value"] for tag in tags), tags
    flagged = wait_until(
        lambda: (
            lambda r: (
                r
                if r and r["status"] == "FAILED" and r["evaluation"]["description"].startswith(f"{NOTES + 1} messages")
                else None
            )
        )(gql.check("events_queue", "dlq_is_empty")),
        60,
        "dlq_is_empty to fail with the DLQ's count",
        diagnostics=diagnostics,
    )
    assert flagged["evaluation"]["severity"] == "ERROR"  # red until the DLQ is empty

    # The cause goes away; an operator redrives the DLQ from the UI (launchRun, as the launchpad does).
    requests.delete(f"{admin}/faults", timeout=10).raise_for_status()
    run_id = gql.launch_run("redrive_dlq_job")
    wait_until(
        lambda: gql.run_status(run_id) in ("SUCCESS", "FAILURE", "CANCELED"),
        120,
        "the redrive run",
        diagnostics=diagnostics,
    )
    assert gql.run_status(run_id) == "SUCCESS"

    # Nothing lost: every case note is one contact; the poison is parked in the DLQ (never readable: not sent back).
    wait_until(
        lambda: contacts() == NOTES and queue_total(sqs, stack.queue_url) == 0 and queue_total(sqs, stack.dlq_url) == 1,
        180,
        "the redriven case notes in Delius",
        diagnostics=diagnostics,
    )
    [poison] = sqs.receive_message(QueueUrl=stack.dlq_url, MessageAttributeNames=["All"], VisibilityTimeout=0)[
        "Messages"
    ]
    assert poison["Body"] == "{not json"
    assert REDRIVE_COUNT not in poison["MessageAttributes"]
    assert poison["MessageAttributes"][FAILURE_REASON]["StringValue"].startswith("unreadable message")
    with stack.engine.connect() as conn:
        assert sorted(
            conn.execute(
                select(m.contact.c.external_reference).where(m.contact.c.external_reference.in_(urns))
            ).scalars()
        ) == sorted(urns)
    wait_until(
        lambda: (
            (gql.check("events_queue", "dlq_is_empty") or {})
            .get("evaluation", {})
            .get("description", "")
            .startswith("1 message in the dead-letter queue")
        ),
        60,
        "dlq_is_empty to count the poison message only",
        diagnostics=diagnostics,
    )
    alive = gql.check("events_queue", "consumer_is_alive")
    assert alive["status"] == "SUCCEEDED", alive
    assert_no_note_text_in_dagster(stack, notes)


def test_pausing_the_sensor_leaves_messages_waiting_and_resuming_consumes_them(local_stack):
    """docs/operations.md §5: switch prison_events_sensor off (as its UI toggle does); new events wait on the queue
    and consumer_is_alive warns that consumption is paused; switch it on and they become contacts."""
    stack, url = local_stack
    gql = GraphQL(url)
    notes = notes_of_interest(stack)[NOTES : NOTES + 3]
    urns = {case_note_urn(n) for n in notes}
    assert gql.set_sensor_running("prison_events_sensor", False) == "STOPPED"
    try:
        # A tick already under way finishes, and a consumer run still alive sees the pause and exits.
        wait_until(
            lambda: not gql.runs("prison_events_job", LIVE),
            120,
            "consumer runs to exit on the pause",
            diagnostics=stack.log_tail,
        )
        time.sleep(1)
        for note in notes:
            publish(stack, note)
        paused = wait_until(
            lambda: (lambda r: r if r and r["status"] == "FAILED" else None)(
                gql.check("events_queue", "consumer_is_alive")
            ),
            60,
            "consumer_is_alive to show the pause",
            diagnostics=stack.log_tail,
        )
        assert paused["evaluation"]["severity"] == "WARN"
        assert paused["evaluation"]["description"].startswith("consumption is paused")
        assert queue_total(stack.sqs_client, stack.queue_url) == len(notes)  # waiting, not received
        assert contact_count(stack, urns) == 0
    finally:
        assert gql.set_sensor_running("prison_events_sensor", True) == "RUNNING"
    wait_until(
        lambda: contact_count(stack, urns) == len(notes) and queue_total(stack.sqs_client, stack.queue_url) == 0,
        120,
        "the waiting events to become contacts after resuming",
        diagnostics=stack.log_tail,
    )
    wait_until(
        lambda: (gql.check("events_queue", "consumer_is_alive") or {}).get("status") == "SUCCEEDED",
        60,
        "consumer_is_alive to pass again",
        diagnostics=stack.log_tail,
    )
