"""Short chat notifications for unattended operation: run failures, DLQ redrive reports, reconciliation results.

Messages go to a Slack-compatible incoming webhook (``NOTIFY_WEBHOOK_URL``) as ``{"text": ..., "blocks": [...]}``.
They hold ids and counts only: job names, run ids, step keys, counts, and the descriptions of ``dg.Failure`` (which
this project writes without personal data). Other exceptions are named by class only, because their messages may
quote data (a database error quotes its parameters). Without a webhook URL a notification is logged and skipped; a
webhook that fails is logged and never fails the sensor or run that posts.
"""

import os
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import dagster as dg
import requests

from .logfmt import kv
from .operations import redrive_dlq_job

FAILURE_WINDOW = timedelta(hours=1)
PARKED_TAG = "hmpps/dlq-parked"
MAX_REASON_CHARS = 300


# ----------------------------------------------------------------------------------------------- messages (pure)


def slack_message(title: str, lines: list[str], link: str | None = None) -> dict[str, Any]:
    """``text`` for clients that only show text, ``blocks`` for Slack; both say the same."""
    body = "\n".join(lines)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{_escape(title)}*"}}]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _escape(body)}})
    if link:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open the run in Dagster>"}]})
    return {"text": f"{title}\n{body}".strip(), "blocks": blocks}


def failure_message(job_name: str, run_id: str, reason: str, steps: list[str], recent_failures: int,
                    link: str | None = None) -> dict[str, Any]:
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
        lines.append(f"{parked} messages were redriven too often and stay parked in the dead-letter queue "
                     "(nothing was deleted): see the run's parked_messages table.")
    title = "DLQ redrive: messages parked" if parked else "DLQ redrive"
    return slack_message(title, lines, link)


def reconciliation_message(run_id: str, counts: dict[str, int], repair: str, stopped: str | None = None,
                           link: str | None = None) -> dict[str, Any]:
    problems = counts["missing"] or counts["stale"]
    lines = [f"Run {run_id}: {counts['people_checked']} people checked, {counts['items_compared']} items compared.",
             f"Missing contacts: {counts['missing']}; stale contacts: {counts['stale']}; "
             f"people affected: {counts['people_needing_repair']}."]
    if counts["people_with_errors"] or counts["people_not_checked"]:
        lines.append(f"Could not check {counts['people_with_errors']} people (API errors); "
                     f"{counts['people_not_checked']} left for a later run.")
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
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ----------------------------------------------------------------------------------------------- the webhook


def post_json(url: str, payload: dict[str, Any], timeout: float) -> str | None:
    """POST the payload; returns why it failed, or None. The reason never holds the URL (it is a secret)."""
    try:
        response = requests.post(url, json=payload, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return f"webhook not reachable ({type(exc).__name__})"
    if not 200 <= response.status_code < 300:
        return f"webhook answered HTTP {response.status_code}"
    return None


class Notifier(dg.ConfigurableResource):
    """The chat webhook (``NOTIFY_WEBHOOK_URL``, read when used) and the UI address for run links
    (``DAGSTER_UI_URL``, optional). Without a webhook URL, notifications are only logged."""

    webhook_url: Optional[str] = None
    dagster_ui_url: Optional[str] = None
    timeout_seconds: float = 5.0

    def run_link(self, run_id: str) -> str | None:
        base = self.dagster_ui_url or os.environ.get("DAGSTER_UI_URL")
        return f"{base.rstrip('/')}/runs/{run_id}" if base else None

    def post(self, payload: dict[str, Any], log) -> bool:
        """Send, or log why not. Never raises."""
        url = self.webhook_url or os.environ.get("NOTIFY_WEBHOOK_URL")
        if not url:
            # The message itself is logged instead (ids and counts only, like every notification).
            log.info(kv("notification_skipped", reason="NOTIFY_WEBHOOK_URL is not set", text=payload.get("text", "")))
            return False
        try:
            error = post_json(url, payload, self.timeout_seconds)
        except Exception as exc:   # a notification must never break what sends it
            error = f"notification failed ({type(exc).__name__})"
        if error:
            log.warning(kv("notification_failed", reason=error))
            return False
        return True


# ----------------------------------------------------------------------------------------------- sensors


@dg.run_failure_sensor(
    name="run_failure_notification_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts a short message (job, run id, failure reason; no personal data) to NOTIFY_WEBHOOK_URL when "
                "a run of this code location fails. At most three messages per job per hour, then every tenth.",
)
def run_failure_notification_sensor(context: dg.RunFailureSensorContext, notifier: Notifier):
    run = context.dagster_run
    since = datetime.now(timezone.utc) - FAILURE_WINDOW
    recent = context.instance.get_runs_count(dg.RunsFilter(job_name=run.job_name, updated_after=since,
                                                           statuses=[dg.DagsterRunStatus.FAILURE]))
    if not should_notify_failure(recent):
        return dg.SkipReason(f"{recent} failures of {run.job_name} in the last hour: not notifying every one")
    steps = [step_failure_summary(event.step_key, event.step_failure_data.error,
                                  event.step_failure_data.user_failure_data.description
                                  if event.step_failure_data.user_failure_data else None)
             for event in context.get_step_failure_events()]
    reason = (context.failure_event.message or "run failed").splitlines()[0]
    notifier.post(failure_message(run.job_name, run.run_id, reason, steps, recent, notifier.run_link(run.run_id)),
                  context.log)
    return None


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="dlq_redrive_report_sensor",
    monitored_jobs=[redrive_dlq_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each DLQ redrive (scheduled or by hand): tags the run with the number of parked messages "
                f"({PARKED_TAG}) and posts its counts to NOTIFY_WEBHOOK_URL when it moved or parked anything.",
)
def dlq_redrive_report_sensor(context: dg.RunStatusSensorContext, notifier: Notifier):
    run = context.dagster_run
    counts = redrive_counts(context.instance, run.run_id)
    if counts is None:
        return dg.SkipReason("the redrive run has no counts")
    if counts["parked"]:
        context.instance.add_run_tags(run.run_id, {PARKED_TAG: str(counts["parked"])})
    if not any(counts.values()):
        return dg.SkipReason("the dead-letter queue was empty")
    notifier.post(redrive_message(run.run_id, counts["moved"], counts["parked"], counts["failed"],
                                  notifier.run_link(run.run_id)), context.log)
    return None


def redrive_counts(instance: dg.DagsterInstance, run_id: str) -> dict[str, int] | None:
    """moved / parked / failed, from the output metadata of the run's redrive step."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
        event = record.dagster_event
        if event.step_key == "redrive_dead_letters":
            metadata = event.event_specific_data.metadata
            return {name: int(metadata[name].value) if name in metadata else 0
                    for name in ("moved", "parked", "failed")}
    return None


defs = dg.Definitions(sensors=[run_failure_notification_sensor, dlq_redrive_report_sensor])
