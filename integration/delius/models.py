"""SQLAlchemy Core tables for the Delius database contract, version 2 (``schema.*.sql`` beside this file).

We do not own this schema: these definitions only name the tables and columns the integration reads and writes, so
they work against any database created from the contract DDL (PostgreSQL, SQLite) and against NDelius itself
(Oracle). Never call ``metadata.create_all`` on them for a real database; ``delius.schema.create_schema`` runs the
contract DDL itself. ``docs/delius-contract.md`` describes the contract as the integration relies on it.

* ``contact_id`` and ``staff_id`` name their sequences (``contact_id_seq``, ``staff_id_seq``): on PostgreSQL and
  Oracle new ids come from them (the store fetches them first and inserts explicit ids, see ``sequences.py``);
  SQLite has no sequences and the id is the table's rowid.
* Timestamps are ``DateTime`` (Oracle ``DATE``: whole seconds); ``notes`` is ``Text`` (Oracle ``CLOB``).
* No other table has an id default: rows the project seeds itself (local stack, tests) carry explicit ids.
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
    Sequence,
    String,
    Table,
    Text,
)

CONTACT_ID_SEQ = Sequence("contact_id_seq", start=5000000)
STAFF_ID_SEQ = Sequence("staff_id_seq", start=1000000)

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
    Column("enabled_date", DateTime),  # null or not in the future: the interaction may be used
)

# No surrogate id: (date_time, business_interaction_id, user_id) is the key.
audited_interaction = Table(
    "audited_interaction",
    metadata,
    Column("date_time", DateTime, primary_key=True),
    Column(
        "business_interaction_id",
        BigInteger,
        ForeignKey("business_interaction.business_interaction_id"),
        primary_key=True,
    ),
    Column("user_id", BigInteger, ForeignKey("user_.user_id"), primary_key=True),
    Column("outcome", String(1), nullable=False),  # 'P' success, 'F' failure
    Column("interaction_parameters", String(500)),  # dpsId='<uuid>',contactId='<id>'
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
    Column("staff_id", BigInteger, STAFF_ID_SEQ, primary_key=True),
    Column("officer_code", String(7), nullable=False),
    Column("forename", String(35), nullable=False),
    Column("surname", String(35), nullable=False),
    Column("probation_area_id", BigInteger, ForeignKey("probation_area.probation_area_id"), nullable=False),
    Column("start_date", DateTime, nullable=False),
    Column("private", Integer, nullable=False),
    Column("created_by_user_id", BigInteger, ForeignKey("user_.user_id"), nullable=False),
    Column("created_datetime", DateTime, nullable=False),
    Column("last_updated_user_id", BigInteger, ForeignKey("user_.user_id"), nullable=False),
    Column("last_updated_datetime", DateTime, nullable=False),
    Column("row_version", Integer, nullable=False),
)

staff_team = Table(
    "staff_team",
    metadata,
    Column("staff_id", BigInteger, ForeignKey("staff.staff_id"), primary_key=True),
    Column("team_id", BigInteger, ForeignKey("team.team_id"), primary_key=True),
    Column("created_by_user_id", BigInteger, ForeignKey("user_.user_id"), nullable=False),
    Column("created_datetime", DateTime, nullable=False),
    Column("last_updated_user_id", BigInteger, ForeignKey("user_.user_id"), nullable=False),
    Column("last_updated_datetime", DateTime, nullable=False),
    Column("row_version", Integer, nullable=False),
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

# Which NSI type a case-note type ("{type} {subType}") belongs to; nsi_level is not filtered on.
r_nomis_type_nsi_type = Table(
    "r_nomis_type_nsi_type",
    metadata,
    Column("nomis_type_nsi_type_id", BigInteger, primary_key=True),
    Column("nomis_contact_type", String(100), nullable=False),
    Column("nsi_type_id", BigInteger, ForeignKey("r_nsi_type.nsi_type_id"), nullable=False),
    Column("nsi_level", String(20), nullable=False),
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
    Column("contact_id", BigInteger, CONTACT_ID_SEQ, primary_key=True),
    Column("offender_id", BigInteger, ForeignKey("offender.offender_id"), nullable=False),
    Column("event_id", BigInteger, ForeignKey("event.event_id")),
    Column("nsi_id", BigInteger, ForeignKey("nsi.nsi_id")),
    Column("contact_type_id", BigInteger, ForeignKey("r_contact_type.contact_type_id"), nullable=False),
    Column("description", String(200)),
    Column("notes", Text),  # CLOB on Oracle
    Column("contact_date", DateTime, nullable=False),  # the full contact timestamp (Delius shows the date)
    Column("contact_start_time", DateTime),  # the same timestamp (Delius shows the time)
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
    Column("created_by_user_id", BigInteger, ForeignKey("user_.user_id"), nullable=False),
    Column("last_updated_user_id", BigInteger, ForeignKey("user_.user_id"), nullable=False),
    Column("row_version", Integer, nullable=False),
)
