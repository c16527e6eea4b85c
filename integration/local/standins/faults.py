"""Fault injection and the request log of the stand-ins.

A fault is set per route name (``ROUTES``) or for every route (``"*"``). When a request arrives on a route with an
active fault, the fault may add latency, and then answers with a fixed status or a malformed JSON body instead of the
real answer. ``hang`` holds the request without answering (a hung upstream) until the fault is cleared, the stand-ins
are reset or stopped, or ``HANG_LIMIT_SECONDS`` pass; then it answers 503 (or ``status``). ``location`` adds a
``Location`` header (with a 3xx ``status``: a redirect). ``times`` limits a fault to the next N matching calls ("fail
N times then succeed"); ``probability`` applies it to a share of calls with its own seeded RNG, so fault-injection
suites are reproducible.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

ROUTES: tuple[str, ...] = (
    "token",
    "jwks",
    "get_case_note",
    "search_case_notes",
    "get_alert",
    "person_alerts",
)
ANY_ROUTE = "*"
HANG_LIMIT_SECONDS = 120.0  # a hung request is answered after this long at the latest, so nothing waits forever


@dataclass
class Fault:
    """What to do to matching requests. With neither ``status`` nor ``malformed``, only the latency applies."""

    status: int | None = None
    times: int | None = None
    latency_ms: int = 0
    malformed: bool = False
    probability: float | None = None
    seed: int | None = None
    retry_after: int | None = None
    body: str | None = None
    hang: bool = False
    location: str | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.status is not None and not 100 <= int(self.status) <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.times is not None and int(self.times) < 1:
            raise ValueError("times must be at least 1")
        if int(self.latency_ms) < 0:
            raise ValueError("latency_ms must not be negative")
        if self.probability is not None and not 0.0 <= float(self.probability) <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        self._rng = random.Random(self.seed)

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        allowed = {
            "status",
            "times",
            "latency_ms",
            "malformed",
            "probability",
            "seed",
            "retry_after",
            "body",
            "hang",
            "location",
        }
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Applied:
    """The part of a fault that fires on one request."""

    latency_ms: int
    status: int | None
    malformed: bool
    retry_after: int | None
    body: str | None
    hang: bool = False
    location: str | None = None

    @property
    def replaces_response(self) -> bool:
        return self.status is not None or self.malformed or self.hang or self.location is not None


class FaultRegistry:
    """The faults of one set of stand-ins (shared by the three apps). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._release = threading.Event()  # set to let every hung request go

    @staticmethod
    def _check_route(route: str) -> None:
        if route != ANY_ROUTE and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; known: {', '.join(ROUTES)} or '*'")

    def set(self, route: str, fault: Fault) -> Fault:
        self._check_route(route)
        with self._lock:
            self._faults[route] = fault
        return fault

    def set_fault(self, route: str, **spec: Any) -> Fault:
        """``set_fault("get_case_note", status=503, times=2)`` and so on (see ``Fault``)."""
        return self.set(route, Fault(**spec))

    def clear(self, route: str | None = None) -> None:
        """Remove the fault of ``route``, or every fault; requests held by a ``hang`` fault are let go."""
        with self._lock:
            if route is None:
                self._faults.clear()
            else:
                self._faults.pop(route, None)
        self.release_hung()

    def release_hung(self) -> None:
        """Answer every request a ``hang`` fault is holding (later hangs wait again)."""
        with self._lock:
            release, self._release = self._release, threading.Event()
        release.set()

    def hang(self, limit: float = HANG_LIMIT_SECONDS) -> None:
        """Hold the calling request until ``release_hung`` (or ``limit`` seconds)."""
        with self._lock:
            release = self._release
        release.wait(limit)

    clear_faults = clear

    def active(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {route: fault.describe() for route, fault in self._faults.items()}

    def take(self, route: str) -> Applied | None:
        """Decide whether a fault fires on this request; consumes one of its ``times``."""
        with self._lock:
            key = route if route in self._faults else ANY_ROUTE
            fault = self._faults.get(key)
            if fault is None:
                return None
            if fault.probability is not None and fault._rng.random() >= fault.probability:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[key]
            return Applied(
                fault.latency_ms,
                fault.status,
                fault.malformed,
                fault.retry_after,
                fault.body,
                fault.hang,
                fault.location,
            )


class RequestLog:
    """Method, path, query, status and duration of every request per route. Never bodies or headers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def start(self, route: str, method: str, path: str, query: str) -> dict[str, Any]:
        entry = {
            "route": route,
            "method": method,
            "path": path,
            "query": query,
            "status": None,
            "at": time.time(),
            "durationMs": None,
        }
        with self._lock:
            self._entries.append(entry)
        return entry

    def finish(self, entry: dict[str, Any], status: int) -> None:
        with self._lock:
            entry["status"] = status
            entry["durationMs"] = round((time.time() - entry["at"]) * 1000, 1)

    def entries(self, route: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries if route is None or e["route"] == route]

    def count(self, route: str | None = None) -> int:
        with self._lock:
            return sum(1 for e in self._entries if route is None or e["route"] == route)

    def counts(self) -> dict[str, int]:
        with self._lock:
            result: dict[str, int] = {}
            for e in self._entries:
                result[e["route"]] = result.get(e["route"], 0) + 1
            return result

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
