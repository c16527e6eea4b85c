"""The Kubernetes deployment, checked without a cluster: deploy/k8s/dagster.yaml, deploy/helm/values.yaml, the image.

What this proves (deploy/README.md, "Kubernetes (Helm)"):

* deploy/k8s/dagster.yaml, the instance config of the cluster, loads with dagster-k8s installed:
  ``DagsterInstance.from_config`` builds PostgreSQL storage on a fresh database of the test server (the
  ``DAGSTER_PG_*`` variables point at it), a ``K8sRunLauncher`` from a dummy kubeconfig (``KUBECONFIG``; its server
  is never contacted) and a ``QueuedRunCoordinator`` whose limits are deploy/dagster.yaml's, so the two cannot drift;
* the Kubernetes Job that this launcher creates for a run of each of our jobs, built by dagster-k8s's own
  ``launch_run`` (the Kubernetes API client is replaced by a recorder): namespace, image and pull policy, the
  configuration from the ConfigMap and the Secrets, the instance database's password, the service account, and the
  pod size of integration/defs/pods.py merged over the launcher's default;
* deploy/helm/values.yaml uses only keys of the Dagster chart's values schema (chart 1.13) in the sections it sets,
  asks the chart for exactly deploy/k8s/dagster.yaml (launcher, run queue, monitoring, retries, daemon threads,
  retention, storage), and names one image and one code location everywhere (Dockerfile, pyproject.toml's
  ``[tool.dagster]``, deploy/workspace.yaml); deploy/helm/networkpolicy.yaml admits only the daemon and the webserver
  to the code server's port.

Not proven here: that the chart renders these values as described (no helm binary, no chart), that the image
builds (no Docker engine), or anything a cluster does.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from sqlalchemy.engine import make_url

from integration.constants import (
    BACKFILL_JOB,
    EVENTS_JOB,
    HOUSEKEEPING_JOB,
    PEEK_JOB,
    RECONCILIATION_JOB,
    REDRIVE_JOB,
)
from integration.defs.pods import BACKFILL_RESOURCES, K8S_CONFIG_TAG, OPERATIONS_RESOURCES
from integration_tests.fixtures.postgres import create_database, drop_database

dagster_k8s = pytest.importorskip(
    "dagster_k8s", reason="dagster-k8s is not installed: pip install -e '.[k8s]' (make venv installs it)"
)
kubernetes = pytest.importorskip("kubernetes", reason="dagster-k8s's kubernetes client is not installed")

pytestmark = [pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
K8S_INSTANCE = ROOT / "deploy" / "k8s" / "dagster.yaml"
VALUES = ROOT / "deploy" / "helm" / "values.yaml"
NETWORK_POLICY = ROOT / "deploy" / "helm" / "networkpolicy.yaml"
RELEASE = "pcn2p-dagster"  # the release name of deploy/README.md: the chart's objects are named after it
UNREACHABLE_API = "https://127.0.0.1:9"
PG_PASSWORD = "pw-that-must-not-reach-a-job-spec"
PYTHON = "/usr/local/bin/python"  # the interpreter of the image (Dockerfile: python:3.11-slim)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def values() -> dict:
    return load_yaml(VALUES)


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch) -> Path:
    """A kubeconfig whose only cluster is a closed port on loopback, named by ``KUBECONFIG``."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "nowhere",
                "clusters": [{"name": "nowhere", "cluster": {"server": UNREACHABLE_API}}],
                "users": [{"name": "nobody", "user": {"token": "not-a-token"}}],
                "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    # The kubernetes client reads KUBECONFIG once, when it is imported: point its default at the variable's value.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    return path


