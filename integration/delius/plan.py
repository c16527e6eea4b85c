"""The merge decisions, without a database: what to do with each draft given what Delius holds.

Pure (standard library and ``integration.core`` only): ``store.py`` reads the rows, calls these functions and
writes what they return, so every rule below is unit-tested without a database (``integration_tests/test_plan.py``).
``docs/delius-contract.md`` describes the tables; ``docs/decisions.md`` the choices where the reference was unclear.

* **Winner**: of several drafts with one URN in a batch, the newest (system time; the later one on a tie) is merged,
  the others are reported as superseded.
* **Classification** of the winner against the contact found by URN (or, for a case note without one, by the legacy
  NOMIS id on a contact that has no URN yet): none -> create; on another person -> move (unless the draft is older
  than the contact, to the second: then unchanged, out of sequence); on the same person ->
  update when the stored ``last_updated_datetime`` is older than the draft's system time *to the second*; else a URN
  back-fill onto a legacy row still without one (if the item is "of interest for external reference"), else
  unchanged (up to date, or out of sequence).
* **Target** of a create or move: exactly one offender with the NOMS number (none: skipped; several: failed), the
  contact type (mapped, else ``NOMISD``), the provider (probation area of the prison's first 3 characters) and its
  ``{area}CSN`` team; a failure names what is missing.
* **Row values**: every column of a new or moved contact, the padded columns of an update, the Data Cleanse contact,
  the event/NSI link, officer codes, the audit rows with their distinct ``date_time`` keys.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..core import rules
from ..core.outcomes import (
    REASON_OFFENDER_NOT_FOUND,
    REASON_OUT_OF_SEQUENCE,
    REASON_SUPERSEDED,
    REASON_UP_TO_DATE,
    Action,
    MergeConfigurationError,
    MergeFailure,
    MergeOutcome,
)
from ..core.rules import ContactDraft, ContactKind
from ..core.text import caseless
from ..core.times import london_now  # noqa: F401  (re-exported: the store's default clock)

AUDIT_OUTCOME_SUCCESS = "P"
AUDIT_PARAMETERS_MAX = 500  # audited_interaction.interaction_parameters is varchar(500)
OF_INTEREST_DAYS = 365  # URN back-fill: case notes and inactive alerts of the last year
DATA_CLEANSE_DESCRIPTION = "Data Cleanse"
OFFICER_CODE_LIMIT = 26 * 1000  # A000 .. Z999
AREA_NOT_FOUND = "Probation Area not found for NOMIS institution"

# The sizes of the columns a draft's values go into or are looked up in (integration/delius/models.py; a unit test
# compares them). Oracle counts VARCHAR2 sizes in bytes unless told otherwise, so what is checked is UTF-8 bytes.
EXTERNAL_REFERENCE_MAX = 4000  # contact.external_reference: the URN
DESCRIPTION_MAX = 200  # contact.description (rules.truncate_utf8 keeps it within)
STAFF_NAME_MAX = 35  # staff.forename, staff.surname (rules cut names to 35 characters)
NOMS_NUMBER_MAX = 7  # offender.noms_number
NOMIS_TYPE_MAX = 100  # r_contact_type_nomis_type.nomis_contact_type: "{type} {subType}"
CONTACT_ID_MAX_DIGITS = 19  # contact_id: a 64-bit integer


def to_second(value: datetime) -> datetime:
    """Delius keeps whole seconds (Oracle ``DATE``): every timestamp the integration writes or compares is cut."""
    return value.replace(microsecond=0)


# ------------------------------------------------------------------------------------------------ what Delius holds


@dataclass(frozen=True)
class Existing:
    """A contact found for a draft (by URN, or by legacy NOMIS id), with its offender."""

    contact_id: int
    offender_id: int
    external_reference: str | None
    notes: str | None
    last_updated: datetime
    row_version: int
    noms_number: str | None
    crn: str


@dataclass(frozen=True)
class Person:
    offender_id: int
    crn: str


@dataclass(frozen=True)
class Provider:
    area_id: int
    area_code: str
    team_id: int


@dataclass(frozen=True)
class Reference:
    """The reference data a batch needs, read once per merge round."""

    user_id: int
    interaction_id: int
    contact_type_by_code: Mapping[str, tuple[int, str]]  # code -> (contact_type_id, sensitive Y/N)
    contact_type_by_id: Mapping[int, tuple[str, str]]  # contact_type_id -> (code, sensitive Y/N)
    mapped_type: Mapping[str, int]  # "TYPE SUBTYPE" -> contact_type_id
    provider_by_prison: Mapping[str, Provider | str]  # first 3 of establishment -> provider or why not


def check_interaction(code: str, found: tuple[int, datetime | None] | None, now: datetime) -> int:
    """The business interaction id to audit with: it must exist and be enabled (``enabled_date`` null or not in the
    future), else no merge can be audited and none is made."""
    if found is None:
        raise MergeConfigurationError(f"business interaction {code} not found")
    interaction_id, enabled = found
    if enabled is not None and enabled > now:
        raise MergeConfigurationError(f"business interaction {code} is not enabled until {enabled.isoformat()}")
    return interaction_id


def providers_by_prison(
    prisons: Iterable[str], areas: Iterable[tuple[str, int, str]], teams: Mapping[str, int]
) -> dict[str, Provider | str]:
    """Provider per 3-character prison code: the first probation area (lowest id) linked to an institution with that
    NOMIS code, and its ``{area code}CSN`` team; or the reason it cannot be resolved.

    ``areas`` are (prison code, probation_area_id, area code) rows; ``teams`` maps team code -> team_id."""
    first: dict[str, tuple[int, str]] = {}
    for prison, area_id, area_code in sorted(areas, key=lambda row: row[1]):
        first.setdefault(prison, (area_id, area_code))
    result: dict[str, Provider | str] = {}
    for prison in prisons:
        if prison not in first:
            result[prison] = f"{AREA_NOT_FOUND}: {prison}"
            continue
        area_id, area_code = first[prison]
        team_id = teams.get(csn_team_code(area_code))
        result[prison] = (
            Provider(area_id, area_code, team_id)
            if team_id is not None
            else f"Team with code of {csn_team_code(area_code)} not found"
        )
    return result


def csn_team_code(area_code: str) -> str:
    return f"{area_code}CSN"


# ------------------------------------------------------------------------------------------------ column sizes


def utf8_length(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def fits(value: str, size: int) -> bool:
    """Whether ``value`` fits a column of ``size`` on every database (characters on PostgreSQL and SQLite, bytes on
    Oracle): its UTF-8 length. A lookup key that does not fit cannot match anything, so it is not looked up."""
    return len(value) <= size and utf8_length(value) <= size


def refusal(draft: ContactDraft) -> str | None:
    """Why ``draft`` can never be written, whatever Delius holds: a value it writes that no column of its size can
    take (docs/decisions.md, "Text"). Names the column and its size, never the value."""
    what = "alert" if draft.is_alert else "case note"
    if not fits(draft.urn, EXTERNAL_REFERENCE_MAX):
        return f"{what} id too long: its URN does not fit contact.external_reference ({EXTERNAL_REFERENCE_MAX} bytes)"
    if not fits(_longest_audit_parameters(draft), AUDIT_PARAMETERS_MAX):
        return f"{what} id too long for audited_interaction.interaction_parameters ({AUDIT_PARAMETERS_MAX} bytes)"
    return None


def _longest_audit_parameters(draft: ContactDraft) -> str:
    return audit_parameters_text(draft.source_id, int("9" * CONTACT_ID_MAX_DIGITS))


def oversized(draft: ContactDraft) -> list[str]:
    """The columns (``table.column (size)``) whose size a value of ``draft`` exceeds in UTF-8 bytes, for explaining
    a database's refusal: a name of 35 characters can still be longer than 35 bytes, which Oracle refuses when its
    columns count bytes."""
    found = []
    if utf8_length(draft.urn) > EXTERNAL_REFERENCE_MAX:
        found.append(f"contact.external_reference ({EXTERNAL_REFERENCE_MAX})")
    if utf8_length(_longest_audit_parameters(draft)) > AUDIT_PARAMETERS_MAX:
        found.append(f"audited_interaction.interaction_parameters ({AUDIT_PARAMETERS_MAX})")
    if utf8_length(draft.staff_forename) > STAFF_NAME_MAX:
        found.append(f"staff.forename ({STAFF_NAME_MAX})")
    if utf8_length(draft.staff_surname) > STAFF_NAME_MAX:
        found.append(f"staff.surname ({STAFF_NAME_MAX})")
    return found


# ------------------------------------------------------------------------------------------------ winners


def pick_winners(drafts: Sequence[ContactDraft]) -> tuple[list[int], dict[int, MergeOutcome]]:
    """Indexes of the drafts to merge (one per URN: the newest system time, the later one on a tie) in order, and
    the superseded outcome of every other draft."""
    winner: dict[str, int] = {}
    for idx, draft in enumerate(drafts):
        best = winner.get(draft.urn)
        if best is None or draft.system_datetime >= drafts[best].system_datetime:
            winner[draft.urn] = idx
    superseded = {
        idx: MergeOutcome(draft.urn, Action.UNCHANGED, REASON_SUPERSEDED)
        for idx, draft in enumerate(drafts)
        if winner[draft.urn] != idx
    }
    return sorted(winner.values()), superseded


def legacy_lookup(drafts: Iterable[ContactDraft], found_urns: Iterable[str]) -> dict[int, str]:
    """Legacy NOMIS id -> URN for the case notes that have a legacy id and no contact by URN: they may match a
    contact written before URNs existed (one without ``external_reference``)."""
    found = set(found_urns)
    return {
        d.legacy_id: d.urn
        for d in drafts
        if d.kind is ContactKind.CASE_NOTE and d.legacy_id is not None and d.urn not in found
    }


# ------------------------------------------------------------------------------------------------ classification


class Kind(str, enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    URN_ONLY = "urn only"  # a legacy row gets its URN, nothing else
    MOVE = "move"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Decision:
    kind: Kind
    existing: Existing | None = None
    reason: str | None = None  # UNCHANGED: why


def classify(draft: ContactDraft, existing: Existing | None, now: datetime) -> Decision:
    """What to do with ``draft`` given the contact found for it (None: none)."""
    if existing is None:
        return Decision(Kind.CREATE)
    stored, incoming = to_second(existing.last_updated), to_second(draft.system_datetime)
    if existing.noms_number != draft.noms_number:
        # A corrected NOMS number does not change the source item's time: a move needs a draft that is not older
        # (an older version naming the previous person must not move the contact back).
        if stored > incoming:
            return Decision(Kind.UNCHANGED, existing, REASON_OUT_OF_SEQUENCE)
        return Decision(Kind.MOVE, existing)
    if stored < incoming:
        return Decision(Kind.UPDATE, existing)
    if existing.external_reference is None and of_interest_for_external_reference(draft, now):
        return Decision(Kind.URN_ONLY, existing)
    return Decision(Kind.UNCHANGED, existing, REASON_OUT_OF_SEQUENCE if stored > incoming else REASON_UP_TO_DATE)


def of_interest_for_external_reference(draft: ContactDraft, now: datetime) -> bool:
    """Active alerts always; case notes and inactive alerts dated within the last year."""
    if draft.kind is ContactKind.ACTIVE_ALERT:
        return True
    return draft.contact_datetime >= now - timedelta(days=OF_INTEREST_DAYS)


def unchanged_outcome(draft: ContactDraft, decision: Decision) -> MergeOutcome:
    existing = decision.existing
    return MergeOutcome(
        draft.urn,
        Action.UNCHANGED,
        decision.reason,
        contact_id=existing.contact_id if existing else None,
        crn=existing.crn if existing else None,
    )


def failure_outcome(draft: ContactDraft, failure: MergeFailure, existing: Existing | None = None) -> MergeOutcome:
    """A person not in Delius is *skipped* (normal: most prisoners are not on probation); the rest *failed*.

    A move whose new holder is not in Delius (``existing``: the contact on its current person) leaves the contact
    where it is -- the integration never deletes a contact, and cannot rewrite one for a person Delius does not have
    -- and says so: the outcome names the contact and the CRN it remains on, as a warning (a later linkage backfill
    of the new NOMS number moves it)."""
    if failure.reason == REASON_OFFENDER_NOT_FOUND:
        if existing is None:
            return MergeOutcome(draft.urn, Action.SKIPPED, failure.reason)
        return MergeOutcome(
            draft.urn,
            Action.SKIPPED,
            failure.reason,
            contact_id=existing.contact_id,
            crn=existing.crn,
            warning=not_moved_warning(existing.contact_id, existing.crn),
        )
    return MergeOutcome(draft.urn, Action.FAILED, failure.reason, retryable=failure.retryable)


def not_moved_warning(contact_id: int, crn: str) -> str:
    """``offender not found in Delius: contact 5000123 not moved, remains on X123456``."""
    return f"{REASON_OFFENDER_NOT_FOUND}: contact {contact_id} not moved, remains on {crn}"


# ------------------------------------------------------------------------------------------------ target


@dataclass(frozen=True)
class Target:
    person: Person
    contact_type_id: int
    provider: Provider


def resolve_target(draft: ContactDraft, ref: Reference, persons: Mapping[str, Sequence[Person]]) -> Target:
    """Person, contact type and provider of a create or move -- everything but the staff -- or ``MergeFailure``.

    The person comes first: a draft whose person is not in Delius is skipped before anything else is looked at, and
    since staff are only found or created for resolved targets, it leaves no staff behind."""
    matches = persons.get(draft.noms_number, ())
    if not matches:
        raise MergeFailure(REASON_OFFENDER_NOT_FOUND)
    if len(matches) > 1:
        raise MergeFailure(f"{len(matches)} offenders have NOMS number {draft.noms_number}")
    type_id = ref.mapped_type.get(draft.type_key)
    if type_id is None:
        default = ref.contact_type_by_code.get(rules.DEFAULT_CONTACT_TYPE_CODE)
        if default is None:
            raise MergeFailure(f"contact type {rules.DEFAULT_CONTACT_TYPE_CODE} not found", retryable=True)
        type_id = default[0]
    if len(draft.establishment_code) < 3:
        raise MergeFailure(f"Invalid establishment code: {draft.establishment_code!r}")
    provider = ref.provider_by_prison.get(draft.establishment_code[:3])
    if provider is None or isinstance(provider, str):
        if (
            draft.is_alert
            and draft.establishment_code == rules.UNKNOWN_ESTABLISHMENT
            and (provider is None or provider.startswith(AREA_NOT_FOUND))
        ):
            # An alert without a prison code (a NOMIS resync) goes through UNK; without an institution for UNK in
            # Delius it fails as before (docs/decisions.md, "Rules").
            raise MergeFailure(rules.REASON_ALERT_ESTABLISHMENT)
        raise MergeFailure(provider or "establishment not resolved")
    return Target(matches[0], type_id, provider)


StaffKey = tuple[int, str, str]  # (probation_area_id, caseless forename, caseless surname)


def staff_key(area_id: int, forename: str, surname: str) -> StaffKey:
    """Staff are matched by name case-insensitively within the probation area: by ``text.caseless`` (Unicode
    NFD + casefold), computed here, so SQLite, PostgreSQL and Oracle match alike whatever their ``lower()`` does."""
    return area_id, caseless(forename), caseless(surname)


def name_spellings(name: str) -> set[str]:
    """The forms a stored name most likely has, for finding staff by exact comparison (which every database makes
    alike): as given, composed and decomposed, upper, lower, title and capitalised. A stored name in any other form
    is found by reading the area's staff (``store.py``); ``staff_key`` decides either way."""
    forms = {name}
    for normal in ("NFC", "NFD"):
        base = unicodedata.normalize(normal, name)
        forms |= {base, base.upper(), base.lower(), base.title(), base.capitalize()}
    return {form for form in forms if len(form) <= STAFF_NAME_MAX}


