"""A test harness around EscalationCore: time is an argument, rows are saved the way the worker saves them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import Deadline, IncidentAction, IncidentActionKind, Tier, TierChange
from services.common.config import EscalationConfig, StatementConfig
from services.escalation.core import EscalationCore, Incident, Outcome

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 Asia/Shanghai
DRAFTER, APPROVER = "市场负责人 王五", "总经理 赵六"
# The leadership group signs statements off; the default config has no approvers (nothing can be published).
SIGNED = EscalationConfig(statement=StatementConfig(approvers=(APPROVER, "法务负责人 周八")))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def change(
    tier: Tier,
    previous: Tier = Tier.none,
    when: datetime = T0,
    *,
    detected: datetime | None = None,
    counts: dict[str, int] | None = None,
    top_posts: tuple[dict[str, Any], ...] = (),
) -> TierChange:
    direction = "up" if tier.severity > previous.severity else "down"
    return TierChange(
        event_time=when,
        group="g",
        previous=previous,
        tier=tier,
        direction=direction,
        reason="threshold" if direction == "up" else "cooldown",
        window_end=when,
        counts=counts or {},
        top_posts=top_posts,
        detected_at=detected or when,
    )


class World:
    def __init__(self, config: EscalationConfig | None = None) -> None:
        self.core = EscalationCore(config or SIGNED)
        self.incidents: dict[str, dict[str, Any]] = {}
        self.iid = ""

    def _save(self, out: Outcome) -> Outcome:
        out.save(self.incidents)
        return out

    def open(self, tier: Tier, minutes: float = 0, **kw: Any) -> Outcome:
        out = self.tier(tier, Tier.none, minutes, **kw)
        self.iid = out.events[0].incident_id
        return out

    def tier(self, tier: Tier, previous: Tier, minutes: float, **kw: Any) -> Outcome:
        when = kw.pop("now", None) or at(minutes)
        return self._save(
            self.core.on_tier_change(change(tier, previous, at(minutes), **kw), self.incidents, when)
        )

    def act(
        self, kind: IncidentActionKind, minutes: float, comment: str = "", actor: str = "a", **fields: Any
    ) -> Outcome:
        action = IncidentAction(
            event_time=at(minutes),
            incident_id=self.iid,
            group="g",
            action=kind,
            actor=actor,
            comment=comment,
            **fields,
        )
        return self._save(self.core.on_action(action, self.incidents))

    def publish(
        self, minutes: float, comment: str = "", actor: str = DRAFTER, text: str = "致歉声明"
    ) -> Outcome:
        """The sign-off and the publication at `minutes`: drafted, submitted, approved, published; what the
        four steps produced, in order."""
        a = IncidentActionKind
        steps = [self.act(a.statement_drafted, minutes, actor=DRAFTER, text=text)]
        version = self.incident.statement[-1].version
        steps.append(self.act(a.statement_submitted, minutes, actor=DRAFTER))
        steps.append(self.act(a.statement_approved, minutes, actor=APPROVER, version=version))
        steps.append(self.act(a.statement_published, minutes, comment=comment, actor=actor))
        return Outcome(
            events=[e for o in steps for e in o.events],
            alerts=[x for o in steps for x in o.alerts],
            rows=steps[-1].rows,
        )

    def tick(self, minutes: float) -> Outcome:
        return self._save(self.core.on_tick(self.incidents, at(minutes)))

    def pages(self, minutes: float) -> list[str]:
        """Every page a tick sends (breach and ladder alike), as kind:audience."""
        return [
            f"{a.kind.value}:{a.audience}"
            for a in self.tick(minutes).alerts
            if a.kind.value in ("sla_breached", "escalation")
        ]

    @property
    def incident(self) -> Incident:
        return Incident.model_validate(self.incidents["g"])

    @property
    def state(self) -> str:
        return self.incident.state.value

    def deadline(self, name: str) -> Deadline:
        """The current deadline of that name (not a retired one)."""
        return self.incident.deadlines[name].public()
