"""Pod sizes of the runs on Kubernetes: the ``dagster-k8s/config`` tag that a job puts on each of its runs.

Where the size of a run's pod comes from (deploy/README.md, "Kubernetes (Helm)"):

* the default for every run is the run launcher's ``run_k8s_config`` (``runLauncher.config.k8sRunLauncher.
  runK8sConfig`` in deploy/helm/values.yaml, ``run_k8s_config`` in deploy/k8s/dagster.yaml): the size of an
  event-flow run, the run that runs most. Event-flow jobs carry no tag of their own;
* a job whose needs differ says so here, in its tags. ``K8sRunLauncher`` reads the tag from the run (Dagster copies a
  job's tags onto every run of it) and deep-merges it over the default, so a tag names only what differs.

Other run launchers ignore the tag: locally (``DefaultRunLauncher``) it is inert. The values are JSON, as Dagster
stores every tag as a string. No CPU limits: a run's start is CPU-bound for a few seconds (interpreter, imports,
event log; docs/performance.md), and a limit would only stretch it; memory is limited, so a runaway run is killed
rather than its node. integration_tests/integration/test_k8s_deployment.py builds the Kubernetes Job of each job's
run from these tags and the launcher config, and checks the sizes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

K8S_CONFIG_TAG = "dagster-k8s/config"

# noms_backfill_job (linkage backfills, requested by the queue sensor): up to 100 people per run, their case notes and
# alerts planned with pandas, then merged. Backfills launched from the UI or integration.cli.backfill run as Dagster's
# implicit asset job, which has no tags of its own: they get the default size (or tags given at launch).
BACKFILL_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"memory": "2Gi"},
}
# Operator and scheduled jobs (DLQ peek and redrive, reconciliation, housekeeping): mostly waiting on SQS and SQL,
# at night or by hand, so a small CPU reservation; the default's memory.
OPERATIONS_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "100m"},
}


def pod_tags(resources: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The tag that sizes the run worker's container of a job's runs on Kubernetes."""
    return {K8S_CONFIG_TAG: json.dumps({"container_config": {"resources": resources}}, sort_keys=True)}