@pytest.fixture
def instance_database(postgres_admin_url, monkeypatch) -> Iterator[str]:
    """A fresh database for the instance, named to deploy/k8s/dagster.yaml through its DAGSTER_PG_* variables."""
    url = create_database(postgres_admin_url, prefix="pcn2p_k8s")
    parsed = make_url(url)
    monkeypatch.setenv("DAGSTER_PG_USERNAME", parsed.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", PG_PASSWORD)  # the test server trusts loopback: any password
    monkeypatch.setenv("DAGSTER_PG_HOST", parsed.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(parsed.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_DB", parsed.database or "")
    try:
        yield url
    finally:
        drop_database(postgres_admin_url, url)


@pytest.fixture
def k8s_instance(tmp_path, kubeconfig, instance_database) -> Iterator[dg.DagsterInstance]:
    """deploy/k8s/dagster.yaml as the instance, with the one change a machine outside a cluster needs."""
    config = load_yaml(K8S_INSTANCE)
    launcher = config["run_launcher"]["config"]
    assert launcher["load_incluster_config"] is True and "kubeconfig_file" not in launcher
    # In a pod the launcher reads the pod's service account token; here it reads KUBECONFIG (the dummy) instead.
    launcher["load_incluster_config"] = False
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()


# ---------------------------------------------------------------------------------------------------------------
# deploy/k8s/dagster.yaml: the instance, its launcher and its run queue


def test_the_cluster_instance_validates_as_written(monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    for name in ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "unused")
    monkeypatch.setenv("DAGSTER_PG_PORT", "5432")
    home = K8S_INSTANCE.parent
    config, _ = dagster_instance_config(str(home))  # Dagster's schema for dagster.yaml; connects to nothing
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["run_launcher"]["config"]["load_incluster_config"] is True
    assert set(config["storage"]["postgres"]["postgres_db"]) >= {"username", "password", "hostname", "db_name", "port"}
    assert "concurrency" not in config and "run_queue" not in config  # the run coordinator alone holds the limits


def test_instance_has_postgres_storage_a_k8s_run_launcher_and_the_production_run_queue(k8s_instance, instance_database):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    instance = k8s_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert make_url(instance.run_storage.postgres_url).database == make_url(instance_database).database
    assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")

    launcher = instance.run_launcher
    assert isinstance(launcher, dagster_k8s.K8sRunLauncher)
    assert kubernetes.client.Configuration.get_default_copy().host == UNREACHABLE_API  # the dummy kubeconfig
    assert launcher.job_namespace == "pcn2p"
    assert launcher.image_pull_policy == "IfNotPresent"
    assert launcher.job_image is None  # the image is the one the code server reports
    assert list(launcher.env_config_maps) == ["pcn2p-config"]
    assert list(launcher.env_secrets) == ["pcn2p-secrets"]
    assert launcher.service_account_name == "pcn2p-dagster"
    assert launcher.instance_config_map == f"{RELEASE}-instance"
    assert launcher.postgres_password_secret == "pcn2p-dagster-postgresql"
    assert launcher.dagster_home == "/opt/dagster/dagster_home"

    coordinator = instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    production = load_yaml(ROOT / "deploy" / "dagster.yaml")
    queue = coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == production["concurrency"]["runs"]["max_concurrent_runs"]
    assert [dict(limit) for limit in queue.tag_concurrency_limits] == production["concurrency"]["runs"][
        "tag_concurrency_limits"
    ]
    assert coordinator.dequeue_interval_seconds == production["run_queue"]["dequeue_interval_seconds"]
    assert queue.max_user_code_failure_retries == production["run_queue"]["max_user_code_failure_retries"]
    assert queue.user_code_failure_retry_delay == production["run_queue"]["user_code_failure_retry_delay"]
    # The instance-wide view that the daemon's run queue uses agrees.
    assert instance.get_concurrency_config().run_queue_config.tag_concurrency_limits == queue.tag_concurrency_limits

    for key in ("run_monitoring", "run_retries", "sensors", "schedules", "backfills", "retention", "python_logs"):
        assert load_yaml(K8S_INSTANCE)[key] == production[key], key


# ---------------------------------------------------------------------------------------------------------------
# The run pods: the Job that K8sRunLauncher.launch_run creates for a run of each job


def _code_server_image(values: Mapping) -> str:
    image = values["dagster-user-deployments"]["deployments"][0]["image"]
    return f"{image['repository']}:{image['tag']}"


def _launched_job(instance: dg.DagsterInstance, job_name: str, tags: Mapping[str, str], image: str, monkeypatch):
    """The V1Job (and its namespace) that the launcher would send to the cluster for a run of ``job_name``."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster._core.utils import make_new_run_id

    origin = JobPythonOrigin(
        job_name,
        RepositoryPythonOrigin(
            executable_path=PYTHON,
            code_pointer=ModuleCodePointer("integration.definitions", "defs"),
            container_image=image,
            entry_point=None,
            container_context=None,
        ),
    )
    run = instance.add_run(
        DagsterRun(job_name=job_name, run_id=make_new_run_id(), tags=dict(tags), job_code_origin=origin)
    )
    launcher = instance.run_launcher
    assert isinstance(launcher, dagster_k8s.K8sRunLauncher)
    sent: list[tuple[Any, str]] = []
    monkeypatch.setattr(
        launcher._api_client,
        "create_namespaced_job_with_retries",  # noqa: SLF001 (the test seam)
        lambda body, namespace, **_: sent.append((body, namespace)),
    )
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    [(body, namespace)] = sent
    return body, namespace


def _merged(*layers: Mapping) -> dict:
    out: dict = {}
    for layer in layers:
        for key, value in layer.items():
            out[key] = _merged(out.get(key, {}), value) if isinstance(value, Mapping) else value
    return out


def test_each_jobs_run_pod_gets_the_configuration_identity_and_its_size(k8s_instance, values, monkeypatch):
    from integration.definitions import defs

    image = _code_server_image(values)
    default = load_yaml(K8S_INSTANCE)["run_launcher"]["config"]["run_k8s_config"]["container_config"]["resources"]
    expected = {
        EVENTS_JOB: default,  # the default pod: no tag of its own
        BACKFILL_JOB: _merged(default, BACKFILL_RESOURCES),
        REDRIVE_JOB: _merged(default, OPERATIONS_RESOURCES),
        PEEK_JOB: _merged(default, OPERATIONS_RESOURCES),
        RECONCILIATION_JOB: _merged(default, OPERATIONS_RESOURCES),
        HOUSEKEEPING_JOB: _merged(default, OPERATIONS_RESOURCES),
    }
    for job_name, resources in expected.items():
        tags = defs.resolve_job_def(job_name).tags
        assert (K8S_CONFIG_TAG in tags) == (job_name != EVENTS_JOB), job_name
        body, namespace = _launched_job(k8s_instance, job_name, tags, image, monkeypatch)
        pod = body.spec.template.spec
        [container] = pod.containers
        assert namespace == "pcn2p", job_name
        assert container.image == image and container.image_pull_policy == "IfNotPresent", job_name
        # The code server's interpreter (reported in the run's origin), running the run worker.
        assert container.args[:5] == [PYTHON, "-m", "dagster", "api", "execute_run"], job_name
        assert container.resources.to_dict() == {**resources, "claims": None}, job_name
        env_from = {
            (s.config_map_ref.name if s.config_map_ref else None, s.secret_ref.name if s.secret_ref else None)
            for s in container.env_from
        }
        assert env_from == {("pcn2p-config", None), (None, "pcn2p-secrets")}, job_name
        env = {e.name: e for e in container.env}
        assert env["DAGSTER_PG_PASSWORD"].value_from.secret_key_ref.name == "pcn2p-dagster-postgresql"
        assert env["DAGSTER_PG_PASSWORD"].value_from.secret_key_ref.key == "postgresql-password"
        assert env["DAGSTER_HOME"].value == "/opt/dagster/dagster_home"
        assert pod.service_account_name == "pcn2p-integration", job_name
        assert pod.security_context.run_as_non_root is True and pod.security_context.run_as_user == 10001
        assert container.security_context.allow_privilege_escalation is False
        # The run worker gets the instance in its arguments (the daemon's instance, serialized), with the password
        # as a reference to DAGSTER_PG_PASSWORD: the password itself is nowhere in the Job.
        assert "DAGSTER_PG_PASSWORD" in container.args[-1], job_name
        assert PG_PASSWORD not in json.dumps(body.to_dict(), default=str), job_name
        assert body.spec.backoff_limit == 0, job_name  # a run is never restarted by Kubernetes


# ---------------------------------------------------------------------------------------------------------------
# deploy/helm/values.yaml: the chart's keys, and what it asks the chart for

IMAGE = {"repository", "tag", "pullPolicy"}
THREADS = {"useThreads", "numWorkers", "numSubmitWorkers"}
POD_SETTINGS = {
    "env",
    "envConfigMaps",
    "envSecrets",
    "labels",
    "nodeSelector",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "annotations",
    "schedulerName",
    "volumeMounts",
    "volumes",
}
# The keys of the Dagster chart's values schema (chart 1.13: its values.schema.json, generated from its pydantic
# models) for the sections deploy/helm/values.yaml sets. A key outside these is refused by the chart (extra="forbid"
# sections) or silently ignored; either way it would not do what the values file says. Raw Kubernetes objects
# (resources, security contexts, runK8sConfig's contents, annotations) are not checked here.
CHART_KEYS: dict[tuple[str, ...], set[str]] = {
    (): {
        "dagsterWebserver",
        "dagster-user-deployments",
        "postgresql",
        "generatePostgresqlPasswordSecret",
        "generateCeleryConfigSecret",
        "rabbitmq",
        "redis",
        "flower",
        "ingress",
        "imagePullSecrets",
        "computeLogManager",
        "scheduler",
        "runLauncher",
        "pythonLogs",
        "dagsterDaemon",
        "busybox",
        "migrate",
        "telemetry",
        "serviceAccount",
        "global",
        "retention",
        "concurrency",
        "additionalInstanceConfig",
    },
    ("global",): {
        "postgresqlSecretName",
        "dagsterHome",
        "serviceAccountName",
        "celeryConfigSecretName",
        "dagsterInstanceConfigMap",
    },
    ("serviceAccount",): {"create", "name", "annotations"},
    ("telemetry",): {"enabled"},
    ("pythonLogs",): {"pythonLogLevel", "managedPythonLoggers", "dagsterHandlerConfig"},
    ("postgresql",): {
        "postgresqlScheme",
        "image",
        "enabled",
        "postgresqlHost",
        "postgresqlUsername",
        "postgresqlPassword",
        "postgresqlDatabase",
        "postgresqlParams",
        "service",
    },
    ("postgresql", "service"): {"port"},
    ("computeLogManager",): {"type", "config"},
    ("retention",): {"enabled", "sensor", "schedule", "autoMaterialize"},
    ("retention", "sensor"): {"purgeAfterDays"},
    ("retention", "schedule"): {"purgeAfterDays"},
    ("rabbitmq",): {"enabled", "image", "rabbitmq", "service", "volumePermissions"},
    ("redis",): {
        "enabled",
        "internal",
        "usePassword",
        "password",
        "host",
        "port",
        "brokerDbNumber",
        "backendDbNumber",
        "brokerUrl",
        "backendUrl",
    },
    ("flower",): {"enabled", "image", "service"} | POD_SETTINGS,
    ("ingress",): {
        "enabled",
        "annotations",
        "labels",
        "dagsterWebserver",
        "readOnlyDagsterWebserver",
        "flower",
        "ingressClassName",
    },
    ("dagsterWebserver",): {
        "replicaCount",
        "image",
        "nameOverride",
        "pathPrefix",
        "service",
        "workspace",
        "deploymentLabels",
        "enableReadOnly",
        "dbStatementTimeout",
        "dbPoolRecycle",
        "logLevel",
        "checkDbReadyInitContainer",
        "initContainerResources",
        "extraContainers",
        "extraPrependedInitContainers",
    }
    | POD_SETTINGS,
    ("dagsterWebserver", "image"): IMAGE,
    ("dagsterWebserver", "service"): {"type", "port", "annotations"},
    ("dagsterWebserver", "workspace"): {"enabled", "servers", "externalConfigmap"},
    ("dagsterWebserver", "workspace", "servers", "[]"): {"host", "port", "name", "ssl"},
    ("dagsterDaemon",): {
        "enabled",
        "image",
        "runCoordinator",
        "heartbeatTolerance",
        "deploymentLabels",
        "checkDbReadyInitContainer",
        "runMonitoring",
        "runRetries",
        "sensors",
        "schedules",
        "backfills",
        "logFormat",
        "initContainerResources",
        "extraContainers",
        "extraPrependedInitContainers",
    }
    | POD_SETTINGS,
    ("dagsterDaemon", "image"): IMAGE,
    ("dagsterDaemon", "runCoordinator"): {"enabled", "type", "config"},
    ("dagsterDaemon", "runCoordinator", "config"): {"queuedRunCoordinator", "customRunCoordinator"},
    ("dagsterDaemon", "runCoordinator", "config", "customRunCoordinator"): {"module", "class", "config"},
    # runMonitoring is a free mapping in the schema; these are the keys the chart's instance template reads.
    ("dagsterDaemon", "runMonitoring"): {
        "enabled",
        "startTimeoutSeconds",
        "cancelTimeoutSeconds",
        "maxResumeRunAttempts",
        "pollIntervalSeconds",
        "freeSlotsAfterRunEndSeconds",
    },
    ("dagsterDaemon", "runRetries"): {"enabled", "maxRetries", "retryOnAssetOrOpFailure"},
    ("dagsterDaemon", "sensors"): THREADS,
    ("dagsterDaemon", "schedules"): THREADS,
    ("dagsterDaemon", "backfills"): THREADS,
    ("runLauncher",): {"type", "config"},
    ("runLauncher", "config"): {"celeryK8sRunLauncher", "k8sRunLauncher", "customRunLauncher"},
    ("runLauncher", "config", "k8sRunLauncher"): {
        "image",
        "imagePullPolicy",
        "jobNamespace",
        "loadInclusterConfig",
        "kubeconfigFile",
        "envConfigMaps",
        "envSecrets",
        "envVars",
        "volumeMounts",
        "volumes",
        "labels",
        "failPodOnRunFailure",
        "resources",
        "schedulerName",
        "securityContext",
        "runK8sConfig",
    },
    ("runLauncher", "config", "k8sRunLauncher", "runK8sConfig"): {
        "containerConfig",
        "podSpecConfig",
        "podTemplateSpecMetadata",
        "jobSpecConfig",
        "jobMetadata",
    },
    ("dagster-user-deployments",): {"enabled", "enableSubchart", "imagePullSecrets", "deployments", "serviceAccount"},
    ("dagster-user-deployments", "serviceAccount"): {"create", "name", "annotations"},
    ("dagster-user-deployments", "deployments", "[]"): {
        "name",
        "image",
        "dagsterApiGrpcArgs",
        "codeServerArgs",
        "includeConfigInLaunchedRuns",
        "deploymentNamespace",
        "port",
        "replicaCount",
        "initContainers",
        "sidecarContainers",
        "deploymentStrategy",
    }
    | POD_SETTINGS,
    ("dagster-user-deployments", "deployments", "[]", "image"): IMAGE,
    ("dagster-user-deployments", "deployments", "[]", "includeConfigInLaunchedRuns"): {"enabled"},
}
# The chart's enumerations for the values we choose.
CHART_ENUMS = {
    ("runLauncher", "type"): {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"},
    ("dagsterDaemon", "runCoordinator", "type"): {"QueuedRunCoordinator", "CustomRunCoordinator"},
    ("computeLogManager", "type"): {
        "NoOpComputeLogManager",
        "AzureBlobComputeLogManager",
        "GCSComputeLogManager",
        "S3ComputeLogManager",
        "CustomComputeLogManager",
    },
    ("runLauncher", "config", "k8sRunLauncher", "imagePullPolicy"): {"Always", "IfNotPresent", "Never"},
}


def _mappings(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Mapping]]:
    if isinstance(node, Mapping):
        yield path, node
        for key, value in node.items():
            yield from _mappings(value, (*path, key))
    elif isinstance(node, list):
        for item in node:
            yield from _mappings(item, (*path, "[]"))


def _at(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


def test_values_use_only_the_charts_keys(values):
    checked = set()
    for path, mapping in _mappings(values):
        if path in CHART_KEYS:
            unknown = set(mapping) - CHART_KEYS[path]
            assert not unknown, f"{'.'.join(path) or '(top level)'}: not in the chart's values schema: {unknown}"
            checked.add(path)
    assert {(key,) for key, value in values.items() if isinstance(value, Mapping)} <= checked, "a section unchecked"
    assert ("runLauncher", "config", "k8sRunLauncher", "runK8sConfig") in checked
    for path, allowed in CHART_ENUMS.items():
        assert _at(values, path) in allowed, path
    images = [
        values["dagsterWebserver"]["image"],
        values["dagsterDaemon"]["image"],
        *(deployment["image"] for deployment in values["dagster-user-deployments"]["deployments"]),
    ]
    for image in images:
        assert image["pullPolicy"] in {"Always", "IfNotPresent", "Never"} and {"repository", "pullPolicy"} <= set(image)
    # K8sRunLauncher's required fields in the chart's schema: set here rather than left to the chart's defaults.
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {
        "imagePullPolicy",
        "loadInclusterConfig",
        "envConfigMaps",
        "envSecrets",
        "envVars",
        "volumeMounts",
        "volumes",
    } <= set(launcher)


def _instance_from_values(values: Mapping) -> dict:
    """The instance config the chart writes from ``values``, for the parts deploy/helm/values.yaml sets.

    Written out from the chart's instance ConfigMap template: camelCase values become the instance's snake_case keys,
    the storage gets the values' literal host/user/database/port and the password from DAGSTER_PG_PASSWORD, the
    launcher the release's names (instance ConfigMap, service account, password secret).
    """
    pg, daemon = values["postgresql"], values["dagsterDaemon"]
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    coordinator = daemon["runCoordinator"]["config"]["customRunCoordinator"]
    snake = {
        "containerConfig": "container_config",
        "podSpecConfig": "pod_spec_config",
        "podTemplateSpecMetadata": "pod_template_spec_metadata",
        "jobSpecConfig": "job_spec_config",
        "jobMetadata": "job_metadata",
    }
    monitoring = daemon["runMonitoring"]
    retention = values["retention"]
    assert values["computeLogManager"]["type"] == "NoOpComputeLogManager"
    assert daemon["runCoordinator"]["enabled"] and daemon["runCoordinator"]["type"] == "CustomRunCoordinator"
    assert values["runLauncher"]["type"] == "K8sRunLauncher" and retention["enabled"]
    launcher = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s["jobNamespace"],
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": values["global"].get("serviceAccountName") or values["serviceAccount"]["name"],
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "env_config_maps": [m["name"] for m in k8s["envConfigMaps"]],
        "env_secrets": [s["name"] for s in k8s["envSecrets"]],
        "run_k8s_config": {snake[key]: value for key, value in k8s["runK8sConfig"].items()},
    }
    launcher.update(
        {
            name: k8s[key]
            for key, name in (
                ("envVars", "env_vars"),
                ("volumeMounts", "volume_mounts"),
                ("volumes", "volumes"),
                ("labels", "labels"),
                ("resources", "resources"),
            )
            if k8s.get(key)
        }
    )
    assert not k8s.get("image"), "runs use the code server's image: no job_image"
    return {
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
        "python_logs": {
            "python_log_level": values["pythonLogs"]["pythonLogLevel"],
            "managed_python_loggers": values["pythonLogs"]["managedPythonLoggers"],
        },
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"],
            "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"],
            "params": pg["postgresqlParams"],
            "scheme": pg["postgresqlScheme"],
        },
        "run_coordinator": {
            "module": coordinator["module"],
            "class": coordinator["class"],
            "config": coordinator["config"],
        },
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "compute_logs": {"module": "dagster.core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"},
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
            "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        },
        "run_retries": {
            "enabled": daemon["runRetries"]["enabled"],
            "max_retries": daemon["runRetries"]["maxRetries"],
            "retry_on_asset_or_op_failure": daemon["runRetries"]["retryOnAssetOrOpFailure"],
        },
        **{
            section: {"use_threads": daemon[section]["useThreads"], "num_workers": daemon[section]["numWorkers"]}
            for section in ("sensors", "schedules", "backfills")
        },
        "retention": {
            "schedule": {"purge_after_days": retention["schedule"]["purgeAfterDays"]},
            "sensor": {"purge_after_days": retention["sensor"]["purgeAfterDays"]},
        },
    }


def test_values_ask_the_chart_for_the_cluster_instance(values, monkeypatch):
    from dagster_postgres.utils import pg_url_from_config

    chart = _instance_from_values(values)
    ours = load_yaml(K8S_INSTANCE)
    for section in (
        "telemetry",
        "python_logs",
        "run_coordinator",
        "run_launcher",
        "compute_logs",
        "run_monitoring",
        "run_retries",
        "sensors",
        "schedules",
        "backfills",
        "retention",
    ):
        assert ours[section] == chart[section], section
    assert set(ours) == set(chart) - {"postgres_db"} | {"storage"}

    # Storage: the chart writes literals, deploy/k8s/dagster.yaml reads variables; resolved, they are one database.
    for name, value in (
        ("DAGSTER_PG_USERNAME", chart["postgres_db"]["username"]),
        ("DAGSTER_PG_PASSWORD", "secret"),
        ("DAGSTER_PG_HOST", chart["postgres_db"]["hostname"]),
        ("DAGSTER_PG_DB", chart["postgres_db"]["db_name"]),
        ("DAGSTER_PG_PORT", str(chart["postgres_db"]["port"])),
    ):
        monkeypatch.setenv(name, value)

    def resolved(postgres_db: Mapping) -> str:
        from dagster._config import process_config
        from dagster_postgres.utils import pg_config

        result = process_config(pg_config(), {"postgres_db": dict(postgres_db)})
        assert result.success, result.errors
        assert result.value is not None
        return pg_url_from_config(result.value)

    url = resolved(ours["storage"]["postgres"]["postgres_db"])
    assert url == resolved(chart["postgres_db"])
    assert url.startswith("postgresql+psycopg2://dagster:secret@pcn2p-dagster-db:5432/dagster")


def test_one_image_one_module_one_code_location(values):
    webserver, daemon = values["dagsterWebserver"], values["dagsterDaemon"]
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert webserver["image"] == daemon["image"] == deployment["image"]
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["imagePullPolicy"] == deployment["image"]["pullPolicy"]
    assert str(deployment["image"]["tag"]) and deployment["image"]["tag"] != "latest"

    args = deployment["dagsterApiGrpcArgs"]
    module, location = args[args.index("-m") + 1], args[args.index("--location-name") + 1]
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert module == tool["module_name"] and location == tool["code_location_name"]
    [server] = webserver["workspace"]["servers"]
    workspace = load_yaml(ROOT / "deploy" / "workspace.yaml")["load_from"][0]["grpc_server"]
    assert webserver["workspace"]["enabled"]
    assert (server["host"], server["port"], server["name"]) == (deployment["name"], deployment["port"], location)
    assert workspace["location_name"] == location
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": False}
    assert deployment["envConfigMaps"] == values["runLauncher"]["config"]["k8sRunLauncher"]["envConfigMaps"]
    assert deployment["envSecrets"] == values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    pod_spec = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    assert pod_spec["serviceAccountName"] == values["dagster-user-deployments"]["serviceAccount"]["name"]
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False

    # The Dockerfile's default command is the same code server, and the image carries the k8s extra.
    dockerfile = (ROOT / "Dockerfile").read_text()
    [cmd] = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    command = json.loads(cmd[len("CMD ") :])
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[command.index("-m") + 1] == module and command[command.index("--location-name") + 1] == location
    assert command[command.index("-p") + 1] == str(deployment["port"])
    assert not [
        line for line in dockerfile.splitlines() if line.startswith("ENTRYPOINT")
    ]  # the run launcher passes `dagster api execute_run ...` as the args
    assert ".[k8s]" in dockerfile and f"DAGSTER_HOME={values['global']['dagsterHome']}" in dockerfile
    assert "USER 10001" in dockerfile


def test_network_policy_admits_only_the_daemon_and_the_webserver_to_the_code_server(values):
    policy = load_yaml(NETWORK_POLICY)
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/instance": RELEASE,
        "component": "user-deployments",
        "deployment": deployment["name"],
    }
    [rule] = policy["spec"]["ingress"]
    [source] = rule["from"]
    assert set(source) == {"podSelector"}  # no namespaceSelector or ipBlock: this namespace only
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/instance": RELEASE}
    [expression] = source["podSelector"]["matchExpressions"]
    assert (expression["key"], expression["operator"]) == ("component", "In")
    assert set(expression["values"]) == {"dagster-daemon", "dagster-webserver", "dagster-webserver-read-only"}
    assert rule["ports"] == [{"protocol": "TCP", "port": deployment["port"]}]
