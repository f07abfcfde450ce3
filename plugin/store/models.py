"""The store's tables, as SQLAlchemy 2 declarative models.

These describe the schema the latest migration produces; the migrations themselves never import
this module (a migration must keep creating what it created on the day it was written). One
``Base`` with a constraint naming convention holds every table, so later tables
(``failover_sessions``, ``failover_messages``) are one more class here plus one more migration,
and Alembic's batch mode on SQLite can find constraints by name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Alembic's own bookkeeping table. Not ``alembic_version``: the database may be shared with an
# application that runs its own Alembic history, and two histories in one table break both.
VERSION_TABLE = "failover_alembic_version"

ID_LENGTH = 255
"""Identifier columns (groups, deployments, requests, instances) are clipped to this by the writer."""

SESSION_ID_LENGTH = 256
"""Session ids are validated upstream (at most 256 characters); the writer clips to this anyway."""

CALLER_LENGTH = 64
"""A caller scope: ``anonymous``, ``legacy`` or ``<kind>-<32 hex>`` (``sessions.identity``)."""

ROLE_LENGTH = 64
HASH_LENGTH = 128
"""Room for a hex sha256 (64) with an algorithm prefix such as ``sha256:``, should one be added."""

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL keeps the zone (``timestamptz``); SQLite has no datetime type, so values are stored
    as naive UTC text (which also sorts and compares correctly) and get UTC attached on the way out.
    A naive value going in is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FailoverEventRecord(Base):
    """The audit trail: one row per decision (``litellm_failover.events.FailoverEvent``)."""

    __tablename__ = "failover_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    model_group: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False)
    deployment_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    from_deployment: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    to_deployment: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    request_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    instance_id: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)

    __table_args__ = (
        Index("ix_failover_events_created_at", "created_at"),
        Index("ix_failover_events_event_type", "event_type"),
        Index("ix_failover_events_model_group", "model_group"),
    )


class DeploymentStateRecord(Base):
    """The latest known state of each deployment (``DeploymentStateRow``), one row per deployment."""

    __tablename__ = "failover_deployment_state"

    deployment_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    model_group: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False)
    state: Mapped[str] = mapped_column(String(64), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    instance_id: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False, default="")
    checks: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    ejection_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class SessionRecord(Base):
    """A conversation in one model group: where it is pinned and how many turns it has had.

    One row per (session, caller, model group): a session belongs to the caller LiteLLM
    authenticated (``caller``, a hash: ``sessions.identity.caller_of``), so one id used by two
    callers is two sessions; a client may use one session id across groups, and each group pins
    on its own deployments. ``turn_count`` only ever grows by what writers add, so replicas
    recording turns of the same session never overwrite each other's counts. Rows written before
    migration 0005 have caller ``legacy``, which no request has.
    """

    __tablename__ = "failover_sessions"

    session_id: Mapped[str] = mapped_column(String(SESSION_ID_LENGTH), primary_key=True)
    caller: Mapped[str] = mapped_column(String(CALLER_LENGTH), primary_key=True)
    model_group: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    pinned_deployment: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    turn_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    # The retention purge and ``sessions list`` both select by last activity.
    __table_args__ = (Index("ix_failover_sessions_updated_at", "updated_at"),)


# SQLite only auto-numbers a column declared exactly ``INTEGER PRIMARY KEY`` (its rowid, 64-bit
# anyway); PostgreSQL gets a BIGSERIAL, since a busy fleet can pass 2**31 messages in its lifetime.
MessageId = BigInteger().with_variant(Integer(), "sqlite")


class MessageRecord(Base):
    """One message of a session (``MessageRow``): its text or only its hash, who answered, tokens.

    ``(session_id, caller, chain_hash)`` is unique: the chain hash covers the message and its
    whole history (``sessions.content.chain_hash``), so a resent history adds nothing while a
    divergent one is kept as a branch, and ``parent_hash`` links each message to the one before
    it in its own branch. The unique index also serves every lookup by session (its leading
    columns), so there is no separate session_id index to maintain on each insert. Rows written
    before migration 0005 have caller ``legacy``, chain hash ``legacy-<id>`` and no parent.
    ``response_id`` is indexed: a Responses API request naming ``previous_response_id`` finds
    the conversation through it. ``created_at`` is indexed for the retention purge.
    """

    __tablename__ = "failover_messages"

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(SESSION_ID_LENGTH), nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    role: Mapped[str] = mapped_column(String(ROLE_LENGTH), nullable=False)
    content: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), nullable=False)
    content_chars: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    deployment_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    response_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    truncated: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    caller: Mapped[str] = mapped_column(String(CALLER_LENGTH), nullable=False)
    parent_hash: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    chain_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), nullable=False)

    __table_args__ = (
        UniqueConstraint(
            "session_id", "caller", "chain_hash", name="uq_failover_messages_session_id_caller_chain_hash"
        ),
        Index("ix_failover_messages_response_id", "response_id"),
        Index("ix_failover_messages_created_at", "created_at"),
    )


COMMAND_ID_LENGTH = 64
"""Command ids are uuid4 hex (32 characters); room for a caller's own longer form."""


class CommandRecord(Base):
    """An operator command for the running replicas (``litellm_failover.control``), in the order
    issued: ``id`` is what replicas poll by (each remembers the highest it has seen), while
    ``command_id`` is the name results and Redis acknowledgements use."""

    __tablename__ = "failover_commands"

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    command_id: Mapped[str] = mapped_column(String(COMMAND_ID_LENGTH), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    target: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False)
    args: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    issued_by: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False, default="")
    # The command's authentication tag (litellm_failover.control.signing); NULL: unsigned.
    signature: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (UniqueConstraint("command_id", name="uq_failover_commands_command_id"),)


class CommandResultRecord(Base):
    """What one replica did with one command: ``outcome`` applied (``ok``), refused (the plugin
    said no: an unknown group, a shift already running), expired or error; and why."""

    __tablename__ = "failover_command_results"

    command_id: Mapped[str] = mapped_column(String(COMMAND_ID_LENGTH), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)  # applied|refused|expired|error
    message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ControlReplicaRecord(Base):
    """A running replica listening for commands, refreshed by its heartbeat: the CLI waits for
    the answers of the replicas whose ``expires_at`` is still ahead, and no longer."""

    __tablename__ = "failover_control_replicas"

    instance_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


events_table = FailoverEventRecord.__table__
deployment_state_table = DeploymentStateRecord.__table__
sessions_table = SessionRecord.__table__
messages_table = MessageRecord.__table__
commands_table = CommandRecord.__table__
command_results_table = CommandResultRecord.__table__
control_replicas_table = ControlReplicaRecord.__table__
