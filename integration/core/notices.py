"""The texts of chat notifications for unattended operation: run failures, DLQ redrive reports, reconciliation.

Slack-compatible ``{"text": ..., "blocks": [...]}`` payloads (the ``Notifier`` resource posts them to
``NOTIFY_WEBHOOK_URL``). They hold ids and counts only: job names, run ids, step keys, counts, and the descriptions of
``dg.Failure`` (which this project writes without personal data). Other exceptions are named by class only, because
their messages may quote data (a database error quotes its parameters).
"""

from __future__ import annotations

from typing import Any

MAX_REASON_CHARS = 300


def slack_message(title: str, lines: list[str], link: str | None = None) -> dict[str, Any]:
    """``text`` for clients that only show text, ``blocks`` for Slack; both say the same."""
    body = "\n".join(lines)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{_escape(title)}*"}}]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _escape(body)}})
    if link:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open the run in Dagster>"}]}
        )
    return {"text": f"{title}\n{body}".strip(), "blocks": blocks}


def failure_message(
    job_name: str, run_id: str, reason: str, steps: list[str], recent_failures: int, link: str | None = None
) -> dict[str, Any]:
    lines = [f"Run {run_id} of {job_name} failed: {_clip(reason)}"]
    lines += [f"- {_clip(step)}" for step in steps[:3]]
    if len(steps) > 3:
        lines.append(f"- and {len(steps) - 3} more failed steps")
    if recent_failures > 1:
        lines.append(f"{recent_failures} failed runs of {job_name} in the last hour.")
    return slack_message(f"Dagster run failed: {job_name}", lines, link)


def redrive_message(run_id: str, moved: int, parked: int, failed: int, link: str | None = None) -> dict[str, Any]:
    lines = [f"Run {run_id}: {moved} moved back to the events queue, {parked} parked, {failed} could not be moved."]
    if parked:
        lines.append(
            f"{parked} messages were redriven too often and stay parked in the dead-letter queue "
            "(nothing was deleted): see the run's parked_messages table."
        )
    title = "DLQ redrive: messages parked" if parked else "DLQ redrive"
    return slack_message(title, lines, link)


def reconciliation_message(
    run_id: str, counts: dict[str, int], repair: str, stopped: str | None = None, link: str | None = None
) -> dict[str, Any]:
    problems = counts["missing"] or counts["stale"]
    lines = [
        f"Run {run_id}: {counts['people_checked']} people checked, {counts['items_compared']} items compared.",
        f"Missing contacts: {counts['missing']}; stale contacts: {counts['stale']}; "
        f"people affected: {counts['people_needing_repair']}.",
    ]
    if counts["people_with_errors"] or counts["people_not_checked"]:
        lines.append(
            f"Could not check {counts['people_with_errors']} people (API errors); "
            f"{counts['people_not_checked']} left for a later run."
        )
    if stopped:
        lines.append(f"Stopped early: {stopped}.")
    lines.append(f"Repair: {repair}.")
    title = "Reconciliation: contacts missing or stale" if problems else "Reconciliation: contacts match"
    return slack_message(title, lines, link)


def should_notify_failure(recent_failures: int) -> bool:
    """The first three failures of a job in an hour, then every tenth: an outage is one message, not hundreds."""
    return recent_failures <= 3 or recent_failures % 10 == 0


def step_failure_summary(step_key: str, error: Any, user_description: str | None) -> str:
    """``step: reason``: a ``dg.Failure``'s description, or only the exception's class name."""
    if user_description:
        return f"{step_key}: {_clip(user_description)}"
    return f"{step_key}: {_user_error_class(error)}"


def _user_error_class(error: Any) -> str:
    """The class of the user's exception, under Dagster's wrappers (SerializableErrorInfo chain)."""
    while error is not None and error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    return error.cls_name if error is not None else "unknown error"


def _clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
