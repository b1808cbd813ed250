"""Governance's tables: the policies and prices an admin sets, and the intervals of
replica and GPU use that costs are estimated from (:mod:`llmops.services.governance`).

Importing this module adds them to :data:`llmops.db.models.Base`'s metadata (the
governance service and the migrations' environment import it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from llmops.db.models import Base, utcnow


class GovernanceSetting(Base):
    """One document an admin sets, by name: ``policies`` or ``prices``. ``version`` counts
    its changes; ``updated_at`` and ``updated_by`` say when and who made the last one."""

    __tablename__ = "governance_settings"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class EndpointUsage(Base):
    """An interval in which an endpoint's deployment held ``replicas`` replicas of
    ``gpus_per_replica`` GPUs each; ``ended_at`` is None while it lasts. No foreign key:
    an endpoint's usage outlives the endpoint (its name is kept for the cost report)."""

    __tablename__ = "endpoint_usage"
    __table_args__ = (Index("ix_endpoint_usage_endpoint_id_ended_at", "endpoint_id", "ended_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(32))
    endpoint_name: Mapped[str] = mapped_column(String(63))
    replicas: Mapped[int] = mapped_column(Integer)
    gpus_per_replica: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[datetime | None] = mapped_column()
