"""The statement review and the 回访 list through the escalation worker over real Kafka: actions on
incident-actions, reminders and the breach to the approvers on the worker's ticks, refusals dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import (
    Alert,
    DeadLetterRecord,
    FollowUpRequest,
    IncidentAction,
    IncidentActionKind,
    IncidentEvent,
    Tier,
    TierChange,
)
from services.common import json
from tests.conftest import collect, produce, write_config
from tests.integration.test_escalation import incident_events, level1_change

pytestmark = pytest.mark.kafka

A = IncidentActionKind
DRAFTER, APPROVER = "市场负责人 王五", "总经理 赵六"
# The statement is due 36 s after opening, reminded at 50 %; nothing else falls due for half an hour.
REVIEW = {
    "sla": {
        "level1": {"ack_minutes": 30, "response_minutes": 30, "statement_hours": 0.01},
        "reminder_fractions": [0.5],
    },
    "statement": {"approvers": [APPROVER, "法务负责人 周八"]},
}


async def test_review_reminders_go_to_the_approvers_and_refusals_are_dead_lettered(
    kafka, topics, stack_factory, tmp_path
):
    config = write_config(tmp_path / "c.yaml", escalation=REVIEW)
    stack_factory(config, services=("escalation",), extra_env={"YUQING_TICK_SECONDS": "1"})
    await produce(kafka, topics.tier_changes, [(b"xinghe", json.dumps(level1_change()))])
    [opened] = incident_events(await collect(kafka, topics.incidents, lambda v: len(v) >= 1))
    iid = opened.incident_id

    async def send(kind: IncidentActionKind, actor: str, **fields: Any) -> IncidentAction:
        action = IncidentAction(
            event_time=datetime.now(UTC), incident_id=iid, group="xinghe", action=kind, actor=actor, **fields
        )
        await produce(kafka, topics.incident_actions, [(b"xinghe", json.dumps(action))])
        return action

    # The old one-button publication: refused by the worker itself, and kept on the dead-letter topic.
    await send(A.statement_published, DRAFTER, comment="已发布")
    await send(A.statement_drafted, DRAFTER, text="我司高度重视，正在核查。")
    await send(A.statement_submitted, DRAFTER)

    def breached(values: list[bytes]) -> bool:
        return any(e.kind.value == "sla_breached" for e in incident_events(values))

    await collect(kafka, topics.incidents, breached, within=90)
    alerts = [
        Alert.model_validate_json(v) for v in await collect(kafka, topics.alerts, lambda v: False, within=3)
    ]
    statement = [(a.kind.value, a.audience) for a in alerts if "statement" in a.dedup_key]
    assert statement == [
        ("statement_review", "approvers"),
        ("reminder", "approvers"),  # 50 % of the statement deadline, while version 1 waits
        ("sla_breached", "approvers"),
    ]

    await send(A.statement_approved, DRAFTER, version=1)  # not an approver: refused
    await send(A.statement_approved, APPROVER, version=1)
    await send(A.statement_published, DRAFTER, version=1)
    due = datetime.now(UTC) + timedelta(seconds=6)
    item = FollowUpRequest(target="微博用户 @小王", owner="客服 李四", due_at=due)
    added = await send(A.follow_up_added, "客服 李四", follow_up=item)
    item_id = added.new_item_id

    def overdue(values: list[bytes]) -> bool:
        return any(e.detail == f"回访 item {item_id}: overdue" for e in incident_events(values))

    await collect(kafka, topics.incidents, overdue, within=60)
    # Spread stops after the statement: cooling. The open item still blocks the close.
    now = datetime.now(UTC)
    down = level1_change().model_copy(
        update={"previous": Tier.level1, "tier": Tier.none, "direction": "down", "reason": "cooldown"}
    )
    down = TierChange.model_validate(
        {**down.model_dump(exclude={"event_id"}), "event_time": now, "window_end": now, "detected_at": now}
    )
    await produce(kafka, topics.tier_changes, [(b"xinghe", json.dumps(down))])

    def cooling(values: list[bytes]) -> bool:
        return any(e.state.value == "cooling" for e in incident_events(values))

    await collect(kafka, topics.incidents, cooling, within=60)
    await send(A.resolve, "总经理 赵六")
    await send(A.follow_up_outcome, "客服 李四", item_id=item_id, outcome="done", comment="已退款")
    await send(A.resolve, "总经理 赵六")

    def closed(values: list[bytes]) -> bool:
        return any(e.state.value == "closed" for e in incident_events(values))

    events = incident_events(await collect(kafka, topics.incidents, closed, within=60))
    unique = list({e.event_id: e for e in events}.values())
    published = next(e for e in unique if e.action == A.statement_published)
    [version] = published.statement
    assert (version.status.value, version.drafted_by, version.reviewed_by) == ("published", DRAFTER, APPROVER)
    assert published.kind.value == "transitioned"
    last: IncidentEvent = unique[-1]
    assert last.report is not None
    assert "回访 list: 1 of 1 item(s) done, 0 not done" in last.report
    assert "| 1 | 已发布 published | 市场负责人 王五" in last.report

    alerts = [
        Alert.model_validate_json(v) for v in await collect(kafka, topics.alerts, lambda v: False, within=3)
    ]
    [reminder] = [a for a in alerts if f"|follow_up|{item_id}|overdue" in a.dedup_key]
    assert reminder.audience == "responder"
    assert "负责人 owner: 客服 李四" in reminder.body

    dead = [
        DeadLetterRecord.model_validate_json(v)
        for v in await collect(kafka, topics.dead_letter, lambda v: len(v) >= 3, within=30)
    ]
    assert [d.reason for d in dead] == ["invalid_transition"] * 3
    details = " | ".join(d.detail for d in dead)
    assert "publishing needs a statement approved by the leadership group" in details
    assert f"'{DRAFTER}' is not an approver" in details
    assert "open 回访 item(s)" in details