def draft_staff_key(draft: ContactDraft, provider: Provider) -> StaffKey:
    return staff_key(provider.area_id, draft.staff_forename, draft.staff_surname)


# ------------------------------------------------------------------------------------------------ row values


def new_contact_values(draft: ContactDraft, target: Target, staff_id: int, ref: Reference) -> dict:
    """Every column of the contact for ``draft`` (a create, or the rewrite of a moved one) but its id; the event and
    NSI links are set afterwards (``choose_links``)."""
    type_code, sensitive = ref.contact_type_by_id[target.contact_type_id]
    provider = target.provider
    when = to_second(draft.contact_datetime)
    system = to_second(draft.system_datetime)
    return {
        "offender_id": target.person.offender_id,
        "event_id": None,
        "nsi_id": None,
        "contact_type_id": target.contact_type_id,
        "description": rules.contact_description(draft, type_code),
        "notes": draft.notes,
        "contact_date": when,
        "contact_start_time": when,
        "staff_id": staff_id,
        "staff_employee_id": staff_id,
        "team_id": provider.team_id,
        "probation_area_id": provider.area_id,
        "trust_provider_team_id": provider.team_id,
        "trust_provider_flag": 0,
        "partition_area_id": 0,
        "soft_deleted": 0,
        "sensitive": "Y" if sensitive == "Y" else "N",
        "external_reference": draft.urn,
        "nomis_case_note_id": None,
        "created_datetime": system,
        "last_updated_datetime": system,
        "created_by_user_id": ref.user_id,
        "last_updated_user_id": ref.user_id,
        "row_version": 0,
    }


