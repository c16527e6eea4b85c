"""Queue health decisions (core/health.py): the checks, the age estimate and what is reported when. No I/O."""

from __future__ import annotations

import pytest

from integration.core import health
from integration.core.health import (
    CONSUMER_IS_ALIVE,
    DLQ_IS_EMPTY,
    OLDEST_MESSAGE_AGE_OK,
    ConsumerActivity,
    HealthSettings,
    assess,
    next_backlog_since,
    what_to_report,
)
from integration.core.messages import QueueDepth

NOW = 1_800_000_000.0
SETTINGS = HealthSettings(stall_seconds=300, max_message_age_seconds=900, heartbeat_seconds=600)
EMPTY = QueueDepth(0, 0, 0)


def outcome(report, name):
    return next(c for c in report.checks if c.name == name)


def running(**kw) -> ConsumerActivity:
    return ConsumerActivity(**{"sensor_status": "running", "last_tick_at": NOW - 3, **kw})


# --------------------------------------------------------------------------------------------- decisions


def test_an_idle_healthy_queue_passes_everything():
    report = assess(
        EMPTY,
        EMPTY,
        running(last_received_at=NOW - 4000, last_processed_at=NOW - 3990),
        SETTINGS,
        now=NOW,
        backlog_since=None,
    )
    assert [c.passed for c in report.checks] == [True, True, True]
    assert "idle (queue empty)" in outcome(report, CONSUMER_IS_ALIVE).description
    assert report.oldest_message_age == 0


def test_a_non_empty_dlq_is_flagged_with_its_count_and_what_to_do():
    report = assess(EMPTY, QueueDepth(3, 1, 0), running(), SETTINGS, now=NOW, backlog_since=None)
    dlq = outcome(report, DLQ_IS_EMPTY)
    assert not dlq.passed and dlq.severity == "ERROR"
    assert dlq.description.startswith("4 messages in the dead-letter queue")
    assert "peek_dlq_job" in dlq.description and "redrive_dlq_job" in dlq.description


def test_waiting_messages_with_no_consumer_activity_flag_a_stalled_consumer():
    activity = running(last_received_at=NOW - 700, last_processed_at=NOW - 650, runs_waiting=2)
    report = assess(QueueDepth(40, 0, 0), EMPTY, activity, SETTINGS, now=NOW, backlog_since=NOW - 600)
    alive = outcome(report, CONSUMER_IS_ALIVE)
    assert not alive.passed and alive.severity == "ERROR"
    assert "40 messages waiting and nothing received or processed for 600 s" in alive.description
    assert "2 batch runs are waiting to start" in alive.description
    # the messages seen 600 s ago are still there: the oldest is at least that old
    assert report.oldest_message_age == pytest.approx(600)
    assert outcome(report, OLDEST_MESSAGE_AGE_OK).passed


def test_a_new_backlog_after_a_quiet_night_is_not_a_stall():
    """Last activity hours ago, but the messages only started waiting 20 s ago."""
    report = assess(
        QueueDepth(3, 0, 0), EMPTY, running(last_received_at=NOW - 30000), SETTINGS, now=NOW, backlog_since=NOW - 20
    )
    assert outcome(report, CONSUMER_IS_ALIVE).passed


def test_a_paused_consumer_is_a_warning_and_its_backlog_age_grows():
    activity = running(sensor_status="stopped", last_received_at=NOW - 1000)
    report = assess(QueueDepth(5, 0, 0), EMPTY, activity, SETTINGS, now=NOW, backlog_since=NOW - 2000)
    alive = outcome(report, CONSUMER_IS_ALIVE)
    assert not alive.passed and alive.severity == "WARN"
    assert "paused" in alive.description and "5 messages waiting" in alive.description
    age = outcome(report, OLDEST_MESSAGE_AGE_OK)
    assert not age.passed and age.severity == "WARN" and report.oldest_message_age == pytest.approx(1000)


