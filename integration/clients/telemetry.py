"""Emits the reference's telemetry records (``core/telemetry.py``): a logfmt line each, and OpenTelemetry log records.

* **The log line** is ``{event} key=value ...`` (logfmt, ``core/logfmt.py``), written where ``TELEMETRY_LOG`` says:
  ``stdout`` (the default): straight to the process's standard output -- in a run, the run's compute log (the UI's
  *stdout* of the step) and the pod's log, where log pipelines read -- without a write to Dagster's storage per line;
  ``run``: also through the ``integration.telemetry`` logger at INFO into the run's event log (``python_logs`` in
  dagster.yaml), which costs a storage write per line (~7 ms on PostgreSQL, docs/performance.md); ``off``: no line.
* **OpenTelemetry**: each record is also a log record through the OpenTelemetry API (``opentelemetry-api``, the only
  OpenTelemetry package the project depends on): ``event_name`` and body are the event's name, the attributes its
  properties plus ``microsoft.custom_event.name`` (which Azure Monitor's exporter turns into a ``customEvents`` row of
  that name, where the reference's dashboards look). Without an SDK configured the API is a no-op.

How an operator plugs an exporter in (``docs/operations.md`` §8): install an SDK and an exporter in the image, and
either name a setup function in ``TELEMETRY_SETUP`` (``package.module:function``, called once per process before the
first record, e.g. ``azure.monitor.opentelemetry:configure_azure_monitor``, which reads
``APPLICATIONINSIGHTS_CONNECTION_STRING``), or start the processes under ``opentelemetry-instrument`` with the
``OTEL_*`` variables. A setup that fails is logged once and the log lines go on.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from collections.abc import Iterable

from integration import settings
from integration.core.logfmt import kv
from integration.core.telemetry import TelemetryRecord

log = logging.getLogger("integration.telemetry")

SETUP_VARIABLE = "TELEMETRY_SETUP"
LOG_VARIABLE = "TELEMETRY_LOG"
LOG_DESTINATIONS = ("run", "stdout", "off")
DEFAULT_DESTINATION = "stdout"  # a storage write per line would halve a backlog's rate (docs/performance.md)
INSTRUMENTATION_SCOPE = "prison-case-notes-to-probation"
AZURE_CUSTOM_EVENT = "microsoft.custom_event.name"

_setup_lock = threading.Lock()
_setup_done = False
_warned_destination = False


def emit(records: Iterable[TelemetryRecord]) -> None:
    """Log and export each record. Never raises: telemetry must not fail the work it reports on."""
    records = list(records)
    if not records:
        return
    otel = _otel_logger()
    destination = _log_destination()
    for record in records:
        line = kv(record.name, **record.properties)
        if destination == "run":
            log.info(line)
        elif destination == "stdout":
            print(line, file=sys.stdout, flush=False)
        if otel is not None:
            try:
                _export(otel, record)
            except Exception:  # an exporter's problem is not the merge's
                log.debug("opentelemetry emit failed", exc_info=True)
    if destination == "stdout":
        sys.stdout.flush()


def _log_destination() -> str:
    global _warned_destination
    value = (settings.text(LOG_VARIABLE, DEFAULT_DESTINATION) or DEFAULT_DESTINATION).lower()
    if value not in LOG_DESTINATIONS:
        if not _warned_destination:
            _warned_destination = True
            log.warning(kv("invalid_setting", setting=LOG_VARIABLE, value=value[:100], using=DEFAULT_DESTINATION))
        return DEFAULT_DESTINATION
    return value


def _export(otel, record: TelemetryRecord) -> None:
    from opentelemetry._logs import LogRecord, SeverityNumber

    now = time.time_ns()
    otel.emit(
        LogRecord(
            timestamp=now,
            observed_timestamp=now,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=record.name,
            event_name=record.name,
            attributes={**record.properties, AZURE_CUSTOM_EVENT: record.name},
        )
    )


def _otel_logger():
    """The OpenTelemetry logger of the global provider (after the operator's setup, once), or None without the API."""
    _run_setup_once()
    provider = _logger_provider()
    return provider.get_logger(INSTRUMENTATION_SCOPE) if provider is not None else None


def _logger_provider():
    try:
        from opentelemetry._logs import get_logger_provider
    except ImportError:  # pragma: no cover - a dependency of the project; tolerated if an image lacks it
        return None
    return get_logger_provider()


def _run_setup_once() -> None:
    global _setup_done
    if _setup_done:
        return
    with _setup_lock:
        if _setup_done:
            return
        _setup_done = True
        target = settings.text(SETUP_VARIABLE)
        if target:
            run_setup(target)


def run_setup(target: str) -> bool:
    """Import ``package.module:function`` and call it without arguments; True when it ran."""
    module_name, _, attribute = target.partition(":")
    try:
        if not module_name.strip() or not attribute.strip():
            raise ValueError("expected package.module:function")
        setup = getattr(importlib.import_module(module_name.strip()), attribute.strip())
        setup()
    except Exception as exc:  # a misconfigured exporter must not stop the runs: the log lines still go out
        log.warning(
            kv("telemetry_setup_failed", setting=SETUP_VARIABLE, target=target[:100], error=type(exc).__name__),
            exc_info=True,
        )
        return False
    log.info(kv("telemetry_setup", setting=SETUP_VARIABLE, target=target[:100]))
    return True


def reset_for_tests() -> None:
    """Run the setup again at the next record (tests that change ``TELEMETRY_SETUP``)."""
    global _setup_done
    with _setup_lock:
        _setup_done = False
