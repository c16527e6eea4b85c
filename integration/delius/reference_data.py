"""Reference data and people for Delius databases the project creates itself (local stack and tests).

Real Delius has all of this already; nothing here runs against production. The values are realistic but invented,
except the codes the reference service names (NOMISD, OTHER, APIBI001, the dev-fixture contact types).

The contract tables have no id defaults: rows seeded here carry explicit ids (the next after the highest in the
table), except ``staff``, whose ids come from ``staff_id_seq`` as the integration's own (``dialect.next_ids``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Column, func, insert, select
from sqlalchemy.engine import Connection, Engine

from . import dialect
from . import models as m

SERVICE_USERNAME = "PrisonCaseNotesToProbation"
CASE_NOTES_MERGE_INTERACTION = "APIBI001"
INTERACTION_ENABLED = datetime(2015, 4, 1)
SEED_TIME = datetime(2020, 1, 6, 9, 0, 0)  # audit columns of seeded staff


@dataclass(frozen=True)
class Prison:
    nomis_code: str  # r_institution.nomis_cde_code, e.g. "LEI"
    institution_code: str  # r_institution.code
    name: str
    area_code: str  # the prison's provider (probation_area.code); its CSN team is f"{area_code}CSN"


@dataclass(frozen=True)
class ProbationRegion:
    area_code: str
    name: str
    team_codes: tuple[str, ...]


@dataclass(frozen=True)
class ContactType:
    code: str
    description: str
    sensitive: bool = False
    nomis_types: tuple[str, ...] = ()  # r_contact_type_nomis_type keys mapped to this type


@dataclass(frozen=True)
class ReferenceData:
    prisons: tuple[Prison, ...]
    regions: tuple[ProbationRegion, ...]
    contact_types: tuple[ContactType, ...]
    nsi_types: dict[str, tuple[str, ...]] = field(default_factory=dict)  # NSI type code -> nomis types
    disposal_types: tuple[tuple[str, str], ...] = ()  # (code, sentence_type)


DEFAULT_PRISONS = (
    Prison("LEI", "LEEDHM", "Leeds (HMP)", "LEI"),
    Prison("MDI", "MOORHM", "Moorland (HMP & YOI)", "MDI"),
    Prison("WWI", "WANDHM", "Wandsworth (HMP)", "WWI"),
    Prison("BMI", "BIRMHM", "Birmingham (HMP)", "BMI"),
    Prison("SWI", "SWANHM", "Swansea (HMP)", "SWI"),
    Prison("MRI", "MANCHM", "Manchester (HMP)", "MRI"),
    Prison("NMI", "NOTTHM", "Nottingham (HMP)", "NMI"),
    Prison("UNK", "UNKNWN", "Establishment not known", "UNK"),
)

DEFAULT_REGIONS = (
    ProbationRegion("N07", "London", ("N07T01", "N07T02")),
    ProbationRegion("N02", "North East", ("N02T01",)),
    ProbationRegion("N53", "East Midlands", ("N53T01",)),
    ProbationRegion("N03", "Wales", ("N03T01",)),
)

DEFAULT_CONTACT_TYPES = (
    ContactType("NOMISD", "NOMIS Case Note"),
    ContactType("OTHER", "Other Information"),
    ContactType("CNT2", "NOMIS Alert", nomis_types=("ALERT ACTIVE", "ALERT INACTIVE")),
    ContactType("BCSP2", "Resettlement Passport Case Note", nomis_types=("RESET BCST",)),
    ContactType("NOMIS033", "Resettlement Guided Interview", nomis_types=("RESET GUIDINT",)),
    ContactType("EREL", "Release from Custody", nomis_types=("PRISON RELEASE",)),
    ContactType("ETRF", "Transfer between establishments", nomis_types=("TRANSFER FROMTOL",)),
    ContactType("NKWS", "Key Worker Session", nomis_types=("KA KS", "KA KE")),
    ContactType("NOMC", "OMiC Case Note", sensitive=True, nomis_types=("OMIC OPEN", "OMIC QUAL")),
)

DEFAULT_REFERENCE_DATA = ReferenceData(
    prisons=DEFAULT_PRISONS,
    regions=DEFAULT_REGIONS,
    contact_types=DEFAULT_CONTACT_TYPES,
    nsi_types={"RESPASS": ("RESET BCST", "RESET GUIDINT"), "OMICSUP": ("OMIC OPEN",)},
    disposal_types=(("ORA_SC", "SC"), ("CJA_NC", "NC"), ("ORA_CO", "SP")),
)


def seed_reference_data(
    engine: Engine, data: ReferenceData = DEFAULT_REFERENCE_DATA, username: str = SERVICE_USERNAME
) -> None:
    """Insert the service user, the audit interaction, providers, teams, contact types and mappings."""
    with engine.begin() as conn:
        _insert(conn, m.user_.c.user_id, distinguished_name=username)
        _insert(
            conn,
            m.business_interaction.c.business_interaction_id,
            business_interaction_code=CASE_NOTES_MERGE_INTERACTION,
            description="Case notes merge",
            enabled_date=INTERACTION_ENABLED,
        )
        for prison in data.prisons:
            institution_id = _insert(
                conn,
                m.r_institution.c.institution_id,
                code=prison.institution_code,
                nomis_cde_code=prison.nomis_code,
                description=prison.name,
            )
            area_id = _insert_area(conn, prison.area_code, prison.name, institution_id)
            _insert(
                conn,
                m.team.c.team_id,
                code=f"{prison.area_code}CSN",
                description=f"{prison.name} case notes",
                probation_area_id=area_id,
            )
        for region in data.regions:
            area_id = _insert_area(conn, region.area_code, region.name, None)
            for code in region.team_codes:
                _insert(
                    conn,
                    m.team.c.team_id,
                    code=code,
                    description=f"{region.name} team {code[-2:]}",
                    probation_area_id=area_id,
                )
        for ct in data.contact_types:
            ct_id = _insert(
                conn,
                m.r_contact_type.c.contact_type_id,
                code=ct.code,
                description=ct.description,
                sensitive_contact="Y" if ct.sensitive else "N",
            )
            for key in ct.nomis_types:
                conn.execute(insert(m.r_contact_type_nomis_type).values(nomis_contact_type=key, contact_type_id=ct_id))
        for nsi_code, nomis_types in data.nsi_types.items():
            nsi_type_id = _insert(conn, m.r_nsi_type.c.nsi_type_id, code=nsi_code)
            for key in nomis_types:
                _insert(
                    conn,
                    m.r_nomis_type_nsi_type.c.nomis_type_nsi_type_id,
                    nomis_contact_type=key,
                    nsi_type_id=nsi_type_id,
                    nsi_level="OFFENDER",
                )
        for code, sentence_type in data.disposal_types:
            _insert(conn, m.r_disposal_type.c.disposal_type_id, code=code, sentence_type=sentence_type)


def _insert(conn: Connection, id_column: Column, **values) -> int:
    """Insert one row with the next id after the highest in its table; returns the id."""
    new_id = conn.execute(select(func.coalesce(func.max(id_column), 0))).scalar_one() + 1
    conn.execute(insert(id_column.table).values({id_column.name: new_id, **values}))
    return new_id


def _insert_area(conn: Connection, code: str, name: str, institution_id: int | None) -> int:
    return _insert(
        conn,
        m.probation_area.c.probation_area_id,
        code=code,
        description=name[:60],
        institution_id=institution_id,
        selectable="Y",
    )


@dataclass
class PersonIds:
    offender_id: int
    crn: str
    event_ids: list[int] = field(default_factory=list)
    nsi_ids: list[int] = field(default_factory=list)
    manager_staff_id: int | None = None


def add_person(
    engine_or_conn: Engine | Connection,
    crn: str,
    noms_number: str | None,
    *,
    first_name: str = "Test",
    surname: str = "Person",
    soft_deleted: bool = False,
    custodial_events: int = 1,
    community_events: int = 0,
    nsis: Sequence[tuple[str, date]] = (),
    manager_team: str | None = "N07T01",
    manager_staff_code: str | None = None,
) -> PersonIds:
    """An offender with events (custodial: active disposal of sentence type SC), NSIs (type code, referral date) and
    optionally an active offender manager in ``manager_team`` (staff created on the fly)."""
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.begin() as conn:
            return add_person(
                conn,
                crn,
                noms_number,
                first_name=first_name,
                surname=surname,
                soft_deleted=soft_deleted,
                custodial_events=custodial_events,
                community_events=community_events,
                nsis=nsis,
                manager_team=manager_team,
                manager_staff_code=manager_staff_code,
            )
    conn = engine_or_conn
    offender_id = _insert(
        conn,
        m.offender.c.offender_id,
        crn=crn,
        noms_number=noms_number,
        first_name=first_name,
        surname=surname,
        soft_deleted=int(soft_deleted),
    )
    ids = PersonIds(offender_id=offender_id, crn=crn)
    disposal_type = {
        row.sentence_type: row.disposal_type_id
        for row in conn.execute(select(m.r_disposal_type.c.sentence_type, m.r_disposal_type.c.disposal_type_id))
    }
    for n, sentence_type in enumerate(["SC"] * custodial_events + ["SP"] * community_events, start=1):
        event_id = _insert(
            conn, m.event.c.event_id, offender_id=offender_id, event_number=str(n), active_flag=1, soft_deleted=0
        )
        _insert(
            conn,
            m.disposal.c.disposal_id,
            event_id=event_id,
            disposal_type_id=disposal_type[sentence_type],
            active_flag=1,
            soft_deleted=0,
        )
        ids.event_ids.append(event_id)
    nsi_types: dict[str, int] = {
        code: nsi_type_id for code, nsi_type_id in conn.execute(select(m.r_nsi_type.c.code, m.r_nsi_type.c.nsi_type_id))
    }
    for nsi_code, referral in nsis:
        ids.nsi_ids.append(
            _insert(
                conn,
                m.nsi.c.nsi_id,
                offender_id=offender_id,
                event_id=ids.event_ids[0] if ids.event_ids else None,
                nsi_type_id=nsi_types[nsi_code],
                referral_date=referral,
                active_flag=1,
                soft_deleted=0,
            )
        )
    if manager_team:
        team_id, area_id, area_code = conn.execute(
            select(m.team.c.team_id, m.team.c.probation_area_id, m.probation_area.c.code)
            .join(m.probation_area, m.probation_area.c.probation_area_id == m.team.c.probation_area_id)
            .where(m.team.c.code == manager_team)
        ).one()
        code = manager_staff_code or f"{area_code}M{offender_id % 1000:03d}"
        staff_id = conn.execute(select(m.staff.c.staff_id).where(m.staff.c.officer_code == code)).scalar()
        if staff_id is None:
            user_id = conn.execute(select(func.min(m.user_.c.user_id))).scalar_one()
            [staff_id] = dialect.next_ids(conn, "staff", 1)
            audit = {
                "created_by_user_id": user_id,
                "created_datetime": SEED_TIME,
                "last_updated_user_id": user_id,
                "last_updated_datetime": SEED_TIME,
                "row_version": 0,
            }
            conn.execute(
                insert(m.staff).values(
                    staff_id=staff_id,
                    officer_code=code,
                    forename="Olivia",
                    surname=f"Manager{offender_id}",
                    probation_area_id=area_id,
                    start_date=SEED_TIME,
                    private=0,
                    **audit,
                )
            )
            conn.execute(insert(m.staff_team).values(staff_id=staff_id, team_id=team_id, **audit))
        _insert(
            conn,
            m.offender_manager.c.offender_manager_id,
            offender_id=offender_id,
            allocation_staff_id=staff_id,
            team_id=team_id,
            probation_area_id=area_id,
            active_flag=1,
            soft_deleted=0,
        )
        ids.manager_staff_id = staff_id
    return ids
