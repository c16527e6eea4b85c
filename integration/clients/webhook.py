"""A Slack-compatible incoming webhook: POST a JSON payload, say why it failed (never the URL: it is a secret)."""

from __future__ import annotations

from typing import Any

import requests


def post_json(url: str, payload: dict[str, Any], timeout: float) -> str | None:
    """POST the payload without following redirects; returns why it failed, or None."""
    try:
        response = requests.post(url, json=payload, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return f"webhook not reachable ({type(exc).__name__})"
    if not 200 <= response.status_code < 300:
        return f"webhook answered HTTP {response.status_code}"
    return None
