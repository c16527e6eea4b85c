"""A generated, deterministic "world" for the local stack and tests: prisoners, Delius records, case notes, alerts.

``generate_world(seed=..., people=300)`` builds, from the seed alone (plus the ``as_of`` date the dates count back
from), a realistic mix (the local stack of README.md):

* people in the prisons of ``DEFAULT_PRISONS`` (a handful at ``UNK``), with NOMS numbers like ``A1234BC``;
* about 70 % of them known to Delius (CRN like ``X123456``): custodial events (a few with two, a few with a
  community event too), NSIs of type RESPASS / OMICSUP with referral dates, an active offender manager in a probation
  region team; a few of those are "unlinked": the offender exists with ``noms_number`` NULL until a linkage event
  (``probation-case.prison-identifier.added``) sets it;
* the rest are only known to the prison (most prisoners are not on probation);
* case notes of every kind: the types of interest (docs/rules.md §3.1), types the consumer must drop, notes the
  content filters must drop (§3.2: blank text, ``TRN``, ``ZZGHI``, the OCG sentence), amendments, sensitive notes;
* alerts: active, inactive (``activeTo`` in the past, ``isActive`` false), a few DOCGM (OCG nominal).

All text is invented and obviously fake; no real people. ``World.load_delius(engine)`` writes the people to a Delius
database (schema created and reference data seeded beforehand); ``World.load_source(store)`` puts the case notes and
alerts into a stand-in ``SourceStore``. ``RecordFactory`` builds single notes and alerts and is shared with the
simulator.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from integration.core.events import case_note_of_interest
from integration.delius import models as m
from integration.delius.reference_data import DEFAULT_PRISONS, DEFAULT_REGIONS, add_person
from integration.delius.schema import schema_exists
from integration.local.standins.store import (
    ALERT_CODES,
    SourceStore,
    deactivate_alert,
    london_now,
    make_alert,
    make_amendment,
    make_case_note,
)

DEFAULT_PEOPLE = 300
DELIUS_SHARE = 0.70  # of all people
UNLINKED_SHARE = 0.03  # of all people (taken from the Delius ones)
UNK_SHARE = 0.01  # people whose establishment is not known

OCG_SENTENCE = "Do not share with offender and OCG Nominal"
TEST_ESTABLISHMENT = "ZZGHI"
IN_TRANSIT = "TRN"

# (type, subType): weight. Types of interest per docs/rules.md §3.1 (newest version).
TYPES_OF_INTEREST: dict[tuple[str, str], int] = {
    ("PRISON", "RELEASE"): 3,
    ("TRANSFER", "FROMTOL"): 5,
    ("GEN", "OSE"): 14,
    ("RESET", "BCST"): 7,
    ("RESET", "GUIDINT"): 2,
    ("OMIC", "OPEN"): 6,
    ("OMIC", "QUAL"): 3,
    ("OMIC_OPD", "OPD_SCREEN"): 2,
    ("KA", "KS"): 12,
    ("KA", "KE"): 6,
}
# Types the SNS filter lets through (type matches) but the consumer drops (subtype not accepted, or ALERT).
NOT_OF_INTEREST_SNS: dict[tuple[str, str], int] = {
    ("GEN", "HIS"): 8,
    ("TRANSFER", "TOL"): 2,
    ("ALERT", "ACTIVE"): 2,
    ("ALERT", "INACTIVE"): 1,
}
# The case-note `type` values the production SNS filter policy lets through (docs/upstream-apis.md §1.4).
SNS_FILTER_TYPES = frozenset({"PRISON", "TRANSFER", "GEN", "ALERT", "RESET", "OMIC", "OMIC_OPD", "KA"})
# Types the SNS filter never lets through (they exist in the Case Notes API all the same).
NOT_SUBSCRIBED: dict[tuple[str, str], int] = {
    ("NEG", "IEP_WARN"): 5,
    ("CAB", "EDUCATION"): 3,
    ("POS", "IEP_ENC"): 3,
}
SUB_TYPE_DESCRIPTIONS = {
    ("RESET", "GUIDINT"): "Guided Interview",
    ("OMIC", "OPEN"): "Open Case Note",
    ("OMIC", "QUAL"): "Quality Assurance",
    ("POS", "IEP_ENC"): "IEP Encouragement",
}
TYPE_DESCRIPTIONS = {"POS": "Positive Behaviour"}

# code: (alertTypeCode, alertTypeDescription, description) — the stand-in's codes plus a few more.
ALERT_TABLE: dict[str, tuple[str, str, str]] = {
    **{code: ALERT_CODES[code] for code in ("VI", "PEEP", "HA", "XA", "DOCGM", "OVI")},
    "XSA": ("X", "Security", "Staff Assaulter"),
    "XEL": ("X", "Security", "Escape List"),
    "MAS": ("M", "Medical", "Asthmatic"),
    "RDV": ("R", "Risk", "Domestic Violence Perpetrator"),
}
ALERT_WEIGHTS = {"HA": 6, "PEEP": 4, "VI": 4, "XA": 2, "OVI": 5, "XSA": 3, "XEL": 1, "MAS": 4, "RDV": 3, "DOCGM": 1}
OCG_ALERT = "DOCGM"

# Probation regions a prison's people are usually managed from (DEFAULT_REGIONS team codes).
HOME_TEAMS = {
    "LEI": ("N02T01",),
    "MDI": ("N02T01",),
    "MRI": ("N02T01",),
    "WWI": ("N07T01", "N07T02"),
    "BMI": ("N53T01",),
    "NMI": ("N53T01",),
    "SWI": ("N03T01",),
    "UNK": ("N07T01",),
}

# --- invented names and phrases -----------------------------------------------------------------------------------
FIRST_NAMES = (
    "James",
    "Daniel",
    "Liam",
    "Connor",
    "Ryan",
    "Jordan",
    "Callum",
    "Kieran",
    "Nathan",
    "Aaron",
    "Jamie",
    "Lewis",
    "Marcus",
    "Tyler",
    "Dylan",
    "Reece",
    "Ben",
    "Owen",
    "Rhys",
    "Harvey",
    "Mason",
    "Leon",
    "Kyle",
    "Joel",
    "Sophie",
    "Chloe",
    "Leah",
    "Megan",
    "Jade",
    "Amy",
    "Hannah",
    "Zara",
    "Kayleigh",
    "Ellie",
)
STAFF_FIRST_NAMES = (
    "Alex",
    "Sam",
    "Chris",
    "Priya",
    "Tom",
    "Ruth",
    "Imran",
    "Gemma",
    "Paul",
    "Nadia",
    "Steve",
    "Helen",
    "Femi",
    "Claire",
    "Gareth",
    "Aisha",
    "Mark",
    "Lucy",
    "Dev",
    "Karen",
)
SURNAME_STARTS = (
    "Ash",
    "Bram",
    "Cold",
    "Dun",
    "Elm",
    "Fern",
    "Glen",
    "Hart",
    "Ivy",
    "Lark",
    "Marsh",
    "North",
    "Oak",
    "Pen",
    "Quill",
    "Rook",
    "Stone",
    "Thorn",
    "Wren",
    "Brack",
    "Holl",
    "Moss",
    "Tarn",
    "Wick",
)
SURNAME_ENDS = (
    "wick",
    "by",
    "ford",
    "well",
    "ley",
    "ton",
    "field",
    "more",
    "worth",
    "stead",
    "brook",
    "croft",
    "hurst",
    "dale",
    "gate",
    "combe",
    "thwaite",
    "holme",
)
WINGS = ("A wing", "B wing", "C wing", "D wing", "E wing", "F wing", "the healthcare unit", "the induction wing")
COURSES = (
    "Thinking Skills",
    "maths level 2",
    "English level 1",
    "barbering",
    "bricklaying",
    "peer mentoring",
    "food hygiene",
    "painting and decorating",
)
WORKPLACES = ("textiles workshop", "kitchens", "gardens", "recycling unit", "laundry", "library", "servery")
TOPICS = (
    "contact with family",
    "a visit booked for the weekend",
    "worries about housing on release",
    "progress in education",
    "sleeping badly",
    "a job in the kitchens",
    "debts built up before custody",
    "keeping out of trouble on the wing",
)
AGREED = (
    "apply for a family visit",
    "put in a request for the gym",
    "speak to the resettlement team",
    "attend the next education assessment",
    "keep a diary until the next session",
    "apply for a wing job",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

# BCST pathway words the description rule recognises (docs/rules.md §5.5), with a fake summary each.
BCST_PATHWAYS = {
    "Accommodation": "no fixed address on release; referral made to the local housing options team",
    "Attitudes, thinking and behaviour": "completed the first two sessions of the Thinking Skills course",
    "Children, families and community": "would like to restart contact with family; referral to family services",
    "Drugs and alcohol": "engaging with the substance misuse team; appointment booked in the community",
    "Education, skills and work": "CV completed; interested in work in construction after release",
    "Finance and ID": "bank account application sent; birth certificate requested",
    "Health": "GP registration form completed for the release area",
}

TEXTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("PRISON", "RELEASE"): (
        "{name} released from {prison} on licence today. Licence conditions read through and signed. Travel warrant "
        "issued; to report to the probation office by {hour} on {day}.",
        "Released on home detention curfew. Tag fitting arranged for this evening at the approved address. {name} "
        "said they understood the curfew hours.",
        "Discharged at sentence end. Property and discharge grant handed over at reception. No outstanding matters.",
    ),
    ("TRANSFER", "FROMTOL"): (
        "Received on transfer from {other}. Property arrived with {name}; two bags sealed and checked. First night "
        "screening completed on {wing}.",
        "Transferred in from {other} following a recategorisation review. Induction booked for {day}.",
    ),
    ("GEN", "OSE"): (
        "Offender supervisor entry. Met {name} on {wing} to review the sentence plan. Attending {course} and "
        "working in the {work}.",
        "Discussed progress towards release with {name}, who asked about {topic}. Referral to the resettlement team.",
        "Sentence plan review completed. Targets remain: keep the job in the {work}, complete {course}.",
    ),
    ("RESET", "GUIDINT"): (
        "Guided interview completed with {name} for the resettlement passport. Needs noted around {topic}; next "
        "review due {day}.",
        "Guided interview started but not finished: {name} was called to a legal visit. To be rebooked for {day}.",
    ),
    ("OMIC", "OPEN"): (
        "POM case note: introductory meeting with {name}. Explained the role of the prison offender manager and "
        "the handover to the community probation practitioner before release.",
        "POM case note: reviewed {name}'s risk assessment. No change to the level of risk; next contact in six weeks.",
    ),
    ("OMIC", "QUAL"): (
        "Quality check of the OASys assessment completed; no amendments needed.",
        "Quality check completed. Sentence plan objectives reworded to be measurable.",
    ),
    ("OMIC_OPD", "OPD_SCREEN"): (
        "Offender personality disorder pathway screening completed. {name} screened in; case formulation to follow.",
        "OPD screening completed. {name} does not meet the criteria at present; rescreen at the next review.",
    ),
    ("KA", "KS"): (
        "Key work session on {wing}. {name} spoke about {topic}. Agreed to {agreed}. Next session in two weeks.",
        "Key work session held in the wing office. {name} was settled and polite; talked about {topic}.",
    ),
    ("KA", "KE"): (
        "Key worker entry: attempted a session but {name} was at {course}; will try again on {day}.",
        "Key worker entry: brief check-in on {wing}. No concerns raised.",
    ),
    ("GEN", "HIS"): (
        "History sheet entry: {name} moved from {wing} to {wing2}.",
        "History sheet entry: cell search on {wing}, nothing found.",
    ),
    ("TRANSFER", "TOL"): ("Transferred out to {other} on the morning escort.",),
    ("ALERT", "ACTIVE"): (
        "Alert Medical and Asthmatic made active.",
        "Alert Self Harm and ACCT Open (HMPS) made active.",
    ),
    ("ALERT", "INACTIVE"): ("Alert Self Harm and ACCT Open (HMPS) made inactive.",),
    ("NEG", "IEP_WARN"): ("IEP warning: {name} refused to return to the cell at the end of association.",),
    ("CAB", "EDUCATION"): ("Late for the morning {course} session three times this week.",),
    ("POS", "IEP_ENC"): ("IEP encouragement: {name} helped staff during the wing clean-up.",),
}
AMENDMENTS = (
    "Further to the above, {name} has since confirmed the appointment.",
    "Correction: the meeting took place on {day}, not as recorded above.",
    "Update: the referral has been accepted.",
    "Added after speaking to the wing officer: no further concerns.",
)
ALERT_TEXTS: dict[str, tuple[str, ...]] = {
    "HA": (
        "ACCT opened after concerns raised by wing staff. Observations set at one an hour.",
        "ACCT opened on arrival following first night screening.",
    ),
    "PEEP": ("Needs help on stairs; cell on the ground floor.", "Uses a wheelchair; evacuation plan agreed."),
    "VI": ("Victim of an assault on a previous sentence; keep apart from the named prisoner.",),
    "XA": ("Previous conviction for arson noted in the custody record.",),
    "OVI": ("Violence towards staff on a previous sentence.",),
    "XSA": ("Assaulted an officer during a cell move.",),
    "XEL": ("Placed on the escape list following intelligence.",),
    "MAS": ("Asthmatic; inhaler kept in possession.",),
    "RDV": ("Domestic violence perpetrator; contact restrictions apply.",),
    "DOCGM": ("Nominal linked to an organised crime group. Not to be shared with the prisoner.",),
}
BLANK_TEXTS = ("", "   ", "\n")


def seeded_uuid(rng: random.Random) -> str:
    """A version-4 UUID from ``rng`` (deterministic for a seeded generator)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def noms_number(rng: random.Random) -> str:
    """``A1234BC``: a letter (A or G, mostly A, as current NOMS numbers), 4 digits, 2 letters."""
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    return f"{rng.choice('AAAG')}{rng.randint(0, 9999):04d}{rng.choice(letters)}{rng.choice(letters)}"