def move_values(new_values: Mapping, existing: Existing) -> dict:
    """A moved contact keeps its id and gets the new derivation, one row version on."""
    return dict(new_values, row_version=existing.row_version + 1)


def update_values(draft: ContactDraft, existing: Existing, user_id: int, *, urn_only: bool) -> dict:
    """The columns an update writes: notes (padded, never shorter), both contact-time columns, the system time and
    the URN; a URN back-fill writes the URN only. Type, description, links, staff and provider never change."""
    values: dict = {
        "external_reference": draft.urn,
        "last_updated_user_id": user_id,
        "row_version": existing.row_version + 1,
    }
    if not urn_only:
        when = to_second(draft.contact_datetime)
        values.update(
            notes=rules.pad_notes(draft.notes, existing.notes),
            contact_date=when,
            contact_start_time=when,
            last_updated_datetime=to_second(draft.system_datetime),
        )
    return values


def choose_links(
    draft: ContactDraft, nsis: Iterable[tuple[date, int, int | None]], custodial_events: Iterable[int]
) -> tuple[int | None, int | None]:
    """(event_id, nsi_id) of a new or moved contact.

    Alerts link to nothing. A case note links to the person's active NSI of a type mapped to its type key with the
    latest referral date (highest id on a tie) -- ``nsis`` are (referral_date, nsi_id, event_id) of those -- and its
    event; else to the person's custodial event if there is exactly one; else to nothing."""
    if draft.is_alert:
        return None, None
    best = max(nsis, default=None, key=lambda nsi: (nsi[0], nsi[1]))
    if best is not None:
        return best[2], best[1]
    events = set(custodial_events)
    if len(events) == 1:
        return next(iter(events)), None
    return None, None


