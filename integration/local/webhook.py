"""A stand-in for a Slack incoming webhook: records (and prints) the JSON posted to it, for tests and the local stack.

    with WebhookStandIn.start() as webhook:        # 127.0.0.1, a free port
        os.environ["NOTIFY_WEBHOOK_URL"] = webhook.url
        ...
        assert webhook.messages[0]["text"].startswith("Dagster run failed")

    python -m integration.local.webhook --port 9095   # then NOTIFY_WEBHOOK_URL=http://127.0.0.1:9095/webhook

``status`` makes it answer with an error (to test that senders shrug it off).
"""

import argparse
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookStandIn:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, on_message: Callable[[dict[str, Any]], None] | None = None
    ):
        self.messages: list[dict[str, Any]] = []
        self.status = 200
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    message = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    message = None
                status = stand_in.status
                if isinstance(message, dict) and status < 400:
                    with stand_in._lock:
                        stand_in.messages.append(message)
                    if on_message:
                        on_message(message)
                elif status < 400:
                    status = 400  # Slack answers "invalid_payload"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 400 else b"error")

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-stand-in", daemon=True)

    @classmethod
    def start(cls, host: str = "127.0.0.1", port: int = 0, **kwargs) -> "WebhookStandIn":
        stand_in = cls(host, port, **kwargs)
        stand_in._thread.start()
        return stand_in

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's address: typeshed also allows bytes (AF_UNIX)
        return f"http://{host}:{port}/webhook"

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
        self.status = 200

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "WebhookStandIn":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the chat notifications the integration posts.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    args = parser.parse_args(argv)
    stand_in = WebhookStandIn.start(args.host, args.port, on_message=lambda m: print(m.get("text", ""), flush=True))
    print(f"webhook stand-in: NOTIFY_WEBHOOK_URL={stand_in.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stand_in.stop()


if __name__ == "__main__":
    main()