def crn(rng: random.Random) -> str:
    """``X123456``: a letter and 6 digits."""
    return f"{rng.choice('ABCDEFGHJKLMNPRSTVWXY')}{rng.randint(0, 999999):06d}"


# --- the world ----------------------------------------------------------------------------------------------------
@dataclass
class Person:
    noms_number: str
    first_name: str
    surname: str
    prison: str  # NOMIS code of the current establishment (r_institution.nomis_cde_code)
    crn: str | None = None  # None: not known to probation
    noms_linked: bool = False  # Delius offender carries the NOMS number (false: NULL until linked)
    manager_team: str | None = None
    custodial_events: int = 0
    community_events: int = 0
    nsis: tuple[tuple[str, date], ...] = ()  # (NSI type code, referral date)

    @property
    def in_delius(self) -> bool:
        return self.crn is not None

    @property
    def matchable(self) -> bool:
        """Delius would find this person by NOMS number right now."""
        return self.in_delius and self.noms_linked

    @property
    def status(self) -> str:
        """``delius`` (linked), ``unlinked`` (in Delius, NOMS number not yet set) or ``prison_only``."""
        if not self.in_delius:
            return "prison_only"
        return "delius" if self.noms_linked else "unlinked"


@dataclass
class World:
    seed: int | str
    as_of: date
    people: list[Person]
    case_notes: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    _by_noms: dict[str, Person] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_noms = {p.noms_number: p for p in self.people}

    # --- lookups ----------------------------------------------------------------------------------------------
    def person(self, noms: str) -> Person:
        return self._by_noms[noms.upper()]

    @property
    def delius_people(self) -> list[Person]:
        return [p for p in self.people if p.in_delius]

    @property
    def unlinked_people(self) -> list[Person]:
        return [p for p in self.people if p.in_delius and not p.noms_linked]

    @property
    def prison_only_people(self) -> list[Person]:
        return [p for p in self.people if not p.in_delius]

    def summary(self) -> dict[str, Any]:
        """Counts only (no identifiers, no text)."""
        kinds = Counter(note_kind(n) for n in self.case_notes)
        return {
            "people": len(self.people),
            "inDelius": len(self.delius_people),
            "unlinked": len(self.unlinked_people),
            "prisonOnly": len(self.prison_only_people),
            "events": sum(p.custodial_events + p.community_events for p in self.people),
            "nsis": sum(len(p.nsis) for p in self.people),
            "caseNotes": len(self.case_notes),
            "caseNotesByKind": dict(sorted(kinds.items())),
            "amended": sum(1 for n in self.case_notes if n.get("amendments")),
            "sensitive": sum(1 for n in self.case_notes if n.get("sensitive")),
            "alerts": len(self.alerts),
            "activeAlerts": sum(1 for a in self.alerts if a["isActive"]),
            "inactiveAlerts": sum(1 for a in self.alerts if not a["isActive"]),
            "ocgAlerts": sum(1 for a in self.alerts if a["alertCode"]["code"] == OCG_ALERT),
        }

    # --- loading ----------------------------------------------------------------------------------------------
    def load_delius(self, engine: Engine) -> dict[str, int]:
        """Insert every Delius person (offender, events, NSIs, offender manager) in one transaction.

        The schema must exist and the reference data must be seeded (``seed_reference_data``). Unlinked people get
        ``noms_number`` NULL. Returns row counts.
        """
        if not schema_exists(engine):
            raise RuntimeError("the Delius schema does not exist: run create_schema first")
        with engine.begin() as conn:
            seeded = conn.execute(select(func.count()).select_from(m.r_disposal_type)).scalar_one()
            if not seeded:
                raise RuntimeError("the Delius reference data is not seeded: run seed_reference_data first")
            counts: Counter[str] = Counter()
            for person in self.delius_people:
                assert person.crn is not None  # delius_people are those with a CRN
                ids = add_person(
                    conn,
                    person.crn,
                    person.noms_number if person.noms_linked else None,
                    first_name=person.first_name,
                    surname=person.surname,
                    custodial_events=person.custodial_events,
                    community_events=person.community_events,
                    nsis=person.nsis,
                    manager_team=person.manager_team,
                    manager_staff_code=_manager_code(person.manager_team, person.crn),
                )
                counts["offenders"] += 1
                counts["events"] += len(ids.event_ids)
                counts["nsis"] += len(ids.nsi_ids)
                counts["offenderManagers"] += 1 if ids.manager_staff_id is not None else 0
                counts["unlinked"] += 0 if person.noms_linked else 1
        return dict(counts)

    def load_source(self, store: SourceStore) -> dict[str, int]:
        """Put every case note and alert into a stand-in store (replacing records with the same ids)."""
        store.put_case_notes(self.case_notes)
        store.put_alerts(self.alerts)
        return {"caseNotes": len(self.case_notes), "alerts": len(self.alerts)}

    def sync_links(self, engine: Engine) -> int:
        """Mark unlinked people as linked where the Delius database already carries their NOMS number (a reused
        local database in which linkage events already ran). Returns how many changed."""
        unlinked = {p.crn: p for p in self.unlinked_people}
        if not unlinked:
            return 0
        changed = 0
        with engine.connect() as conn:
            rows = conn.execute(
                select(m.offender.c.crn, m.offender.c.noms_number).where(m.offender.c.crn.in_(sorted(unlinked)))
            ).all()
        for row in rows:
            person = unlinked[row.crn]
            if row.noms_number and row.noms_number.upper() == person.noms_number:
                person.noms_linked = True
                changed += 1
        return changed

    def link(self, engine: Engine, person: Person) -> bool:
        """Set the person's NOMS number on their Delius offender (as the linkage in Delius does). True if a row
        changed."""
        if not person.in_delius:
            raise ValueError("person is not in Delius")
        with engine.begin() as conn:
            result = conn.execute(
                update(m.offender).where(m.offender.c.crn == person.crn).values(noms_number=person.noms_number)
            )
        person.noms_linked = True
        return result.rowcount > 0


