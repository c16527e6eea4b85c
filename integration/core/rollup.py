"""Contacts per hour and per day (pure): which clock hours and days are complete and not yet reported, and the sums
of the counts the ``delius_contacts`` reports carry.

Every ``delius_contacts`` materialization carries int metadata ``created, updated, moved, unchanged, skipped,
failed`` for the events it covers, whatever its cadence (a batch, a chunk). A rollup adds them up over one window
of Europe/London wall-clock time (an hour, a day), so that the UI plots contacts per hour and per day over time.
Counts only: no ids, no text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .times import LONDON

COUNTS = ("created", "updated", "moved", "unchanged", "skipped", "failed")
HOUR, DAY = "hour", "day"
MAX_CATCH_UP = {HOUR: 48, DAY: 7}  # windows reported at most per evaluation after a gap (daemon down)


@dataclass(frozen=True)
class Window:
    kind: str  # hour | day
    start: float  # epoch seconds, inclusive
    end: float  # epoch seconds, exclusive

    @property
    def label(self) -> str:
        start = datetime.fromtimestamp(self.start, LONDON)
        if self.kind == DAY:
            return start.strftime("%Y-%m-%d")
        return f"{start:%Y-%m-%d %H:00}-{datetime.fromtimestamp(self.end, LONDON):%H:00}"


def window_start(kind: str, at: float) -> float:
    """Start (epoch seconds) of the London hour or day holding ``at``."""
    local = datetime.fromtimestamp(at, LONDON)
    if kind == HOUR:
        return local.replace(minute=0, second=0, microsecond=0).timestamp()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _next(kind: str, start: float) -> float:
    local = datetime.fromtimestamp(start, LONDON)
    if kind == HOUR:
        return start + 3600  # London offsets are whole hours: an hour is 3,600 s, even across a clock change
    day = (local + timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, tzinfo=LONDON).timestamp()


def due_windows(kind: str, last_end: float | None, now: float) -> list[Window]:
    """The complete windows after ``last_end`` (the end of the last one reported) up to ``now``; with nothing reported
    yet, only the latest complete window. At most ``MAX_CATCH_UP[kind]``, the latest ones."""
    current = window_start(kind, now)
    if last_end is None:
        previous = window_start(kind, current - 1)
        return [Window(kind, previous, current)]
    windows: list[Window] = []
    start = window_start(kind, last_end)
    while start < current:
        end = _next(kind, start)
        if end > current:
            break
        windows.append(Window(kind, start, end))
        start = end
    return windows[-MAX_CATCH_UP[kind] :]


def add_counts(reports: Iterable[Mapping[str, object]]) -> dict[str, int]:
    """The sums of ``COUNTS`` over reports' metadata (plain numbers or metadata values), plus ``events`` (their total)
    and ``reports`` (how many were added)."""
    totals = dict.fromkeys(COUNTS, 0)
    n = 0
    for metadata in reports:
        n += 1
        for name in COUNTS:
            value = getattr(metadata.get(name), "value", metadata.get(name))
            if isinstance(value, int) and not isinstance(value, bool):
                totals[name] += value
    return {**totals, "events": sum(totals.values()), "reports": n}


BACKFILL_COUNTS = ("created", "updated", "moved")


def add_backfill_counts(reports: Iterable[Mapping[str, object]]) -> dict[str, int]:
    """What backfills wrote, from ``linked_person_contacts`` partition reports (``case_notes_<action>`` and
    ``alerts_<action>``): ``created_by_backfill``, ``updated_by_backfill``, ``moved_by_backfill`` and
    ``people_backfilled`` (named so that the UI, which orders plots by name, shows ``created`` first)."""
    totals = {f"{a}_by_backfill": 0 for a in BACKFILL_COUNTS}
    people = 0
    for metadata in reports:
        people += 1
        for action in BACKFILL_COUNTS:
            for kind in ("case_notes", "alerts"):
                value = getattr(metadata.get(f"{kind}_{action}"), "value", metadata.get(f"{kind}_{action}"))
                if isinstance(value, int) and not isinstance(value, bool):
                    totals[f"{action}_by_backfill"] += value
    return {**totals, "people_backfilled": people}
