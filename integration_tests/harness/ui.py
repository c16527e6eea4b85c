"""The local stack (integration/local/stack.py) with ``dagster dev``, for tests that look at what an operator sees.

``running_local_stack(...)`` starts the stack's parts in this process (moto's SQS server, the stand-ins, a SQLite
Delius database, optionally the simulator) on free ports with a temporary ``--state-dir``, then ``dagster dev`` as
its own process group with the stack's environment, and stops everything in ``finally``.

One difference from ``python -m integration.local``: the Dagster instance lives in a temporary ``DAGSTER_HOME``
(a copy of the repo's dagster.yaml), not in the repo root, so a test never touches (or fights over) the instance of a
developer's own ``make run``. ``GraphQL`` is a small client for what the UI itself asks the webserver.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

from integration.local.stack import LocalStack, StackOptions
from integration_tests.fixtures.network import free_port
from integration_tests.harness.daemon import wait_until  # noqa: F401 (the UI tests wait the same way)

ROOT = Path(__file__).resolve().parents[2]
LOCATION = "integration"
REPOSITORY = "__repository__"
# Variables of the test process that must not leak into dagster dev (the stack's env() sets what it needs).
_DROP = ("DAGSTER_", "PYTEST", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN")


class IsolatedLocalStack(LocalStack):
    """The local stack with its own DAGSTER_HOME and dagster dev's output in a log file."""

    def __init__(
        self, options: StackOptions, *, dagster_home: Path, log: Path, extra_env: Mapping[str, str] | None = None
    ):
        super().__init__(options)
        self.dagster_home, self.log = dagster_home, log
        self.extra_env = dict(extra_env or {})

    def env(self) -> dict[str, str]:
        return {**super().env(), "DAGSTER_HOME": str(self.dagster_home), **self.extra_env}

    def start_dagster(self) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP)}
        env.update(self.env())
        with open(self.log, "ab") as out:
            # Own session = own process group: stop() can signal the whole group (docs/dagster-notes.md §8).
            self._dagster = subprocess.Popen(
                self.dagster_command(),
                cwd=self.options.root,
                env=env,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self._dagster

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextlib.contextmanager
def running_local_stack(
    base: Path,
    *,
    people: int = 40,
    rate: float = 0.0,
    poison_rate: float = 0.0,
    extra_env: Mapping[str, str] | None = None,
    start_timeout: float = 120,
) -> Iterator[tuple[IsolatedLocalStack, str]]:
    """(stack, UI base URL) with dagster dev answering; everything is stopped on the way out."""
    home = base / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    options = StackOptions(
        state_dir=base / "state",
        sqs_port=0,
        auth_port=0,
        case_notes_port=0,
        alerts_port=0,
        dagster_port=free_port(),
        rate=rate,
        people=people,
        seed=0,
        poison_rate=poison_rate,
        fresh=True,
    )
    stack = IsolatedLocalStack(options, dagster_home=home, log=base / "dagster-dev.log", extra_env=extra_env)
    try:
        stack.start()
        stack.start_dagster()
        url = stack.ui_url
        deadline = time.monotonic() + start_timeout
        while True:
            code = stack.dagster_exit_code()
            if code is not None:
                raise AssertionError(f"dagster dev exited with {code}:\n{stack.log_tail()}")
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"dagster dev did not answer within {start_timeout:.0f} s:\n{stack.log_tail()}")
            time.sleep(0.5)
        yield stack, url
    finally:
        stack.stop()


