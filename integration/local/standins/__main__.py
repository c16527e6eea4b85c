"""``python -m integration.local.standins --auth-port 9090 --case-notes-port 9091 --alerts-port 9092``

Runs the three stand-ins until Ctrl-C (or SIGTERM) and prints their URLs as the project's configuration variables.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import StandIns
from .tokens import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_EXPIRES_IN


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m integration.local.standins", description=__doc__.split("\n\n")[-1])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--auth-port", type=int, default=9090)
    parser.add_argument("--case-notes-port", type=int, default=9091)
    parser.add_argument("--alerts-port", type=int, default=9092)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--expires-in", type=int, default=DEFAULT_EXPIRES_IN, help="token lifetime in seconds")
    args = parser.parse_args(argv)

    standins = StandIns.start(
        args.host,
        args.auth_port,
        args.case_notes_port,
        args.alerts_port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        expires_in=args.expires_in,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for name, url in standins.urls().items():
        print(f"{name}={url}", flush=True)
    print("Admin: /__admin/ on each of them. Ctrl-C to stop.", file=sys.stderr, flush=True)
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        standins.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