def data_cleanse_values(
    *,
    offender_id: int,
    staff_id: int,
    team_id: int,
    area_id: int,
    contact_type_id: int,
    sensitive: str,
    user_id: int,
    now: datetime,
) -> dict:
    """The "Data Cleanse" contact on a case that lost a contact to another person (one per previous case and merge):
    on the case's active offender manager, no event, no URN, dated now."""
    now = to_second(now)
    return {
        "offender_id": offender_id,
        "event_id": None,
        "nsi_id": None,
        "contact_type_id": contact_type_id,
        "description": DATA_CLEANSE_DESCRIPTION,
        "notes": rules.data_cleanse_notes(now),
        "contact_date": now,
        "contact_start_time": now,
        "staff_id": staff_id,
        "staff_employee_id": staff_id,
        "team_id": team_id,
        "probation_area_id": area_id,
        "trust_provider_team_id": team_id,
        "trust_provider_flag": 0,
        "partition_area_id": 0,
        "soft_deleted": 0,
        "sensitive": "Y" if sensitive == "Y" else "N",
        "external_reference": None,
        "nomis_case_note_id": None,
        "created_datetime": now,
        "last_updated_datetime": now,
        "created_by_user_id": user_id,
        "last_updated_user_id": user_id,
        "row_version": 0,
    }


