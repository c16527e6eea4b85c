"""SQLAlchemy Core tables for the Delius database contract (``schema.*.sql`` beside this file).

We do not own this schema: these definitions only name the tables and columns the integration reads and writes, so
they work against any database created from the contract DDL (PostgreSQL, SQLite). Never call ``metadata.create_all``
on them for a real database; ``delius.schema.create_schema`` runs the contract DDL itself.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Time,
)

metadata = MetaData()

user_ = Table(
    "user_",
    metadata,
    Column("user_id", BigInteger, primary_key=True),
    Column("distinguished_name", String(60), nullable=False),
)

business_interaction = Table(
    "business_interaction",
    metadata,
    Column("business_interaction_id", BigInteger, primary_key=True),
    Column("business_interaction_code", String(10), nullable=False),
    Column("description", String(100)),
)

audited_interaction = Table(
    "audited_interaction",
    metadata,
    Column("audited_interaction_id", BigInteger, primary_key=True),
    Column("date_time", DateTime, nullable=False),
    Column("outcome", String(1), nullable=False),
    Column("interaction_parameters", String(1000)),
    Column("business_interaction_id", BigInteger, ForeignKey("business_interaction.business_interaction_id")),
    Column("user_id", BigInteger, ForeignKey("user_.user_id")),
)

r_institution = Table(
    "r_institution",
    metadata,
    Column("institution_id", BigInteger, primary_key=True),
    Column("code", String(6), nullable=False),
    Column("nomis_cde_code", String(6)),
    Column("description", String(80)),
)

probation_area = Table(
    "probation_area",
    metadata,
    Column("probation_area_id", BigInteger, primary_key=True),
    Column("code", String(3), nullable=False),
    Column("description", String(60), nullable=False),
    Column("institution_id", BigInteger, ForeignKey("r_institution.institution_id")),
    Column("selectable", String(1), nullable=False),
)

team = Table(
    "team",
    metadata,
    Column("team_id", BigInteger, primary_key=True),
    Column("code", String(6), nullable=False),
    Column("description", String(100)),
    Column("probation_area_id", BigInteger, ForeignKey("probation_area.probation_area_id"), nullable=False),
)

staff = Table(
    "staff",
    metadata,
    Column("staff_id", BigInteger, primary_key=True),
    Column("officer_code", String(7), nullable=False),
    Column("forename", String(35), nullable=False),
    Column("surname", String(35), nullable=False),
    Column("probation_area_id", BigInteger, ForeignKey("probation_area.probation_area_id"), nullable=False),
    Column("start_date", Date),
    Column("private", Integer, nullable=False),
    Column("created_by_user_id", BigInteger, ForeignKey("user_.user_id")),
    Column("created_datetime", DateTime),
    Column("last_updated_user_id", BigInteger, ForeignKey("user_.user_id")),
    Column("last_updated_datetime", DateTime),
    Column("row_version", Integer, nullable=False),
)

staff_team = Table(
    "staff_team",
    metadata,
    Column("staff_id", BigInteger, ForeignKey("staff.staff_id"), primary_key=True),
    Column("team_id", BigInteger, ForeignKey("team.team_id"), primary_key=True),
)

offender = Table(
    "offender",
    metadata,
    Column("offender_id", BigInteger, primary_key=True),
    Column("crn", String(7), nullable=False),
    Column("noms_number", String(7)),
    Column("first_name", String(35)),
    Column("surname", String(35)),
    Column("soft_deleted", Integer, nullable=False),
)

r_disposal_type = Table(
    "r_disposal_type",
    metadata,
    Column("disposal_type_id", BigInteger, primary_key=True),
    Column("code", String(10), nullable=False),
    Column("sentence_type", String(2)),
)

event = Table(
    "event",
    metadata,
    Column("event_id", BigInteger, primary_key=True),
    Column("offender_id", BigInteger, ForeignKey("offender.offender_id"), nullable=False),
    Column("event_number", String(10), nullable=False),
    Column("active_flag", Integer, nullable=False),
    Column("soft_deleted", Integer, nullable=False),
)

disposal = Table(
    "disposal",
    metadata,
    Column("disposal_id", BigInteger, primary_key=True),
    Column("event_id", BigInteger, ForeignKey("event.event_id"), nullable=False),
    Column("disposal_type_id", BigInteger, ForeignKey("r_disposal_type.disposal_type_id"), nullable=False),
    Column("active_flag", Integer, nullable=False),
    Column("soft_deleted", Integer, nullable=False),
)

r_nsi_type = Table(
    "r_nsi_type",
    metadata,
    Column("nsi_type_id", BigInteger, primary_key=True),
    Column("code", String(20), nullable=False),
)

nomis_type_nsi_type = Table(
    "nomis_type_nsi_type",
    metadata,
    Column("nomis_type", String(100), primary_key=True),
    Column("nsi_type_id", BigInteger, ForeignKey("r_nsi_type.nsi_type_id"), primary_key=True),
)

nsi = Table(
    "nsi",
    metadata,
    Column("nsi_id", BigInteger, primary_key=True),
    Column("offender_id", BigInteger, ForeignKey("offender.offender_id"), nullable=False),
    Column("event_id", BigInteger, ForeignKey("event.event_id")),
    Column("nsi_type_id", BigInteger, ForeignKey("r_nsi_type.nsi_type_id"), nullable=False),
    Column("referral_date", Date, nullable=False),
    Column("active_flag", Integer, nullable=False),
    Column("soft_deleted", Integer, nullable=False),
)

offender_manager = Table(
    "offender_manager",
    metadata,
    Column("offender_manager_id", BigInteger, primary_key=True),
    Column("offender_id", BigInteger, ForeignKey("offender.offender_id"), nullable=False),
    Column("allocation_staff_id", BigInteger, ForeignKey("staff.staff_id"), nullable=False),
    Column("team_id", BigInteger, ForeignKey("team.team_id"), nullable=False),
    Column("probation_area_id", BigInteger, ForeignKey("probation_area.probation_area_id"), nullable=False),
    Column("active_flag", Integer, nullable=False),
    Column("soft_deleted", Integer, nullable=False),
)

r_contact_type = Table(
    "r_contact_type",
    metadata,
    Column("contact_type_id", BigInteger, primary_key=True),
    Column("code", String(10), nullable=False),
    Column("description", String(200), nullable=False),
    Column("sensitive_contact", String(1), nullable=False),
)

r_contact_type_nomis_type = Table(
    "r_contact_type_nomis_type",
    metadata,
    Column("nomis_contact_type", String(100), primary_key=True),
    Column("contact_type_id", BigInteger, ForeignKey("r_contact_type.contact_type_id"), nullable=False),
)

contact = Table(
    "contact",
    metadata,
    Column("contact_id", BigInteger, primary_key=True),
    Column("offender_id", BigInteger, ForeignKey("offender.offender_id"), nullable=False),
    Column("event_id", BigInteger, ForeignKey("event.event_id")),
    Column("nsi_id", BigInteger, ForeignKey("nsi.nsi_id")),
    Column("contact_type_id", BigInteger, ForeignKey("r_contact_type.contact_type_id"), nullable=False),
    Column("description", String(200)),
    Column("notes", Text),
    Column("contact_date", Date, nullable=False),
    Column("contact_start_time", Time),
    Column("staff_id", BigInteger, ForeignKey("staff.staff_id")),
    Column("staff_employee_id", BigInteger),
    Column("team_id", BigInteger, ForeignKey("team.team_id")),
    Column("probation_area_id", BigInteger, ForeignKey("probation_area.probation_area_id")),
    Column("trust_provider_team_id", BigInteger),
    Column("trust_provider_flag", Integer, nullable=False),
    Column("partition_area_id", Integer, nullable=False),
    Column("soft_deleted", Integer, nullable=False),
    Column("sensitive", String(1)),
    Column("external_reference", String(4000)),
    Column("nomis_case_note_id", BigInteger),
    Column("created_datetime", DateTime, nullable=False),
    Column("last_updated_datetime", DateTime, nullable=False),
    Column("created_by_user_id", BigInteger, ForeignKey("user_.user_id")),
    Column("last_updated_user_id", BigInteger, ForeignKey("user_.user_id")),
    Column("row_version", Integer, nullable=False),
)

# Tables the integration writes (least privilege in production: see docs/operations.md).
WRITTEN_TABLES = ("contact", "staff", "staff_team", "audited_interaction")
