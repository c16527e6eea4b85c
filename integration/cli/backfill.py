"""Backfill people from the command line: one ``noms_backfill_job`` run per 100 NOMS numbers, as the launchpad does.

    python -m integration.cli.backfill --url http://127.0.0.1:3000 A1234BC B2345CD
    python -m integration.cli.backfill --url https://dagster.example.internal --file noms.txt --wait

It talks to the Dagster webserver's GraphQL API (as the UI does) and needs nothing else from the environment: the
runs are queued for the daemon under the run queue's backfill limit (``hmpps/flow=backfill``, one at a time), tagged
``hmpps/trigger=cli``. Prints each run's id and link; with ``--wait``, waits and prints how each ended (exit code 1
if any failed). Any error is one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..constants import BACKFILL_JOB, BACKFILL_OP, PEOPLE_TAG, TRIGGER_TAG
from ..core.events import is_noms_number
from .webserver import CliError, Webserver, default_url

PER_RUN = 100  # noms_backfill_job's MAX_PEOPLE_PER_RUN
PEOPLE_IN_TAG = 5


def noms_numbers(values: list[str]) -> list[str]:
    keys = list(dict.fromkeys(v.strip().upper() for v in values if v.strip()))
    invalid = [k for k in keys if not is_noms_number(k)]
    if invalid:
        raise CliError(f"not NOMS numbers: {', '.join(invalid[:10])} (a NOMS number is like A1234BC)")
    if not keys:
        raise CliError("no NOMS numbers given")
    return keys


def launch_backfill(server: Webserver, people: list[str], *, trigger: str = "cli") -> list[str]:
    """One ``noms_backfill_job`` run per ``PER_RUN`` people; returns their run ids."""
    run_ids = []
    for start in range(0, len(people), PER_RUN):
        chunk = people[start : start + PER_RUN]
        tag = ",".join(chunk) if len(chunk) <= PEOPLE_IN_TAG else f"{len(chunk)} people"
        run_ids.append(
            server.launch(
                BACKFILL_JOB,
                {"ops": {BACKFILL_OP: {"config": {"noms_numbers": chunk}}}},
                {TRIGGER_TAG: trigger, PEOPLE_TAG: tag},
            )
        )
    return run_ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m integration.cli.backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("noms", nargs="*", help="NOMS numbers")
    parser.add_argument("--file", type=Path, help="a file with one NOMS number per line (# starts a comment)")
    parser.add_argument(
        "--url", default=default_url(), help="the Dagster webserver (default: DAGSTER_UI_URL, else %(default)s)"
    )
    parser.add_argument("--wait", action="store_true", help="wait until the runs have finished")
    args = parser.parse_args(argv)
    try:
        values = list(args.noms)
        if args.file:
            try:
                values += [line.split("#", 1)[0] for line in args.file.read_text().splitlines()]
            except OSError as exc:
                raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
        people = noms_numbers(values)
        server = Webserver(args.url)
        run_ids = launch_backfill(server, people)
        for n, run_id in enumerate(run_ids):
            size = min(PER_RUN, len(people) - n * PER_RUN)
            print(
                f"{BACKFILL_JOB} run {run_id} launched for {size} {'person' if size == 1 else 'people'}: "
                f"{server.run_link(run_id)}",
                flush=True,
            )
        if args.wait:
            final = server.wait(run_ids)
            for run_id in run_ids:
                print(f"{BACKFILL_JOB} run {run_id}: {final[run_id]}")
            return 0 if all(s == "SUCCESS" for s in final.values()) else 1
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (runs already launched keep going)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