def staff_values(
    *, staff_id: int | None, officer_code: str, forename: str, surname: str, area_id: int, user_id: int, now: datetime
) -> dict:
    """A prison staff member the integration creates (``staff_id`` None: the database assigns it, SQLite only)."""
    now = to_second(now)
    values = {
        "officer_code": officer_code,
        "forename": forename,
        "surname": surname,
        "probation_area_id": area_id,
        "start_date": now,
        "private": 0,
        "created_by_user_id": user_id,
        "created_datetime": now,
        "last_updated_user_id": user_id,
        "last_updated_datetime": now,
        "row_version": 0,
    }
    if staff_id is not None:
        values["staff_id"] = staff_id
    return values


def staff_team_values(*, staff_id: int, team_id: int, user_id: int, now: datetime) -> dict:
    now = to_second(now)
    return {
        "staff_id": staff_id,
        "team_id": team_id,
        "created_by_user_id": user_id,
        "created_datetime": now,
        "last_updated_user_id": user_id,
        "last_updated_datetime": now,
        "row_version": 0,
    }


# ------------------------------------------------------------------------------------------------ officer codes

_OFFICER_CODE = re.compile(r"^([A-Z])(\d{3})$")


def officer_prefix(area_code: str) -> str:
    return area_code[:3].upper()