def _manager_code(team: str | None, crn_value: str | None) -> str | None:
    """A small pool of offender managers per team: ``{area}P{team number}{n}`` (officer-code shape)."""
    if not team or not crn_value:
        return None
    return f"{team[:3]}P{int(team[-2:]) % 10}{int(crn_value[1:]) % 4 + 1:02d}"


def note_kind(note: dict[str, Any]) -> str:
    """How the pipeline should treat a case note: ``of_interest`` / ``filtered_{blank,transit,test,ocg}`` /
    ``not_of_interest`` (SNS passes it, the consumer drops it) / ``not_subscribed`` (SNS drops it)."""
    if case_note_of_interest(note.get("type"), note.get("subType")):
        text = note.get("text") or ""
        location = note.get("locationId") or "UNK"
        if not text.strip():
            return "filtered_blank"
        if location == IN_TRANSIT:
            return "filtered_transit"
        if location.startswith("ZZG"):
            return "filtered_test"
        if OCG_SENTENCE in text:
            return "filtered_ocg"
        return "of_interest"
    if note.get("type") in SNS_FILTER_TYPES:
        return "not_of_interest"
    return "not_subscribed"


# --- record building ----------------------------------------------------------------------------------------------
@dataclass
class _Staff:
    name: str  # authorName as NOMIS/DPS send it
    display: str  # "Forename Surname"
    username: str
    user_id: str


