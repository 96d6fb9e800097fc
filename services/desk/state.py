"""What every desk route works with, built once per app by `create_app` and reached through dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request

from schemas.events import IncidentAction, TierOverride
from schemas.topics import Topics
from services.common import json
from services.common.auth import TokenCheck
from services.common.config import YuqingConfig
from services.common.producer import Producer
from services.desk.readmodel import ReadModel
from services.escalation.lifecycle import Lifecycle

__all__ = ["Desk", "DeskDep", "KafkaPublisher", "Operator", "Publisher", "desk_of"]


class Publisher(Protocol):
    """Where operator commands go: the incident-actions and tier-overrides topics (keyed by rule group)."""

    async def action(self, group: str, action: IncidentAction) -> None: ...

    async def override(self, group: str, command: TierOverride) -> None: ...


class KafkaPublisher:
    """A `Publisher` on Kafka; raises KafkaConnectionError while Kafka has not been reached."""

    def __init__(self, producer: Producer, topics: Topics) -> None:
        self.producer = producer
        self.topics = topics

    async def action(self, group: str, action: IncidentAction) -> None:
        await self.producer.get().send_and_wait(
            self.topics.incident_actions, key=group.encode(), value=json.dumps(action)
        )

    async def override(self, group: str, command: TierOverride) -> None:
        await self.producer.get().send_and_wait(
            self.topics.tier_overrides, key=group.encode(), value=json.dumps(command)
        )


@dataclass
class Desk:
    model: ReadModel
    config: YuqingConfig  # the YAML config, loaded once
    lifecycle: Lifecycle  # escalation's rules, to refuse an action early with the worker's reason
    publisher: Publisher
    operators: TokenCheck
    link_secret: bytes | None  # ack links are off without it
    max_body_bytes: int


def desk_of(request: Request) -> Desk:
    """The desk of the app serving `request` (a route dependency)."""
    desk: Desk = request.app.state.desk
    return desk


def _operator(request: Request, desk: Annotated[Desk, Depends(desk_of)]) -> None:
    desk.operators.require(request)


DeskDep = Annotated[Desk, Depends(desk_of)]
# A route that lists this runs only for a caller with an operator token (401/403 before anything is read).
Operator = Depends(_operator)