def officer_codes_after(prefix: str, existing: Iterable[str], count: int) -> list[str]:
    """The next ``count`` officer codes ``{prefix}{letter}{3 digits}`` after the highest existing one.

    ``A001`` first; after ``A999`` comes ``B000``; ``Z999`` is the last. The same rule as Delius's own generator
    (``spgconfig.getnextstaffreference``), for databases without it."""
    numbers = [
        (ord(match.group(1)) - ord("A")) * 1000 + int(match.group(2))
        for code in existing
        if code.startswith(prefix) and (match := _OFFICER_CODE.match(code[len(prefix) :]))
    ]
    start = max(numbers, default=0) + 1
    if start + count > OFFICER_CODE_LIMIT:
        raise MergeFailure(f"officer codes exhausted for prefix {prefix}")
    return [f"{prefix}{chr(ord('A') + n // 1000)}{n % 1000:03d}" for n in range(start, start + count)]


def officer_code_from_function(prefix: str, answer: str | None) -> str:
    """Delius's generator may answer null: then the code is ``{prefix}A000``, as the reference does."""
    return answer.strip() if answer and answer.strip() else f"{prefix}A000"


# ------------------------------------------------------------------------------------------------ audit


def audit_parameters_text(source_id: str, contact_id: int) -> str:
    return f"dpsId='{source_id}',contactId='{contact_id}'"


def audit_parameters(source_id: str, contact_id: int) -> str:
    """``dpsId='<uuid>',contactId='<id>'``: quoted values, a comma, no space."""
    text = audit_parameters_text(source_id, contact_id)
    if len(text) > AUDIT_PARAMETERS_MAX:
        raise ValueError("audit parameters longer than the column")
    return text


def audit_times(start: datetime, count: int, step: timedelta) -> list[datetime]:
    """``count`` distinct audit times from ``start``, ``step`` apart: (date_time, interaction, user) is the audit
    key, so every audit row of the service user needs its own time. ``step`` is the column's resolution (a
    microsecond for a timestamp, a second for an Oracle ``DATE``)."""
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    start = truncate_to(start, step)
    return [start + step * n for n in range(count)]


def truncate_to(value: datetime, step: timedelta) -> datetime:
    if step >= timedelta(seconds=1):
        return value.replace(microsecond=0)
    return value


def audit_rows(
    audits: Sequence[tuple[int, ContactDraft]], times: Sequence[datetime], *, interaction_id: int, user_id: int
) -> list[dict]:
    """One audit row per written contact (create, update, move): ``audits`` are (contact_id, draft)."""
    if len(times) != len(audits):
        raise ValueError("one time per audit row")
    return [
        {
            "date_time": when,
            "business_interaction_id": interaction_id,
            "user_id": user_id,
            "outcome": AUDIT_OUTCOME_SUCCESS,
            "interaction_parameters": audit_parameters(draft.source_id, contact_id),
        }
        for (contact_id, draft), when in zip(audits, times)
    ]


def next_audit_start(now: datetime, last_used: datetime | None, step: timedelta) -> datetime:
    """Where a batch's audit times start: now, or just after the last time this process used if that is later (a
    fast second batch must not reuse the first one's times)."""
    start = truncate_to(now, step)
    if last_used is not None and last_used + step > start:
        return last_used + step
    return start
