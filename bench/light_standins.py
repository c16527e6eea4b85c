#!/usr/bin/env python
"""Light stand-ins for the pipeline benchmark: HMPPS Auth's token endpoint and the Case Notes API's GET of one case
note, from memory, over HTTP/1.1 with keep-alive (as the real APIs behave), standard library only.

The project's stand-ins (``integration.local.standins``) are faithful (JWT checks, every route, faults) but answer
``Connection: close`` and cost a few milliseconds of CPU a request, so on a 2-core machine they are what a benchmark
measures. These answer a GET in well under a millisecond, so the contenders' own costs show (docs/performance.md).

    python bench/light_standins.py --auth-port A --case-notes-port C --client-id ID --client-secret SECRET

``PUT /__admin/case-notes`` (a JSON list) stores case notes; ``GET /__admin/health`` answers 200.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class Store:
    def __init__(self) -> None:
        self.notes: dict[str, bytes] = {}
        self.lock = threading.Lock()


def handler(store: Store, client_id: str, client_secret: str, token: str):
    expected = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body are two writes: without TCP_NODELAY a kept-alive connection waits for the client's
            # delayed ACK (~40 ms) before the body goes out.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_POST(self) -> None:
            form = parse_qs(self._body().decode())
            if self.path.endswith("/oauth/token") and form.get("grant_type") == ["client_credentials"]:
                if self.headers.get("Authorization") == expected or (
                    form.get("client_id") == [client_id] and form.get("client_secret") == [client_secret]
                ):
                    return self._send(
                        200, json.dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600}).encode()
                    )
                return self._send(401, b'{"error":"invalid_client"}')
            self._send(404, b"{}")

        def do_PUT(self) -> None:
            if self.path == "/__admin/case-notes":
                notes = json.loads(self._body())
                with store.lock:
                    for note in notes:
                        store.notes[str(note["caseNoteId"])] = json.dumps(note).encode()
                return self._send(200, json.dumps({"stored": len(notes)}).encode())
            self._send(404, b"{}")

        def do_GET(self) -> None:
            if self.path == "/__admin/health":
                return self._send(200, b'{"status":"UP"}')
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self._send(401, b"{}")
            note = (
                store.notes.get(self.path.rstrip("/").rsplit("/", 1)[-1])
                if self.path.startswith("/case-notes/")
                else None
            )
            self._send(200, note) if note is not None else self._send(404, b'{"status":404}')

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--auth-port", type=int, required=True)
    parser.add_argument("--case-notes-port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    args = parser.parse_args()
    store, token = Store(), secrets.token_urlsafe(24)
    servers = [
        ThreadingHTTPServer((args.host, port), handler(store, args.client_id, args.client_secret, token))
        for port in (args.auth_port, args.case_notes_port)
    ]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