class RecordFactory:
    """Builds case notes, amendments and alerts for people, drawing every choice from ``rng``."""

    def __init__(self, rng: random.Random, legacy_start: int) -> None:
        self.rng = rng
        self._legacy = legacy_start
        self._staff: dict[str, list[_Staff]] = {}
        self._prison_names = {p.nomis_code: p.name for p in DEFAULT_PRISONS}

    # --- helpers --------------------------------------------------------------------------------------------
    def uuid(self) -> str:
        return seeded_uuid(self.rng)

    def surname(self) -> str:
        return self.rng.choice(SURNAME_STARTS) + self.rng.choice(SURNAME_ENDS)

    def next_legacy_id(self) -> int:
        self._legacy += self.rng.randint(1, 40)
        return self._legacy

    def staff(self, prison: str) -> _Staff:
        pool = self._staff.get(prison)
        if pool is None:
            pool = []
            for _ in range(6):
                first, last = self.rng.choice(STAFF_FIRST_NAMES), self.surname()
                # Most systems send "Forename Surname"; some older NOMIS entries "Surname, Forename".
                name = f"{last}, {first}" if self.rng.random() < 0.15 else f"{first} {last}"
                pool.append(
                    _Staff(
                        name=name,
                        display=f"{first} {last}",
                        username=f"{first[0]}{last}".upper()[:12] + "_GEN",
                        user_id=str(self.rng.randint(10_000, 999_999)),
                    )
                )
            self._staff[prison] = pool
        return self.rng.choice(pool)

    def _fill(self, template: str, person: Person) -> str:
        rng = self.rng
        others = [p.name for p in DEFAULT_PRISONS if p.nomis_code not in (person.prison, "UNK")]
        wing, wing2 = rng.sample(WINGS, 2)
        return template.format(
            name=person.first_name,
            prison=self._prison_names.get(person.prison, "the prison"),
            other=rng.choice(others),
            wing=wing,
            wing2=wing2,
            course=rng.choice(COURSES),
            work=rng.choice(WORKPLACES),
            topic=rng.choice(TOPICS),
            agreed=rng.choice(AGREED),
            day=rng.choice(WEEKDAYS),
            hour=f"{rng.randint(9, 16)}:00",
        )

    def text_for(self, case_note_type: str, sub_type: str, person: Person) -> str:
        if (case_note_type, sub_type) == ("RESET", "BCST"):
            if self.rng.random() < 0.15:
                return self._fill(
                    "Resettlement passport reviewed with {name}. No new needs identified this week.", person
                )
            pathway, summary = self.rng.choice(list(BCST_PATHWAYS.items()))
            return f"Case note summary from {pathway} pathway: {person.first_name}: {summary}."
        templates = TEXTS.get((case_note_type, sub_type), ("Entry recorded for {name} on {wing}.",))
        return self._fill(self.rng.choice(templates), person)

    def time_on(self, day: date) -> datetime:
        """A working-hours time on ``day``."""
        rng = self.rng
        return datetime.combine(day, time(rng.randint(7, 18), rng.randint(0, 59), rng.randint(0, 59)))

    # --- case notes -----------------------------------------------------------------------------------------
    def case_note(
        self,
        person: Person,
        case_note_type: str,
        sub_type: str,
        *,
        occurred: datetime,
        created: datetime,
        text: str | None = None,
        location_id: str | None = "",
        sensitive: bool = False,
        amendments: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """A case note (API JSON). ``location_id=""`` means the person's prison; ``None`` leaves it out."""
        staff = self.staff(person.prison)
        extra: dict[str, Any] = {}
        if (case_note_type, sub_type) in SUB_TYPE_DESCRIPTIONS:
            extra["subTypeDescription"] = SUB_TYPE_DESCRIPTIONS[(case_note_type, sub_type)]
        if case_note_type in TYPE_DESCRIPTIONS:
            extra["typeDescription"] = TYPE_DESCRIPTIONS[case_note_type]
        return make_case_note(
            person.noms_number,
            type=case_note_type,
            sub_type=sub_type,
            text=text if text is not None else self.text_for(case_note_type, sub_type, person),
            case_note_id=self.uuid(),
            legacy_id=self.next_legacy_id(),
            occurred_at=occurred,
            created_at=created,
            author_name=staff.name,
            author_username=staff.username,
            author_user_id=staff.user_id,
            location_id=person.prison if location_id == "" else location_id,
            sensitive=sensitive,
            amendments=list(amendments),
            **extra,
        )

    def amendment(self, person: Person, created: datetime) -> dict[str, Any]:
        staff = self.staff(person.prison)
        amendment = make_amendment(
            self._fill(self.rng.choice(AMENDMENTS), person),
            created_at=created,
            author_name=staff.name,
            author_username=staff.username,
            author_user_id=staff.user_id,
        )
        amendment["id"] = self.uuid()
        return amendment

    def amend(self, note: dict[str, Any], person: Person, now: datetime) -> dict[str, Any]:
        """A copy of ``note`` with one more amendment, dated after everything already on the note (and >= ``now``)."""
        latest = max(
            [_parse(note["creationDateTime"])]
            + [_parse(a["creationDateTime"]) for a in note.get("amendments", []) if a.get("creationDateTime")]
        )
        when = max(now, latest + timedelta(seconds=1))
        updated = dict(note)
        updated["amendments"] = list(note.get("amendments", [])) + [self.amendment(person, when)]
        return updated

    def filtered_note(self, person: Person, kind: str, *, occurred: datetime, created: datetime) -> dict[str, Any]:
        """An of-interest type that a content filter must drop: ``blank``, ``transit``, ``test`` or ``ocg``."""
        rng = self.rng
        if kind == "transit":
            return self.case_note(
                person,
                "TRANSFER",
                "FROMTOL",
                occurred=occurred,
                created=created,
                text="In transit between establishments; property held at reception.",
                location_id=IN_TRANSIT,
            )
        key = rng.choices(list(TYPES_OF_INTEREST), weights=list(TYPES_OF_INTEREST.values()))[0]
        if kind == "test":
            return self.case_note(
                person,
                *key,
                occurred=occurred,
                created=created,
                text="Test entry made in the training establishment. Please ignore.",
                location_id=TEST_ESTABLISHMENT,
            )
        if kind == "ocg":
            state = rng.choice(("active", "inactive"))
            return self.case_note(
                person,
                *rng.choice((("GEN", "OSE"), ("OMIC", "OPEN"))),
                occurred=occurred,
                created=created,
                text=f"Alert Security. {OCG_SENTENCE} - Do not share made {state}.",
            )
        if kind == "blank":
            return self.case_note(person, *key, occurred=occurred, created=created, text=rng.choice(BLANK_TEXTS))
        raise ValueError(f"unknown filtered kind {kind!r}")

    # --- alerts ---------------------------------------------------------------------------------------------
    def alert(
        self,
        person: Person,
        code: str,
        *,
        active_from: date,
        created: datetime,
        active_to: date | None = None,
        inactive_at: datetime | None = None,
        description: str | Literal[True] | None = True,
    ) -> dict[str, Any]:
        """An alert (API JSON). ``inactive_at``: made inactive then (``activeTo`` = that day, ``isActive`` false).
        ``description=True`` picks a text, ``None`` sends a null description."""
        staff = self.staff(person.prison)
        type_code, type_description, code_description = ALERT_TABLE[code]
        if description is True:
            picked: str = self.rng.choice(ALERT_TEXTS.get(code, ("Alert added on review.",)))  # str, not the union
            description = picked
        alert = make_alert(
            person.noms_number,
            code=code,
            description=description,
            alert_uuid=self.uuid(),
            active_from=active_from,
            active_to=active_to,
            is_active=True,
            created_at=created,
            created_by=staff.username,
            created_by_display_name=staff.display,
            prison_code=person.prison,
            alertCode={
                "alertTypeCode": type_code,
                "alertTypeDescription": type_description,
                "code": code,
                "description": code_description,
                "canBeAdministered": True,
            },
        )
        if inactive_at is not None:
            closer = self.staff(person.prison)
            alert = deactivate_alert(alert, by=closer.username, by_display_name=closer.display, when=inactive_at)
        return alert


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- generation ---------------------------------------------------------------------------------------------------
def _unique(rng: random.Random, make, count: int, taken: set[str]) -> list[str]:
    values: list[str] = []
    while len(values) < count:
        value = make(rng)
        if value not in taken:
            taken.add(value)
            values.append(value)
    return values


def _pick(rng: random.Random, weights: dict[tuple[str, str], int]) -> tuple[str, str]:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def generate_world(seed: int | str = 0, people: int = DEFAULT_PEOPLE, *, as_of: date | None = None) -> World:
    """A deterministic world: the same ``seed``, ``people`` and ``as_of`` give the same people, notes and alerts.

    ``as_of`` (default: today in London) is the day every date counts back from; identities (NOMS numbers, CRNs,
    names, who is in Delius) depend on the seed and ``people`` only.
    """
    if people < 1:
        raise ValueError("people must be at least 1")
    as_of = as_of or london_now().date()
    now = datetime.combine(as_of, time(7, 0))
    people_rng = random.Random(f"world:{seed}:people")
    rng = random.Random(f"world:{seed}:records")

    # --- who -------------------------------------------------------------------------------------------------
    prisons = [p.nomis_code for p in DEFAULT_PRISONS if p.nomis_code != "UNK"]
    n_delius = round(people * DELIUS_SHARE)
    n_unlinked = min(n_delius, max(1, round(people * UNLINKED_SHARE))) if people >= 10 else 0
    n_unk = max(1, round(people * UNK_SHARE)) if people >= 20 else 0
    noms_numbers = _unique(people_rng, noms_number, people, set())
    crns = _unique(people_rng, crn, n_delius, set())
    slots = ["delius"] * (n_delius - n_unlinked) + ["unlinked"] * n_unlinked + ["prison_only"] * (people - n_delius)
    people_rng.shuffle(slots)
    unk_slots = set(people_rng.sample(range(people), n_unk))
    persons: list[Person] = []
    crn_iter = iter(crns)
    for i, (noms, slot) in enumerate(zip(noms_numbers, slots)):
        prison = "UNK" if i in unk_slots else people_rng.choice(prisons)
        person = Person(
            noms_number=noms,
            first_name=people_rng.choice(FIRST_NAMES),
            surname=people_rng.choice(SURNAME_STARTS) + people_rng.choice(SURNAME_ENDS),
            prison=prison,
        )
        if slot != "prison_only":
            person.crn = next(crn_iter)
            person.noms_linked = slot == "delius"
            home = HOME_TEAMS.get(prison, ("N07T01",))
            all_teams = [t for r in DEFAULT_REGIONS for t in r.team_codes]
            usual = people_rng.random() < 0.85
            person.manager_team = people_rng.choice(home) if usual else people_rng.choice(all_teams)
            roll = people_rng.random()
            person.custodial_events = 2 if roll < 0.10 else 1
            person.community_events = 1 if people_rng.random() < 0.15 else 0
            nsis: list[tuple[str, date]] = []
            if people_rng.random() < 0.30:
                nsis.append(("RESPASS", as_of - timedelta(days=people_rng.randint(5, 400))))
                if people_rng.random() < 0.15:  # a second, older or newer, referral: the latest one wins
                    nsis.append(("RESPASS", as_of - timedelta(days=people_rng.randint(5, 400))))
            if people_rng.random() < 0.20:
                nsis.append(("OMICSUP", as_of - timedelta(days=people_rng.randint(5, 400))))
            person.nsis = tuple(nsis)
        persons.append(person)

    # --- case notes ------------------------------------------------------------------------------------------
    factory = RecordFactory(rng, legacy_start=rng.randint(1_000_000, 4_000_000))
    all_types = {**TYPES_OF_INTEREST, **NOT_OF_INTEREST_SNS, **NOT_SUBSCRIBED}
    notes: list[dict[str, Any]] = []
    for person in persons:
        for _ in range(rng.choice((2, 4, 5, 6, 7, 8, 9, 10, 12, 14))):
            key = _pick(rng, all_types)
            occurred = factory.time_on(as_of - timedelta(days=rng.randint(1, 365)))
            if rng.random() < 0.8:  # written up within a few hours, else on a later day
                created = occurred + timedelta(minutes=rng.randint(0, 180))
            else:
                created = factory.time_on(occurred.date() + timedelta(days=rng.randint(1, 3)))
            created = min(created, now - timedelta(minutes=5))
            amendments = []
            roll = rng.random()
            if roll < 0.15:
                last = created
                for _ in range(2 if roll < 0.03 else 1):
                    last = min(last + timedelta(minutes=rng.randint(10, 20 * 24 * 60)), now - timedelta(minutes=1))
                    amendments.append(factory.amendment(person, last))
            sensitive = key[0] in {"OMIC", "OMIC_OPD", "KA"} and rng.random() < 0.08
            location: str | None = ""
            if person.prison == "UNK" or rng.random() < 0.01:
                location = None if rng.random() < 0.5 else "UNK"
            notes.append(
                factory.case_note(
                    person,
                    *key,
                    occurred=occurred,
                    created=created,
                    location_id=location,
                    sensitive=sensitive,
                    amendments=amendments,
                )
            )
    # Content-filtered notes: a fixed share of each kind replaces of-interest notes.
    per_kind = max(2, round(len(notes) * 0.01))
    candidates = [i for i, n in enumerate(notes) if (n["type"], n["subType"]) in TYPES_OF_INTEREST]
    chosen = rng.sample(candidates, min(len(candidates), per_kind * 4))
    by_noms = {p.noms_number: p for p in persons}
    for j, index in enumerate(chosen):
        old = notes[index]
        person = by_noms[old["offenderIdentifier"]]
        kind = ("blank", "transit", "test", "ocg")[j % 4]
        notes[index] = factory.filtered_note(
            person, kind, occurred=_parse(old["occurrenceDateTime"]), created=_parse(old["creationDateTime"])
        )

    # --- alerts ----------------------------------------------------------------------------------------------
    codes = [c for c in ALERT_WEIGHTS if c != OCG_ALERT]
    alerts: list[dict[str, Any]] = []
    for person in persons:
        for _ in range(rng.choices((0, 1, 2, 3), weights=(35, 35, 20, 10))[0]):
            alerts.append(
                _world_alert(factory, rng, person, rng.choices(codes, [ALERT_WEIGHTS[c] for c in codes])[0], as_of, now)
            )
    n_ocg = max(2, round(people * 0.02)) if people >= 2 else 1
    for person in rng.sample(persons, min(n_ocg, len(persons))):
        alerts.append(_world_alert(factory, rng, person, OCG_ALERT, as_of, now, active=True))
    return World(seed=seed, as_of=as_of, people=persons, case_notes=notes, alerts=alerts)


def _world_alert(
    factory: RecordFactory,
    rng: random.Random,
    person: Person,
    code: str,
    as_of: date,
    now: datetime,
    active: bool | None = None,
) -> dict[str, Any]:
    start = as_of - timedelta(days=rng.randint(1, 700))
    created = min(factory.time_on(start), now - timedelta(minutes=5))
    description: str | Literal[True] | None = None if rng.random() < 0.02 else True
    if active is None:
        active = rng.random() >= 0.2
    if active:
        active_to = as_of + timedelta(days=rng.randint(10, 200)) if rng.random() < 0.05 else None
        return factory.alert(
            person, code, active_from=start, created=created, active_to=active_to, description=description
        )
    end_day = start + timedelta(days=rng.randint(1, max(1, (as_of - start).days - 1)))
    end_day = min(end_day, as_of - timedelta(days=1))
    inactive_at = min(max(factory.time_on(end_day), created + timedelta(minutes=1)), now - timedelta(minutes=1))
    return factory.alert(
        person, code, active_from=start, created=created, inactive_at=inactive_at, description=description
    )


def people_by_status(people: Iterable[Person]) -> dict[str, int]:
    return dict(Counter(p.status for p in people))


__all__ = [
    "DEFAULT_PEOPLE",
    "Person",
    "RecordFactory",
    "World",
    "crn",
    "generate_world",
    "noms_number",
    "note_kind",
    "people_by_status",
    "seeded_uuid",
]
