"""Interpreter-start conveniences for the Dagster commands of this project.

1. Point DAGSTER_HOME at this repository when a Dagster command is started in its root without one.
2. Let ``dagster-daemon`` reload its code locations every ``DAEMON_CODE_RELOAD_SECONDS`` (default 900) instead of
   every 60 s, and ping its code server every ``DAEMON_CODE_SERVER_HEARTBEAT_SECONDS`` (default 5) instead of every
   second (``_slow_down_the_daemons_code_reload``).

Loaded at interpreter start by ``prison_case_notes_dagster_home.pth`` (installed with the package), so that
``dagster-daemon run -w workspace.yaml`` in the repo root works with only the README's required variables set: Dagster
itself requires DAGSTER_HOME and would otherwise refuse to start. It does nothing when DAGSTER_HOME is set, or when
the current directory is not this project's root (it must hold this project's workspace.yaml and dagster.yaml).
"""

import os


def _point_dagster_home_at_repo_root() -> None:
    if os.environ.get("DAGSTER_HOME"):
        return
    try:
        cwd = os.getcwd()
        with open(os.path.join(cwd, "workspace.yaml"), encoding="utf-8") as workspace:
            ours = "integration.definitions" in workspace.read()
    except OSError:
        return
    if ours and os.path.isfile(os.path.join(cwd, "dagster.yaml")):
        os.environ["DAGSTER_HOME"] = cwd


_point_dagster_home_at_repo_root()


DEFAULT_CODE_RELOAD_SECONDS = 900
DEFAULT_HEARTBEAT_SECONDS = 5


def _slow_down_the_daemons_code_reload() -> None:
    """``dagster-daemon run`` with a ``python_module`` workspace (the operator's contract) replaces its code server
    process every 60 s (``RELOAD_WORKSPACE_INTERVAL`` in ``dagster/_daemon/controller.py``, a constant): a new process
    importing Dagster and the code location each minute, ~2 CPU-s each, the larger part of an idle daemon's CPU
    (docs/performance.md). Code changes reach a running daemon through a deploy, which restarts it, so the reload
    only needs to be occasional. This sets the constant when that module is imported (nothing else is touched, and
    nothing happens in any other process); ``DAEMON_CODE_RELOAD_SECONDS=60`` restores Dagster's own interval, which
    ``dagster dev`` keeps unless the variable is set.

    Likewise the daemon's client pings its code server every second (``CLIENT_HEARTBEAT_INTERVAL`` in
    ``dagster/_grpc/client.py``), a gRPC call on both sides that cost ~29 CPU-s an hour of an idle daemon; the server
    exits after 20 s without one (``DAEMON_GRPC_SERVER_HEARTBEAT_TTL``). ``DAEMON_CODE_SERVER_HEARTBEAT_SECONDS``
    (default 5, at most a quarter of that TTL: four pings per window) sets it in the daemon only."""
    import importlib
    import importlib.abc
    import importlib.util
    import sys

    if not os.environ.get("DAEMON_CODE_RELOAD_SECONDS") and os.environ.get("DAGSTER_IS_DEV_CLI"):
        return  # under `dagster dev` (the local stack) code edits should reach the daemon within Dagster's minute
    try:
        seconds = max(1, int(os.environ.get("DAEMON_CODE_RELOAD_SECONDS") or DEFAULT_CODE_RELOAD_SECONDS))
    except ValueError:
        seconds = DEFAULT_CODE_RELOAD_SECONDS
    try:
        heartbeat = float(os.environ.get("DAEMON_CODE_SERVER_HEARTBEAT_SECONDS") or DEFAULT_HEARTBEAT_SECONDS)
    except ValueError:
        heartbeat = DEFAULT_HEARTBEAT_SECONDS
    target = "dagster._daemon.controller"

    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target_module=None):
            if name != target:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                if isinstance(getattr(module, "RELOAD_WORKSPACE_INTERVAL", None), (int, float)):
                    module.RELOAD_WORKSPACE_INTERVAL = seconds
                ttl = getattr(module, "DAEMON_GRPC_SERVER_HEARTBEAT_TTL", None)
                client = sys.modules.get("dagster._grpc.client") or importlib.import_module("dagster._grpc.client")
                if isinstance(ttl, (int, float)) and isinstance(
                    getattr(client, "CLIENT_HEARTBEAT_INTERVAL", None), (int, float)
                ):
                    vars(client)["CLIENT_HEARTBEAT_INTERVAL"] = min(max(1.0, heartbeat), ttl / 4)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    if target not in sys.modules:
        sys.meta_path.insert(0, _Hook())


_slow_down_the_daemons_code_reload()
