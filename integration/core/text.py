"""Text hygiene: what may reach a database or a queue, and how names are compared (docs/decisions.md, "Text").

* :func:`clean` replaces the characters no database of ours stores: NUL (PostgreSQL refuses it in text) and lone
  surrogates (``"\\ud800"``, which JSON may carry as an escape but UTF-8 cannot encode), with U+FFFD, and counts them;
* :func:`queue_safe` does the same for SQS, which accepts only the XML character range in message attributes and
  bodies;
* :func:`clip` caps an untrusted value that goes into a reason, a log line or run metadata;
* :func:`caseless` is the one normalisation staff names are matched with, the same on every database.
"""

from __future__ import annotations

import re
import unicodedata

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# SQS: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF; anything else is refused by the queue.
_NOT_FOR_QUEUE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
CLIP = 200


def clean(text: str) -> tuple[str, int]:
    """``text`` with NUL and lone surrogates replaced by U+FFFD, and how many were replaced."""
    if not _UNSTORABLE.search(text):
        return text, 0
    return _UNSTORABLE.subn(REPLACEMENT, text)


def queue_safe(text: str) -> str:
    """``text`` with every character SQS refuses (control characters, lone surrogates, U+FFFE/U+FFFF) replaced."""
    return _NOT_FOR_QUEUE.sub(REPLACEMENT, text)


def clip(value: object, limit: int = CLIP) -> str:
    """An untrusted value for a reason or metadata: storable, at most ``limit`` characters (``...`` when cut)."""
    try:
        text = queue_safe(value if isinstance(value, str) else str(value))
    except ValueError:  # an int of more than 4,300 digits has no str()
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def caseless(name: str) -> str:
    """Unicode canonical caseless form (NFD, casefold, NFD): ``"Émile"``, ``"ÉMILE"`` and ``"E\\u0301mile"`` are
    one name, and so are ``"İlkay"`` and ``"i̇lkay"``. Computed in Python, never by a database's ``lower()``, whose
    answer differs between SQLite (ASCII only), PostgreSQL (its collation) and Oracle (its NLS settings)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())
