"""The operator API and the console over an in-process escalation core: what they publish is processed at once
and its incident events fed back to the read model, as the worker and the API's consumer would (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr

from schemas.events import IncidentAction, Tier, TierChange, TierOverride
from services.common.auth import TokenCheck
from services.common.config import EscalationConfig, StatementConfig, YuqingConfig, load_config
from services.desk.console import install_console
from services.desk.operator import operator_router
from services.desk.readmodel import ReadModel
from services.desk.workflow_views import install_workflow_views
from services.escalation.core import EscalationCore, Outcome

TOKEN = "op-token-31f7"
DRAFTER, APPROVER, OTHER_APPROVER = "市场负责人 王五", "总经理 赵六", "法务负责人 周八"


def desk_config(**statement: Any) -> YuqingConfig:
    base = load_config()
    approvers = StatementConfig(approvers=(APPROVER, OTHER_APPROVER), **statement)
    return base.model_copy(update={"escalation": EscalationConfig(statement=approvers)})


class Desk:
    def __init__(self, config: YuqingConfig | None = None) -> None:
        self.config = config or desk_config()
        self.model = ReadModel()
        self.core = EscalationCore(self.config.escalation)
        self.rows: dict[str, dict[str, Any]] = {}
        self.sent: list[IncidentAction] = []
        self.outcomes: list[Outcome] = []
        self.process = True  # False: actions are only collected, as when the worker lags

        async def send(group: str, action: IncidentAction) -> None:
            self.sent.append(action)
            if self.process:
                self._apply(self.core.on_action(action, self.rows))

        async def override(group: str, cmd: TierOverride) -> None:
            raise AssertionError("not used here")

        self.app = FastAPI()
        check = TokenCheck((SecretStr(TOKEN),), "operator")
        self.app.include_router(
            operator_router(self.model, check, send, None, override, escalation=self.config.escalation)
        )
        install_console(self.app, self.model, self.config, [TOKEN], send, b"session-secret")
        install_workflow_views(self.app)

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
