"""Launch a linkage backfill for many NOMS numbers from the command line, through Dagster's backfill mechanism.

    python -m integration.cli.backfill --url http://127.0.0.1:3000 A1234BC B2345CD
    python -m integration.cli.backfill --url http://127.0.0.1:3000 --file noms.txt --wait

It talks to the Dagster webserver's GraphQL API (as the UI does): adds each NOMS number as a dynamic partition of
``noms_number``, then launches one partition backfill of ``linked_person_contacts`` over all of them. The daemon runs
it with the asset's backfill policy (many partitions per run) under the run-queue limits, so it never starves the
live event flow. Prints the backfill id and, with ``--wait``, waits for it to finish.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import requests

from ..constants import LINKED_PERSON_CONTACTS, NOMS_PARTITIONS
from ..core.events import is_noms_number

LOCATION = "integration"
ASSET = LINKED_PERSON_CONTACTS
PARTITIONS = NOMS_PARTITIONS

ADD_PARTITION = """
mutation Add($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}"""

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on UnauthorizedError { message }
  }
}"""

STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions }
    ... on PythonError { message }
  }
}"""

LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } } } } }
  }
}"""

DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


class BackfillError(RuntimeError):
    pass


def _graphql(url: str, query: str, variables: dict, timeout: float = 30) -> dict:
    response = requests.post(f"{url.rstrip('/')}/graphql", json={"query": query, "variables": variables},
                             timeout=timeout)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise BackfillError("; ".join(e.get("message", "?") for e in body["errors"]))
    return body["data"]


def wait_for_code_location(url: str, timeout: float = 120) -> str:
    """The webserver answers before it has loaded the code location; wait until it has. Returns the repository."""
    deadline = time.monotonic() + timeout
    while True:
        workspace = _graphql(url, LOCATIONS, {})["workspaceOrError"]
        entries = {e["name"]: e for e in workspace.get("locationEntries", [])}
        entry = entries.get(LOCATION) or {}
        repositories = (entry.get("locationOrLoadError") or {}).get("repositories") or []
        if entry.get("loadStatus") == "LOADED" and repositories:
            return repositories[0]["name"]
        if time.monotonic() > deadline:
            raise BackfillError(f"code location {LOCATION!r} not loaded (status {entry.get('loadStatus')})")
        time.sleep(1)


def launch_backfill(url: str, noms_numbers: list[str], *, title: str | None = None) -> str:
    """Add the partitions and launch one backfill over them; returns the backfill id."""
    keys = sorted({n.strip().upper() for n in noms_numbers if n.strip()})
    invalid = [k for k in keys if not is_noms_number(k)]
    if invalid:
        raise BackfillError(f"not NOMS numbers: {', '.join(invalid[:10])}")
    if not keys:
        raise BackfillError("no NOMS numbers given")
    repository = wait_for_code_location(url)
    selector = {"repositoryLocationName": LOCATION, "repositoryName": repository}
    for key in keys:
        result = _graphql(url, ADD_PARTITION, {"selector": selector, "name": PARTITIONS, "key": key})
        outcome = result["addDynamicPartition"]
        if outcome["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise BackfillError(f"adding partition {key}: {outcome.get('message', outcome['__typename'])}")
    params = {"partitionNames": keys, "assetSelection": [{"path": [ASSET]}],
              "title": title or f"Linkage backfill of {len(keys)} people", "tags": [
                  {"key": "hmpps/trigger", "value": "cli"}]}
    outcome = _graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    if outcome["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"launching the backfill: {outcome.get('message', outcome['__typename'])}")
    return outcome["backfillId"]


def backfill_status(url: str, backfill_id: str) -> str:
    outcome = _graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if outcome["__typename"] != "PartitionBackfill":
        raise BackfillError(outcome.get("message", outcome["__typename"]))
    return outcome["status"]


def wait_for_backfill(url: str, backfill_id: str, timeout: float = 3600, poll: float = 2) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backfill_status(url, backfill_id)
        if status in DONE:
            return status
        time.sleep(poll)
    raise BackfillError(f"backfill {backfill_id} did not finish within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("noms", nargs="*", help="NOMS numbers")
    parser.add_argument("--file", type=Path, help="a file with one NOMS number per line")
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the Dagster webserver")
    parser.add_argument("--title", help="backfill title shown in the UI")
    parser.add_argument("--wait", action="store_true", help="wait until the backfill has finished")
    args = parser.parse_args(argv)
    noms = list(args.noms)
    if args.file:
        noms += [line.split("#", 1)[0] for line in args.file.read_text().splitlines()]
    try:
        backfill_id = launch_backfill(args.url, noms, title=args.title)
        print(f"backfill {backfill_id} launched: {args.url.rstrip('/')}/runs/b/{backfill_id}")
        if args.wait:
            status = wait_for_backfill(args.url, backfill_id)
            print(f"backfill {backfill_id}: {status}")
            return 0 if status in ("COMPLETED", "COMPLETED_SUCCESS") else 1
    except (BackfillError, requests.RequestException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
