"""Operator jobs on moto's SQS server: redrive the DLQ (with counts and parking) and peek at it without text."""

from __future__ import annotations

import pytest

from integration.clients.queue import FAILURE_REASON, REDRIVE_COUNT, QueueMessage
from integration.local import event_factory as ev
from integration.operations import peek_dlq_job, redrive_dlq_job
from integration.resources import EventsQueueResource

pytestmark = [pytest.mark.sqs]


def dead_letter(sqs, body: str, reason: str, redrives: int = 0) -> None:
    queue = sqs.events_queue()
    attributes = {REDRIVE_COUNT: str(redrives)} if redrives else {}
    sqs.client.send_message(QueueUrl=sqs.queue_url, MessageBody=body)
    [message] = queue.receive(1)
    queue.dead_letter(QueueMessage(message.message_id, message.receipt_handle, body, attributes=attributes), reason)


def resources(sqs):
    return {"events_queue": EventsQueueResource(queue_url=sqs.queue_url, dlq_url=sqs.dlq_url,
                                                endpoint_url=sqs.endpoint_url)}


def test_redrive_moves_messages_back_counts_redrives_and_parks_repeat_offenders(sqs):
    note_event = ev.case_note_event("A1000AA", "0b0c8f6e-1111-4222-8333-444455556666", "GEN", "OSE",
                                    case_notes_url="http://127.0.0.1:9")
    dead_letter(sqs, note_event, "HTTP 503 from case notes API")
    dead_letter(sqs, "not json", "unreadable message: body is not valid JSON")
    dead_letter(sqs, note_event, "HTTP 503 from case notes API", redrives=3)

    result = redrive_dlq_job.execute_in_process(resources=resources(sqs))

    assert result.success
    metadata = result.get_step_success_events()[0]
    output = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"][0]
    counts = {k: v.value for k, v in output.event_specific_data.metadata.items() if k in ("moved", "parked", "failed")}
    assert counts == {"moved": 2, "parked": 1, "failed": 0} and metadata
    back = sqs.drain(sqs.queue_url)
    assert sorted(m["Body"] for m in back) == sorted([note_event, "not json"])
    assert {m["MessageAttributes"][REDRIVE_COUNT]["StringValue"] for m in back} == {"1"}
    assert all(FAILURE_REASON not in m["MessageAttributes"] for m in back)
    assert {m["MessageAttributes"]["hmpps-last-failure-reason"]["StringValue"] for m in back} == {
        "HTTP 503 from case notes API", "unreadable message: body is not valid JSON"}
    [parked] = sqs.drain(sqs.dlq_url)            # parked: still in the DLQ, never deleted
    assert parked["MessageAttributes"][REDRIVE_COUNT]["StringValue"] == "3"


def test_peek_shows_ids_types_and_reasons_but_no_message_text(sqs):
    dead_letter(sqs, ev.alert_event("A1000AA", "01954cfe-9f5a-7ea3-837b-a1770b389c5b", "VI",
                                    alerts_url="http://127.0.0.1:9"), "alert has no prisonCodeWhenCreated")
    dead_letter(sqs, "PRIVATE free text that is not json", "unreadable message: body is not valid JSON")

    result = peek_dlq_job.execute_in_process(resources=resources(sqs))

    rows = result.output_for_node("peek_dead_letters")
    assert {r["event_type"] for r in rows} == {"person.alert.created", "(unreadable: body is not valid JSON)"}
    assert {r["source_id"] for r in rows} == {"01954cfe-9f5a-7ea3-837b-a1770b389c5b", None}
    assert "PRIVATE" not in repr(rows)
    output = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"][0]
    assert "PRIVATE" not in repr(output.event_specific_data.metadata)
    assert sqs.depth(sqs.dlq_url) == 2            # peeking deletes nothing