def test_a_failed_or_silent_queue_sensor_is_flagged():
    failed = assess(
        EMPTY, EMPTY, running(last_tick_error="EndpointConnectionError"), SETTINGS, now=NOW, backlog_since=None
    )
    assert "EndpointConnectionError" in outcome(failed, CONSUMER_IS_ALIVE).description
    silent = assess(EMPTY, EMPTY, running(last_tick_at=NOW - 900), SETTINGS, now=NOW, backlog_since=None)
    assert not outcome(silent, CONSUMER_IS_ALIVE).passed
    assert "has not ticked for 900 s" in outcome(silent, CONSUMER_IS_ALIVE).description


def test_the_age_at_receipt_of_recent_messages_counts_and_grades_the_severity():
    warn = assess(EMPTY, EMPTY, running(oldest_age_at_receipt=1000.0), SETTINGS, now=NOW, backlog_since=None)
    assert outcome(warn, OLDEST_MESSAGE_AGE_OK).severity == "WARN" and not outcome(warn, OLDEST_MESSAGE_AGE_OK).passed
    error = assess(EMPTY, EMPTY, running(oldest_age_at_receipt=2701.0), SETTINGS, now=NOW, backlog_since=None)
    assert outcome(error, OLDEST_MESSAGE_AGE_OK).severity == "ERROR"
    assert "age at receipt" in error.age_basis


def test_backlog_since_starts_on_the_first_sighting_and_ends_when_the_queue_shows_none():
    assert next_backlog_since(None, QueueDepth(2, 0, 0), NOW) == NOW
    assert next_backlog_since(NOW - 50, QueueDepth(2, 0, 0), NOW) == NOW - 50
    assert next_backlog_since(NOW - 50, QueueDepth(0, 7, 0), NOW) is None


def test_ages_at_receipt_come_from_the_consumer_reports():
    class Value:
        def __init__(self, value):
            self.value = value

    reports = [
        {"oldest_age_at_receipt_seconds": Value(30.0)},
        {"oldest_age_at_receipt_seconds": 5},
        {"events": Value(3)},
        None,
    ]
    assert sorted(health.ages_at_receipt(reports)) == pytest.approx([5, 30])


def test_results_are_reported_when_they_change_and_on_a_heartbeat_only():
    def report(dlq: int, at: float):
        return assess(
            QueueDepth(0, 0, 0),
            QueueDepth(dlq, 0, 0),
            running(last_received_at=at - 10),
            SETTINGS,
            now=at,
            backlog_since=None,
        )

    first = what_to_report(report(0, NOW), {}, SETTINGS)
    assert first.observation and len(first.checks) == 3
    same = what_to_report(report(0, NOW + 60), first.cursor, SETTINGS)
    assert not same.observation and same.checks == []
    changed = what_to_report(report(2, NOW + 120), same.cursor, SETTINGS)
    assert changed.observation and len(changed.checks) == 3  # a report always comes with every check
    quiet = what_to_report(report(2, NOW + 180), changed.cursor, SETTINGS)
    assert not quiet.observation and quiet.checks == []
    refreshed = what_to_report(report(2, NOW + 250), quiet.cursor, SETTINGS)  # failing: again after 120 s
    assert [c.name for c in refreshed.checks] == [DLQ_IS_EMPTY]
    beat = what_to_report(report(2, NOW + 600), refreshed.cursor, SETTINGS)
    assert beat.observation and len(beat.checks) == 3


def test_the_status_names_what_is_wrong_or_says_healthy():
    assert (
        health.status_of(assess(EMPTY, EMPTY, running(last_received_at=NOW - 5), SETTINGS, now=NOW, backlog_since=None))
        == "healthy"
    )
    assert (
        health.status_of(
            assess(EMPTY, QueueDepth(1, 0, 0), running(last_received_at=NOW - 5), SETTINGS, now=NOW, backlog_since=None)
        )
        == "DLQ not empty"
    )
    stalled = assess(
        QueueDepth(40, 0, 0),
        QueueDepth(2, 0, 0),
        running(last_received_at=NOW - 700),
        SETTINGS,
        now=NOW,
        backlog_since=NOW - 600,
    )
    assert health.status_of(stalled) == "stalled, DLQ not empty"
    paused = assess(
        QueueDepth(4, 0, 0), EMPTY, ConsumerActivity(sensor_status="stopped"), SETTINGS, now=NOW, backlog_since=NOW - 30
    )
    assert health.status_of(paused) == "paused"
