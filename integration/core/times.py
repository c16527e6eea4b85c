"""Times as Delius keeps them: naive Europe/London wall-clock datetimes, and the ISO-8601 forms the sources send."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LONDON = ZoneInfo("Europe/London")

_ISO_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2})(?::?(\d{2}))?)?(?:\[([^\]]+)\])?"
)


class NotADateTime(ValueError):
    """The text is not an ISO-8601 date-time this project reads (the message never holds the value)."""


def london_now() -> datetime:
    """Now as Delius stores it: naive Europe/London wall-clock time."""
    return datetime.now(LONDON).replace(tzinfo=None)


def parse_iso(value: str, *, zone_ids: bool = True) -> tuple[datetime, tzinfo | None]:
    """``YYYY-MM-DDTHH:MM[:SS[.f{1,9}]]`` with an optional ``Z`` or ``+HH:MM[:SS]`` offset and an optional trailing
    ``[Region/City]`` zone id -> (naive datetime, its zone or None). Fractions beyond microseconds are truncated. A
    zone id is used only when there is no offset (and only with ``zone_ids``). Raises :class:`NotADateTime`."""
    match = _ISO_DATETIME.fullmatch(value.strip())
    if match is None:
        raise NotADateTime("not an ISO date-time")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m, off_s, zone_id = match.groups()
    try:
        naive = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "").ljust(6, "0")[:6]),
        )
        if zulu:
            return naive, UTC
        if sign:
            offset = timedelta(hours=int(off_h), minutes=int(off_m), seconds=int(off_s or 0))
            return naive, timezone(-offset if sign == "-" else offset)
        if zone_id and zone_ids:
            return naive, ZoneInfo(zone_id)
    except (ValueError, ZoneInfoNotFoundError, OSError, OverflowError):
        raise NotADateTime("not a valid date-time") from None
    return naive, None


def to_london(value: str | datetime) -> datetime:
    """ISO date-time (or datetime) -> naive Europe/London. No offset = already London wall clock; with an offset, Z
    or a zone id = converted. Raises :class:`NotADateTime`."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=None)
        return value.astimezone(LONDON).replace(tzinfo=None)
    if not isinstance(value, str):
        raise NotADateTime("not an ISO date-time")
    naive, zone = parse_iso(value)
    if zone is None:
        return naive
    try:
        return naive.replace(tzinfo=zone).astimezone(LONDON).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        raise NotADateTime("not a valid date-time") from None


def format_delius_datetime(value: datetime) -> str:
    """``dd/MM/yyyy HH:mm:ss``, the date-time format Delius shows. Aware values are converted to London first."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(LONDON)
    return f"{value.day:02d}/{value.month:02d}/{value.year:04d} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"
