"""What a merge into Delius did with each draft, and the errors a contact store raises (standard library only).

The flows (event batches, backfills, reconciliation repairs) and the Dagster shell read these; the Delius store
produces them. Reasons carry ids and codes only: they end up in run metadata and logs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(str, enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    MOVED = "moved"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"


REASON_OFFENDER_NOT_FOUND = "offender not found in Delius"
REASON_OUT_OF_SEQUENCE = "out of sequence: Delius holds a newer version"
REASON_UP_TO_DATE = "already up to date"
REASON_SUPERSEDED = "superseded by a newer version in the same batch"
REASON_URN_BACKFILLED = "external reference added to a legacy contact"
REASON_NOT_SETTLED = "concurrent writes to the same contact did not settle"
# A move whose Data Cleanse contact could not be written (docs/rules.md §6.3): the event flows fail the draft with
# this reason (nothing moved, retryable); the backfill moves anyway and warns with the prefix + the reason.
REASON_NO_DATA_CLEANSE = "contact type OTHER not found: no Data Cleanse contact"
DATA_CLEANSE_FAILURE = "DataCleanseNotificationFailure"


@dataclass(frozen=True)
class MergeOutcome:
    urn: str
    action: Action
    reason: str | None = None
    retryable: bool = False
    contact_id: int | None = None
    crn: str | None = None
    previous_crn: str | None = None
    warning: str | None = None

    @property
    def failed(self) -> bool:
        return self.action is Action.FAILED


class MergeFailure(Exception):
    """A draft that cannot be merged for a reason in the data (missing reference data, duplicate offender...)."""

    def __init__(self, reason: str, retryable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class MergeConfigurationError(RuntimeError):
    """Delius lacks what every merge needs (service user, a usable business interaction): nothing can be merged."""


class StoreUnavailable(Exception):
    """The contact store could not be reached or did not answer (connection refused, timeout, lost connection,
    deadlocks that did not settle). Nothing of the failed call was committed; retrying later may succeed."""
