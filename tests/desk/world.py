"""The desk over an in-process escalation core: what it publishes is processed at once and its incident events
fed back to its read model, as the escalation worker and the desk's consumer would (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from schemas.events import IncidentAction, Tier, TierChange, TierOverride
from services.common.config import EscalationConfig, StatementConfig, YuqingConfig, load_config
from services.desk.app import create_app
from services.desk.readmodel import ReadModel
from services.desk.settings import DeskSettings
from services.desk.state import Publisher
from services.escalation.core import EscalationCore, Outcome

TOKEN = "op-token-31f7-desk"
DRAFTER, APPROVER, OTHER_APPROVER = "市场负责人 王五", "总经理 赵六", "法务负责人 周八"


def desk_config(**statement: Any) -> YuqingConfig:
    base = load_config()
    approvers = StatementConfig(approvers=(APPROVER, OTHER_APPROVER), **statement)
    return base.model_copy(update={"escalation": EscalationConfig(statement=approvers)})


def desk_app(config: YuqingConfig, publisher: Publisher, **settings: Any) -> FastAPI:
    """The desk's app as `yuqing worker desk` serves it, without Kafka: commands go to `publisher`, and the
    read model (`app.state.desk.model`) is fed by the test."""
    defaults: dict[str, Any] = {
        "operator_tokens": (TOKEN,),
        "console_secret": "console-session-secret-0123",
        "read_model": False,
    }
    return create_app(DeskSettings(**{**defaults, **settings}), config=config, publisher=publisher)


class Desk:
    def __init__(self, config: YuqingConfig | None = None) -> None:
        self.config = config or desk_config()
        self.core = EscalationCore(self.config.escalation)
        self.rows: dict[str, dict[str, Any]] = {}
        self.sent: list[IncidentAction] = []
        self.outcomes: list[Outcome] = []
        self.process = True  # False: actions are only collected, as when the worker lags
        self.app = desk_app(self.config, self)
        self.model: ReadModel = self.app.state.desk.model

    async def action(self, group: str, action: IncidentAction) -> None:
        self.sent.append(action)
        if self.process:
            self._apply(self.core.on_action(action, self.rows))

    async def override(self, group: str, command: TierOverride) -> None:
        raise AssertionError("not used here")

    def _apply(self, out: Outcome) -> None:
        self.outcomes.append(out)
        out.save(self.rows)
        for event in out.events:
            self.model.apply(event)

    def open(
        self, tier: Tier = Tier.level2, group: str = "xinghe", top_posts: tuple[dict[str, Any], ...] = ()
    ) -> str:
        """A tier change opens an incident now; returns its id."""
        now = datetime.now(UTC)
        tc = TierChange(
            event_time=now,
            group=group,
            previous=Tier.none,
            tier=tier,
            direction="up",
            reason="threshold",
            window_end=now,
            counts={"2h": 60_000, "4h": 60_000, "8h": 60_000},
            top_posts=top_posts,
            detected_at=now,
        )
        self.model.apply(tc)
        self._apply(self.core.on_tier_change(tc, self.rows, now))
        return self.model.current_incident[group]

    def cool(self, group: str = "xinghe") -> None:
        """Spread stopped: the tier comes down (after the statement, the incident starts cooling)."""
        now = datetime.now(UTC)
        tc = TierChange(
            event_time=now,
            group=group,
            previous=Tier.level2,
            tier=Tier.none,
            direction="down",
            reason="cooldown",
            window_end=now,
            counts={"2h": 10, "4h": 10, "8h": 10},
            detected_at=now,
        )
        self.model.apply(tc)
        self._apply(self.core.on_tier_change(tc, self.rows, now))

    def state(self, incident_id: str) -> str:
        events = self.model.incident(incident_id)
        assert events is not None
        return events[-1].state.value
