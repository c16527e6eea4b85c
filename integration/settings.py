"""Optional settings from the environment, read when they are used, with a logged fallback on bad values.

A typo in an optional setting must never stop the code location (the queue sensor lives in it too): the default is
used and the bad value logged.
"""

import logging
import os

import dagster as dg

from .logfmt import kv

log = logging.getLogger(__name__)


def int_env(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        log.warning(kv("invalid_setting", setting=name, value=raw, using=default))
        return default
    return value if minimum is None else max(minimum, value)


def cron_from_env(name: str, default: str) -> str:
    """The cron string in ``name``, or ``default`` when unset or invalid. Read when the code location loads."""
    value = (os.environ.get(name) or "").strip()
    if not value:
        return default
    try:
        dg.ScheduleDefinition(name="cron_probe", cron_schedule=value, job_name="cron_probe")
    except dg.DagsterInvalidDefinitionError:
        log.warning(kv("invalid_setting", setting=name, value=value, using=default))
        return default
    return value
