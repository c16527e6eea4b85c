"""The fast tier: no network at all. ``make unit`` runs it in a network namespace where it can; this refuses
internet and loopback connections anyway, so a test that needs a server belongs in ``integration/`` instead."""

from __future__ import annotations

import socket

import pytest


class NetworkUsed(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    real_connect = socket.socket.connect

    def refuse(self, address):
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise NetworkUsed(f"the unit tier must not use the network (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(socket.socket(), address))
