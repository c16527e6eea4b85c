"""Peek at or redrive the dead-letter queue from the command line: a ``peek_dlq_job`` or ``redrive_dlq_job`` run,
as the launchpad launches it.

    python -m integration.cli.redrive --url http://127.0.0.1:3000 --peek
    python -m integration.cli.redrive --url https://dagster.example.internal --wait
    python -m integration.cli.redrive --park-after 0 --max-messages 100

It talks to the Dagster webserver's GraphQL API (as the UI does) and needs nothing else from the environment: the
run is queued for the daemon, which runs it with the code location's environment, tagged ``hmpps/trigger=cli``.
Prints the run's id and link; with ``--wait``, waits and prints how it ended (exit code 1 if it failed) and where to
read its counts. Any error is one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from ..constants import PEEK_JOB, PEEK_OP, REDRIVE_JOB, REDRIVE_OP, TRIGGER_TAG
from .webserver import CliError, Webserver, default_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m integration.cli.redrive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peek", action="store_true", help=f"only look ({PEEK_JOB}): ids, event types, reasons")
    parser.add_argument(
        "--max-messages",
        type=int,
        default=None,
        help="redrive: stop after moving this many (0 = no limit; default 10000); peek: show this many (default 50)",
    )
    parser.add_argument(
        "--park-after",
        type=int,
        default=None,
        help="leave messages already redriven this many times in the DLQ (0 = move them all; "
        "default 3). Unreadable messages are always left there",
    )
    parser.add_argument(
        "--url", default=default_url(), help="the Dagster webserver (default: DAGSTER_UI_URL, else %(default)s)"
    )
    parser.add_argument("--wait", action="store_true", help="wait until the run has finished")
    args = parser.parse_args(argv)
    job, op = (PEEK_JOB, PEEK_OP) if args.peek else (REDRIVE_JOB, REDRIVE_OP)
    config: dict[str, int] = {}
    if args.max_messages is not None:
        config["max_messages"] = args.max_messages
    if args.park_after is not None:
        if args.peek:
            parser.error("--park-after is for a redrive, not --peek")
        config["park_after"] = args.park_after
    try:
        if any(v < 0 for v in config.values()):
            raise CliError("--max-messages and --park-after cannot be negative")
        server = Webserver(args.url)
        run_id = server.launch(job, {"ops": {op: {"config": config}}}, {TRIGGER_TAG: "cli"})
        print(f"{job} run {run_id} launched: {server.run_link(run_id)}", flush=True)
        if args.wait:
            status = server.wait([run_id])[run_id]
            print(
                f"{job} run {run_id}: {status} (counts and the message table: the run's step output, "
                f"{server.run_link(run_id)})"
            )
            return 0 if status == "SUCCESS" else 1
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (a launched run keeps going)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
