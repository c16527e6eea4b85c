"""Optional settings: the one way the project reads them from the environment.

Required settings (the Delius URL, the queue URL, the HMPPS URLs and credentials) are Dagster ``EnvVar`` fields of
the resources (resources.py). Everything optional goes through this module, when it is used (never at import time,
except the crons of schedules, which Dagster needs when the code location loads):

* :func:`text` -- one optional string (``DELIUS_USERNAME``, ``AWS_REGION``, ``NOTIFY_WEBHOOK_URL``, ...);
* :func:`load` -- a typed group: a dataclass or a Dagster ``Config``/resource whose scalar fields are overridden by
  ``{PREFIX}{FIELD}`` variables (``CONSUMER_TICK_SECONDS``, ``RECONCILIATION_AUTO_REPAIR``, ...);
* :func:`cron` -- a schedule's cron string.

A bad value never stops anything: it is logged (``invalid_setting``) and the default is used. A typo in an optional
setting must not take the queue sensor down with the code location.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, overload

from .core.logfmt import kv

log = logging.getLogger(__name__)

T = TypeVar("T")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@overload
def text(name: str, default: str) -> str: ...
@overload
def text(name: str, default: str | None = None) -> str | None: ...
def text(name: str, default: str | None = None) -> str | None:
    """The variable's value, stripped; ``default`` when it is unset or blank."""
    value = (os.environ.get(name) or "").strip()
    return value or default


def load(
    cls: type[T],
    prefix: str,
    *,
    names: Mapping[str, str] | None = None,
    minimums: Mapping[str, float] | None = None,
    base: T | None = None,
) -> T:
    """An instance of ``cls`` (a dataclass or a pydantic model: ``dg.Config``, ``dg.ConfigurableResource``) whose
    scalar fields (int, float, bool, str) take ``{prefix}{FIELD}`` when that variable is set (``names`` maps a field
    to another variable name); other fields keep ``base``'s values, else the defaults. Numbers below ``minimums``
    are raised to them."""
    values = dict(_current_values(base)) if base is not None else {}
    names = names or {}
    for field_name, kind in _scalar_fields(cls).items():
        variable = names.get(field_name, f"{prefix}{field_name.upper()}")
        raw = text(variable)
        if raw is None:
            continue
        try:
            value = _parse(raw, kind)
        except ValueError:
            log.warning(kv("invalid_setting", setting=variable, value=raw[:100], using="default"))
            continue
        minimum = (minimums or {}).get(field_name)
        if minimum is not None and isinstance(value, (int, float)) and value < minimum:
            log.warning(kv("invalid_setting", setting=variable, value=raw[:100], using=minimum))
            value = kind(minimum)
        values[field_name] = value
    return cls(**values)


def cron(name: str, default: str) -> str:
    """The cron string in ``name``, or ``default`` when unset or invalid (read when the code location loads)."""
    value = text(name)
    if value is None:
        return default
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(value):
        log.warning(kv("invalid_setting", setting=name, value=value[:100], using=default))
        return default
    return value


def _parse(raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise ValueError(raw)
    return kind(raw)


def _scalar_fields(cls: type) -> dict[str, type]:
    """Field name -> type, for the fields of type int, float, bool or str (Optional[...] of those too)."""
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        candidates = {f.name: hints.get(f.name) for f in dataclasses.fields(cls)}
    else:
        candidates = {name: info.annotation for name, info in getattr(cls, "model_fields", {}).items()}
    result = {}
    for name, kind in candidates.items():
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
            kind = args[0]
        if kind in (int, float, bool, str):
            result[name] = kind
    return result


def _current_values(base: Any) -> Mapping[str, Any]:
    if dataclasses.is_dataclass(base) and not isinstance(base, type):
        return {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return {name: getattr(base, name) for name in type(base).model_fields}
