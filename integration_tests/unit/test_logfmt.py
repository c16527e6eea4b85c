"""integration/logfmt.py: key=value log lines."""

from integration.core.logfmt import kv


def test_plain_tokens_stay_bare_and_the_rest_is_quoted():
    line = kv(
        "event",
        sqs_message_id="6f29-93",
        event_type="person.case-note.created",
        action="skipped",
        reason='not of interest: "KA"',
        contact_id=None,
        attempt=2,
        retryable=False,
        seconds=0.12345,
    )
    assert line == (
        "event sqs_message_id=6f29-93 event_type=person.case-note.created action=skipped "
        'reason="not of interest: \\"KA\\"" contact_id=- attempt=2 retryable=false seconds=0.123'
    )


def test_empty_values_and_equals_signs_are_quoted():
    assert kv("x", a="", b="k=v", c="café") == 'x a="" b="k=v" c="caf\\u00e9"'
