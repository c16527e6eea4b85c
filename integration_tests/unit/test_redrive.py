"""The DLQ redrive (flows/redrive.py) on the fake queue: it moves only what was in the DLQ when it began."""

from __future__ import annotations

from integration.clients.fakes import FakeEventsQueue
from integration.core.messages import FAILURE_REASON, REDRIVE_COUNT
from integration.flows.redrive import arrived_after, redrive
from integration.local import event_factory as ev


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FailingAgainQueue(FakeEventsQueue):
    """A consumer as fast as can be: every message redriven into the events queue fails again at once and is back in
    the DLQ, a second later, while the redrive is still reading the DLQ (once ``failing`` is set)."""

    failing = False

    def send(self, body, attributes=None, *, delay_seconds=0, queue_url=None):
        message_id = super().send(body, attributes, delay_seconds=delay_seconds, queue_url=queue_url)
        if self.failing and (queue_url or self.queue_url) == self.queue_url:
            self._clock.now += 1
            [message] = [m for m in self.receive(10) if m.message_id == message_id]
            self.dead_letter(message, "HTTP 503 from case notes API")
        return message_id


def dead_letter(queue: FakeEventsQueue, body: str, reason: str) -> None:
    queue.send(body)
    [message] = queue.receive(1)
    queue.dead_letter(message, reason)


def event(n: int) -> str:
    return ev.case_note_event(
        "A1000AA", f"00000000-0000-4000-8000-00000000000{n}", "KA", "KS", case_notes_url="http://127.0.0.1:9"
    )


def test_a_message_dead_lettered_while_the_redrive_runs_is_left_for_the_next_one():
    clock = Clock()
    queue = FailingAgainQueue(clock=clock)
    dead_letter(queue, event(1), "HTTP 503 from case notes API")
    queue.failing = True
    clock.now += 60  # the operator redrives a minute later

    result = redrive(queue, max_messages=0, park_after=0, clock=clock)

    assert len(result["moved"]) == 1 and len(result["newer"]) == 1 and not result["parked"] and not result["failed"]
    [back] = queue.messages(queue.dlq_url)  # failed again, waiting for the next redrive, visible again
    assert back.message_id == result["newer"][0] and back.attributes[REDRIVE_COUNT] == "1"
    assert back.attributes[FAILURE_REASON] == "HTTP 503 from case notes API"
    assert queue.depth(queue.dlq_url).visible == 1 and queue.messages() == []

    clock.now += 60  # the next redrive moves it (and it fails once more, for the one after)
    again = redrive(queue, max_messages=0, park_after=0, clock=clock)
    assert again["moved"] == [back.message_id] and len(again["newer"]) == 1


def test_every_message_in_the_dlq_when_the_redrive_began_is_moved():
    clock = Clock()
    queue = FakeEventsQueue(clock=clock)
    for n in range(3):
        dead_letter(queue, event(n), "HTTP 503 from case notes API")
        clock.now += 0.001
    queue.send("{not json", {FAILURE_REASON: "unreadable message"}, queue_url=queue.dlq_url)

    result = redrive(queue, max_messages=0, park_after=3, clock=clock)  # begins in the millisecond of the last one

    assert len(result["moved"]) == 3 and result["newer"] == [] and len(result["parked"]) == 1
    assert len(queue.messages()) == 3 and len(queue.messages(queue.dlq_url)) == 1


def test_only_a_later_sent_timestamp_counts_as_newer():
    clock = Clock()
    queue = FakeEventsQueue(clock=clock)
    queue.send("{}", queue_url=queue.dlq_url)
    [message] = queue.receive_dlq(1)
    sent = message.sent_timestamp_ms
    assert sent is not None
    assert arrived_after(message, sent - 1) and not arrived_after(message, sent)
    assert not arrived_after(message.__class__(message.message_id, message.receipt_handle, "{}"), 0)  # no timestamp
