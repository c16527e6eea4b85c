"""What the operator command lines share: the Dagster webserver's GraphQL API (as the UI uses it), one-line errors.

The commands need only the webserver's URL (``--url``, else ``DAGSTER_UI_URL``, else the local stack's): the runs
they launch go through the daemon's run queue with the code location's own environment, so a plain shell without
the integration's variables is enough. Anything that goes wrong is a :class:`CliError` with one line of text; the
commands print it and exit with code 2.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import requests

LOCATION = "integration"
LOCAL_URL = "http://127.0.0.1:3000"
DONE = {"SUCCESS", "FAILURE", "CANCELED"}

LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } }
                              ... on PythonError { message } } } }
    ... on PythonError { message }
  }
}"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on UnauthorizedError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on PresetNotFoundError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
  }
}"""

STATUS = """
query Status($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } ... on PythonError { message }
                                                         ... on RunNotFoundError { message } } }"""


class CliError(RuntimeError):
    """One line for the operator."""


def default_url() -> str:
    return (os.environ.get("DAGSTER_UI_URL") or "").strip() or LOCAL_URL


class Webserver:
    def __init__(self, url: str, timeout: float = 30):
        if not url.startswith(("http://", "https://")):
            raise CliError(f"--url {url!r} is not an http(s) URL of the Dagster webserver")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._repository: str | None = None

    def graphql(self, query: str, variables: dict) -> dict:
        try:
            response = requests.post(
                f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise CliError(
                f"cannot reach the Dagster webserver at {self.url} ({type(exc).__name__}): is it running? "
                "Pass its address with --url or DAGSTER_UI_URL"
            ) from None
        if response.status_code != 200:
            raise CliError(
                f"{self.url}/graphql answered HTTP {response.status_code}: is {self.url} the Dagster "
                "webserver (and the path prefix, if any, included)?"
            )
        try:
            body = response.json()
        except ValueError:
            raise CliError(f"{self.url}/graphql did not answer JSON: is {self.url} the Dagster webserver?") from None
        if body.get("errors"):
            raise CliError(
                "the webserver refused the request: "
                + "; ".join(str(e.get("message", "?")).splitlines()[0] for e in body["errors"])
            )
        return body["data"]

    def repository(self, timeout: float = 120) -> str:
        """The code location's repository, once loaded (the webserver answers before it has loaded it)."""
        if self._repository:
            return self._repository
        deadline = time.monotonic() + timeout
        while True:
            workspace = self.graphql(LOCATIONS, {})["workspaceOrError"]
            entries = {e["name"]: e for e in workspace.get("locationEntries") or []}
            entry = entries.get(LOCATION) or {}
            location = entry.get("locationOrLoadError") or {}
            if entry.get("loadStatus") == "LOADED" and location.get("repositories"):
                self._repository = location["repositories"][0]["name"]
                return self._repository
            if location.get("__typename") == "PythonError":
                first = (location.get("message") or "").strip().splitlines()
                raise CliError(f"code location {LOCATION!r} failed to load: {first[0] if first else 'error'}")
            if entries and LOCATION not in entries:
                raise CliError(
                    f"the webserver at {self.url} has no code location {LOCATION!r} "
                    f"(it has {', '.join(sorted(entries))})"
                )
            if time.monotonic() > deadline:
                raise CliError(
                    f"code location {LOCATION!r} not loaded after {timeout:.0f} s (status {entry.get('loadStatus')})"
                )
            time.sleep(1)

    def launch(self, job: str, run_config: dict, tags: dict[str, str]) -> str:
        """Launch a run of ``job`` (queued for the daemon, as from the launchpad); returns its run id."""
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": self.repository(), "jobName": job},
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        outcome = self.graphql(LAUNCH, {"params": params})["launchRun"]
        if outcome["__typename"] != "LaunchRunSuccess":
            detail = (
                outcome.get("message")
                or "; ".join(e["message"] for e in outcome.get("errors") or [])
                or outcome["__typename"]
            )
            raise CliError(f"launching {job}: {str(detail).splitlines()[0]}")
        return outcome["run"]["runId"]

    def run_link(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    def status(self, run_id: str) -> str:
        outcome = self.graphql(STATUS, {"runId": run_id})["runOrError"]
        if outcome["__typename"] != "Run":
            raise CliError(f"run {run_id}: {outcome.get('message', outcome['__typename'])}")
        return outcome["status"]

    def wait(self, run_ids: Sequence[str], timeout: float = 3600, poll: float = 2) -> dict[str, str]:
        """Each run's final status (SUCCESS, FAILURE, CANCELED)."""
        deadline = time.monotonic() + timeout
        final: dict[str, str] = {}
        while True:
            for run_id in run_ids:
                if run_id not in final and (status := self.status(run_id)) in DONE:
                    final[run_id] = status
            if len(final) == len(run_ids):
                return final
            if time.monotonic() > deadline:
                raise CliError(f"{len(run_ids) - len(final)} runs did not finish within {timeout:.0f} s")
            time.sleep(poll)
