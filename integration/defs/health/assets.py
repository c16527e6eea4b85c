"""``events_queue``: the SQS queue of HMPPS domain events and its dead-letter queue, as an asset whose
materializations are health reports of the queue (depths, oldest-message age, consumer state and a one-word
``status``) and whose three checks say what is wrong.

Why a materialized asset (and not an observed one): the Dagster UI's *Status* column (Catalog, the Overview's
*Assets* tab, the asset graph) shows an observable asset as "Observed" whatever its checks say, and an asset that is
never materialized as "–" or "Never materialized". A materialized asset shows "Materialized" in green, and in red
while one of its ERROR checks fails (a non-empty DLQ, a stalled consumer, messages three times too old).

``queue_health_sensor`` reports a materialization and the checks every minute without a run. The asset's function
does the same in a run, on demand: *Materialize* evaluates the queue and all three checks; the checks can also be
executed without it, each on its own (``can_subset``), which is what *Checks → Execute all* does.
"""

from datetime import timedelta

import dagster as dg

from ...constants import EVENTS_QUEUE, HEALTH_CHECKS
from .checks import CHECK_SPECS
from .observe import EVENTS_QUEUE_KEY, check_result, evaluate, latest_backlog_since, report_metadata

# A report at least every HEALTH_HEARTBEAT_SECONDS (600): older than this means queue_health_sensor (or the daemon)
# has stopped reporting, and the asset page's freshness shows it.
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30), warn_window=timedelta(minutes=15))

EVENTS_QUEUE_SPEC = dg.AssetSpec(
    key=EVENTS_QUEUE,
    group_name="queue",
    kinds={"sqs"},
    freshness_policy=FRESHNESS,
    description="The SQS queue of HMPPS domain events that prison_events_sensor consumes, and its dead-letter queue. "
    "Reported every minute by queue_health_sensor: status (healthy, stalled, paused, DLQ not empty, old "
    "messages), depth (visible, in flight, delayed), DLQ depth, estimated oldest-message age and the "
    "consumer's state. Green when healthy, red while an ERROR check fails. See docs/operations.md §2.",
)


@dg.multi_asset(
    name=HEALTH_CHECKS,
    specs=[EVENTS_QUEUE_SPEC],
    check_specs=CHECK_SPECS,
    can_subset=True,
    required_resource_keys={"events_queue"},
    description="Evaluate the queue's health now (queue_health_sensor does this every minute without a run).",
)
def events_queue(context: dg.AssetExecutionContext):
    instance = context.instance
    backlog_since, observed_at = latest_backlog_since(instance)
    report = evaluate(instance, context.resources.events_queue.queue(), backlog_since=backlog_since, since=observed_at)
    context.log.info(report.log_line())
    if EVENTS_QUEUE_KEY in context.selected_asset_keys:
        yield dg.MaterializeResult(asset_key=EVENTS_QUEUE_KEY, metadata=report_metadata(report))
    for outcome in report.checks:
        if dg.AssetCheckKey(EVENTS_QUEUE_KEY, outcome.name) in context.selected_asset_check_keys:
            yield check_result(outcome)