class GraphQL:
    """What the UI asks the webserver, over ``POST /graphql``."""

    def __init__(self, url: str):
        self.url = f"{url}/graphql"
        self.http = requests.Session()

    def __call__(self, query: str, **variables: Any) -> dict:
        response = self.http.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def runs(self, job_name: str, statuses: list[str] | None = None, limit: int = 50) -> list[dict]:
        data = self(
            """
            query Runs($filter: RunsFilter!, $limit: Int) {
              runsOrError(filter: $filter, limit: $limit) {
                __typename
                ... on Runs { results { runId status jobName creationTime tags { key value } } }
                ... on PythonError { message }
              }
            }""",
            filter={"pipelineName": job_name, **({"statuses": statuses} if statuses else {})},
            limit=limit,
        )
        result = data["runsOrError"]
        if result["__typename"] != "Runs":
            raise AssertionError(f"runsOrError: {result}")
        return result["results"]

    def failure_messages(self, run_id: str) -> list[str]:
        """The messages the run page shows for its failed steps and the run failure."""
        data = self(
            """
            query Logs($runId: ID!) {
              logsForRun(runId: $runId, limit: 1000) {
                __typename
                ... on EventConnection {
                  events {
                    __typename
                    ... on ExecutionStepFailureEvent { message error { message } }
                    ... on RunFailureEvent { message }
                  }
                }
              }
            }""",
            runId=run_id,
        )
        events = data["logsForRun"].get("events") or []
        messages = []
        for event in events:
            if event["__typename"] == "ExecutionStepFailureEvent":
                messages.append((event.get("error") or {}).get("message") or event.get("message") or "")
            elif event["__typename"] == "RunFailureEvent":
                messages.append(event.get("message") or "")
        return messages

    def launch_run(self, job_name: str, run_config: dict | None = None) -> str:
        data = self(
            """
            mutation Launch($params: ExecutionParams!) {
              launchRun(executionParams: $params) {
                __typename
                ... on LaunchRunSuccess { run { runId } }
                ... on PythonError { message }
                ... on RunConfigValidationInvalid { errors { message } }
                ... on InvalidStepError { invalidStepKey }
                ... on UnauthorizedError { message }
              }
            }""",
            params={
                "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job_name},
                "runConfigData": run_config or {},
            },
        )
        result = data["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise AssertionError(f"launchRun {job_name}: {result}")
        return result["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        data = self(
            """query Status($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }""",
            runId=run_id,
        )
        return data["runOrError"].get("status", data["runOrError"]["__typename"])

    def sensor_status(self, name: str) -> str:
        data = self(
            """
            query Sensor($selector: SensorSelector!) {
              sensorOrError(sensorSelector: $selector) {
                __typename
                ... on Sensor { sensorState { status } }
              }
            }""",
            selector={"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name},
        )
        return data["sensorOrError"]["sensorState"]["status"]

    def set_sensor_running(self, name: str, running: bool) -> str:
        """Switch a sensor on or off, as its toggle in the UI does; returns the new status."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}
        if running:
            data = self(
                """
                mutation Start($selector: SensorSelector!) {
                  startSensor(sensorSelector: $selector) {
                    __typename
                    ... on Sensor { sensorState { status } }
                    ... on PythonError { message }
                  }
                }""",
                selector=selector,
            )
            result = data["startSensor"]
            if result["__typename"] != "Sensor":
                raise AssertionError(f"startSensor: {result}")
            return result["sensorState"]["status"]
        sensor = self(
            """
            query Sensor($selector: SensorSelector!) {
              sensorOrError(sensorSelector: $selector) {
                ... on Sensor { jobOriginId sensorState { id selectorId } }
              }
            }""",
            selector=selector,
        )["sensorOrError"]
        data = self(
            """
            mutation Stop($id: String, $origin: String, $selectorId: String) {
              stopSensor(id: $id, jobOriginId: $origin, jobSelectorId: $selectorId) {
                __typename
                ... on StopSensorMutationResult { instigationState { status } }
                ... on PythonError { message }
              }
            }""",
            id=sensor["sensorState"]["id"],
            origin=sensor["jobOriginId"],
            selectorId=sensor["sensorState"]["selectorId"],
        )
        result = data["stopSensor"]
        if result["__typename"] != "StopSensorMutationResult":
            raise AssertionError(f"stopSensor: {result}")
        return result["instigationState"]["status"]

    def check(self, asset: str, name: str) -> dict | None:
        """The latest result of an asset check as the asset's Checks tab shows it (status, severity, description)."""
        data = self(
            """
            query Checks($key: AssetKeyInput!) {
              assetNodeOrError(assetKey: $key) {
                ... on AssetNode {
                  assetChecksOrError {
                    ... on AssetChecks {
                      checks { name executionForLatestMaterialization { status evaluation { severity description } } }
                    }
                  }
                }
              }
            }""",
            key={"path": [asset]},
        )
        for check in data["assetNodeOrError"]["assetChecksOrError"]["checks"]:
            if check["name"] == name:
                return check["executionForLatestMaterialization"]
        return None
