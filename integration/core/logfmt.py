"""``key=value`` log lines (logfmt) that log shippers parse without a grammar, and that hold ids, codes, counts and
reasons only: never note text, alert descriptions, tokens or message bodies.

    >>> kv("event", sqs_message_id="9f1c", action="skipped", reason="not of interest", attempt=1)
    'event sqs_message_id=9f1c action=skipped reason="not of interest" attempt=1'
"""

import json
import re
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_.:/@+,-]+$")


def value(raw: Any) -> str:
    """One value: bare when it is a plain token, else JSON-quoted (spaces, quotes, '=', non-ASCII, empty); None is -."""
    if raw is None:
        return "-"
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float):
        raw = round(raw, 3)
    text = str(raw)
    return text if _BARE.match(text) else json.dumps(text)


def kv(event: str, /, **fields: Any) -> str:
    """``event key=value ...`` in the order given."""
    return " ".join([event] + [f"{key}={value(v)}" for key, v in fields.items()])
