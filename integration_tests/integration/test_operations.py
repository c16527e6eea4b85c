"""Operator jobs on moto's SQS server: redrive the DLQ (with counts and parking) and peek at it without text."""

from __future__ import annotations

import dagster as dg
import pytest

from integration.core.messages import FAILURE_REASON, REDRIVE_COUNT, QueueMessage
from integration.defs.dlq.jobs import peek_dlq_job, redrive_dlq_job
from integration.flows.redrive import DLQ_WAIT_SECONDS, peek, redrive
from integration.local import event_factory as ev
from integration_tests.fixtures.dagster import queue_resource

pytestmark = [pytest.mark.sqs]


def dead_letter(sqs, body: str, reason: str, redrives: int = 0) -> None:
    queue = sqs.events_queue()
    attributes = {REDRIVE_COUNT: str(redrives)} if redrives else {}
    sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)
    [message] = queue.receive(1)
    queue.dead_letter(QueueMessage(message.message_id, message.receipt_handle, body, attributes=attributes), reason)


def resources(sqs):
    return {"events_queue": queue_resource(sqs)}


def test_redrive_moves_messages_back_counts_redrives_and_parks_repeat_offenders_and_poison(sqs):
    note_event = ev.case_note_event(
        "A1000AA", "0b0c8f6e-1111-4222-8333-444455556666", "GEN", "OSE", case_notes_url="http://127.0.0.1:9"
    )
    dead_letter(sqs, note_event, "HTTP 503 from case notes API")
    dead_letter(sqs, "not json", "unreadable message: body is not valid JSON")
    dead_letter(sqs, note_event, "HTTP 503 from case notes API", redrives=3)

    result = redrive_dlq_job.execute_in_process(resources=resources(sqs))

    assert result.success
    output = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"][0]
    metadata = output.event_specific_data.metadata
    counts = {k: v.value for k, v in metadata.items() if k in ("moved", "parked", "parked_never_readable", "failed")}
    assert counts == {"moved": 1, "parked": 2, "parked_never_readable": 1, "failed": 0}
    [back] = sqs.drain(sqs.queue_url)
    assert back["Body"] == note_event
    assert back["MessageAttributes"][REDRIVE_COUNT]["StringValue"] == "1"
    assert FAILURE_REASON not in back["MessageAttributes"]
    assert back["MessageAttributes"]["hmpps-last-failure-reason"]["StringValue"] == "HTTP 503 from case notes API"
    parked = sqs.drain(sqs.dlq_url)  # parked: still in the DLQ, never deleted
    assert sorted(m["Body"] for m in parked) == sorted([note_event, "not json"])
    reasons = {r.data["redrive"] for r in metadata["parked_messages"].value.records}
    assert reasons == {
        "parked: never readable (unreadable message: body is not valid JSON)",
        "parked: redriven 3 times already",
    }


def test_unreadable_messages_stay_parked_even_with_park_after_0(sqs):
    dead_letter(sqs, "{}", "unreadable message: no event type")
    dead_letter(sqs, ev.linkage_event("not-a-noms", "X100001"), "linkage event has an invalid NOMS number")
    assert redrive(sqs.events_queue(), park_after=0)["moved"] == []
    assert sqs.depth(sqs.dlq_url) == 2 and sqs.depth() == 0


def test_peek_shows_ids_types_and_reasons_but_no_message_text(sqs):
    dead_letter(
        sqs,
        ev.alert_event("A1000AA", "01954cfe-9f5a-7ea3-837b-a1770b389c5b", "VI", alerts_url="http://127.0.0.1:9"),
        "alert has no prisonCodeWhenCreated",
    )
    dead_letter(sqs, "PRIVATE free text that is not json", "unreadable message: body is not valid JSON")

    result = peek_dlq_job.execute_in_process(resources=resources(sqs))

    rows = result.output_for_node("peek_dead_letters")
    assert {r["event_type"] for r in rows} == {"person.alert.created", "(unreadable: body is not valid JSON)"}
    assert {r["source_id"] for r in rows} == {"01954cfe-9f5a-7ea3-837b-a1770b389c5b", None}
    assert {r["redrive"] for r in rows} == {
        "moves back to the queue",
        "parked: never readable (unreadable message: body is not valid JSON)",
    }
    assert "PRIVATE" not in repr(rows)
    output = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"][0]
    assert "PRIVATE" not in repr(output.event_specific_data.metadata)
    assert output.event_specific_data.metadata["never_readable"].value == 1
    assert sqs.depth(sqs.dlq_url) == 2  # peeking deletes nothing


def test_redrive_moves_exactly_max_messages_and_leaves_the_rest(sqs):
    for n in range(12):
        body = f'{{"eventType": "person.case-note.created", "n": {n}}}'  # readable, so redriven
        sqs.client.send_message(QueueUrl=sqs.dlq_url, MessageBody=body)
    config = {"ops": {"redrive_dead_letters": {"config": {"max_messages": 5}}}}

    with dg.instance_for_test() as instance:
        result = redrive_dlq_job.execute_in_process(run_config=config, resources=resources(sqs), instance=instance)
        lines = [r.user_message for r in instance.all_logs(result.run_id) if r.dagster_event is None]

    assert result.success
    output = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"][0]
    assert output.event_specific_data.metadata["moved"].value == 5
    assert sqs.depth(sqs.queue_url) == 5 and sqs.depth(sqs.dlq_url) == 7
    assert any(line.startswith("redrive moved=5 parked=0 failed=0 dlq_visible_before=12") for line in lines)


class FlakyDlq:
    """A DLQ that answers empty now and then although it holds messages (as SQS short polls may)."""

    dlq_url = "dlq"

    def __init__(self, replies: list[list[str]]):
        self.replies = list(replies)
        self.waits: list[int] = []
        self.sent: list[str] = []

    def receive_dlq(self, max_messages=10, *, wait_seconds=0, visibility_timeout=None):
        self.waits.append(wait_seconds)
        ids = self.replies.pop(0) if self.replies else []
        return [QueueMessage(i, f"handle-{i}", '{"eventType": "person.alert.created"}') for i in ids[:max_messages]]

    def send(self, body, attributes=None):
        self.sent.append(body)

    def delete(self, messages, *, queue_url=None):
        return []

    delete_dlq = delete

    def change_visibility(self, messages, seconds, *, queue_url=None):
        return []


def test_one_empty_reply_does_not_end_the_redrive_or_the_peek_two_in_a_row_do():
    queue = FlakyDlq([["a"], [], ["b"], [], []])
    assert redrive(queue, max_messages=0)["moved"] == ["a", "b"]
    assert queue.waits == [DLQ_WAIT_SECONDS] * 5 and DLQ_WAIT_SECONDS >= 1

    queue = FlakyDlq([[], ["a", "b"], [], ["c"], [], [], ["never"]])
    assert [row["sqs_message_id"] for row in peek(queue, 10)] == ["a", "b", "c"]
    assert len(queue.waits) == 6
