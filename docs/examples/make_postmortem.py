"""Generate docs/examples/postmortem.{md,html} from the demo crisis, with the real cores and no Kafka.

    .venv/bin/python docs/examples/make_postmortem.py

The sample crisis goes through scoring (hits, windows, tiers); each tier change goes through escalation at the
moment it was detected; an on-call team then responds on a fixed script (ack after 6 minutes, facts verified,
statement, resolve), with the emergency meeting late so that one SLA shows as breached.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from schemas.events import IncidentAction, IncidentActionKind, IncidentEvent, Post, TierChange  # noqa: E402
from services.common.clock import FakeClock  # noqa: E402
from services.common.config import load_config  # noqa: E402
from services.common.demo import load_sample  # noqa: E402
from services.escalation.core import EscalationCore  # noqa: E402
from services.escalation.report import render_html, render_markdown  # noqa: E402
from services.scoring.core import HitStage, ScoringState, TierStage  # noqa: E402
from services.scoring.matcher import RuleMatcher  # noqa: E402

END = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)  # 11:00 Asia/Shanghai on a Saturday


def main() -> None:
    config = load_config()
    clock = FakeClock(END - timedelta(hours=3))
    hits, tiers = HitStage(config, RuleMatcher(config.rules), clock), TierStage(config, clock=clock)
    state = ScoringState.in_memory()
    escalation, incidents = EscalationCore(config.escalation), {}
    events: list[IncidentEvent] = []
    changes: list[TierChange] = []
    top: dict[str, dict[str, Any]] = {}
    script: list[tuple[int, IncidentActionKind, str, str]] = [
        (6, IncidentActionKind.ack, "值班 张三", "已收到，开始核实"),
        (40, IncidentActionKind.verified, "客服负责人 李四", "确认三起起火投诉属实，批次 2026-08"),
        (95, IncidentActionKind.meeting_convened, "总经理 赵六", "应急小组会议召开，客服、法务、技术参加"),
        (
            240,
            IncidentActionKind.statement_published,
            "市场负责人 王五",
            "致歉声明、召回与全额退款方案已发布",
        ),
        (26 * 60, IncidentActionKind.resolve, "总经理 赵六", "负面传播停止，讨论降温，已回访受影响用户"),
    ]
    pending: list[tuple[datetime, IncidentActionKind, str, str]] = []

    def act_until(t: datetime) -> None:
        nonlocal events
        while pending and pending[0][0] <= t:
            at, action, actor, comment = pending.pop(0)
            events += escalation.on_tick(incidents, at).events  # the clock runs up to the action
            act = IncidentAction(
                event_time=at,
                incident_id=events[0].incident_id,
                group="xinghe",
                action=action,
                actor=actor,
                comment=comment,
            )
            events += escalation.on_action(act, incidents).events

    for raw in load_sample(END):
        post = Post.model_validate(raw)
        act_until(post.event_time)
        clock.set(post.event_time)  # detection happens as the post is observed
        for hit in hits.process(post, state):
            key = f"{hit.platform.value}:{hit.post_id}"
            top[key] = {
                "platform": hit.platform.value,
                "spread": hit.cumulative.total,
                "excerpt": hit.excerpt,
            }
            for change in tiers.process(hit, state):
                changes.append(change)
                new = escalation.on_tier_change(change, incidents, change.detected_at).events
                if new and new[0].kind.value == "opened":
                    opened = new[0].event_time
                    pending.extend((opened + timedelta(minutes=m), a, who, why) for m, a, who, why in script)
                events += new
        events += escalation.on_tick(incidents, clock()).events
    act_until(END + timedelta(days=3))
    top_posts = sorted(top.values(), key=lambda p: -int(p["spread"]))[:10]
    markdown = render_markdown(events, changes, top_posts)
    out = ROOT / "docs" / "examples"
    (out / "postmortem.md").write_text(markdown, encoding="utf-8")
    (out / "postmortem.html").write_text(render_html(markdown), encoding="utf-8")
    print(f"{len(events)} incident events, {len(changes)} tier changes -> {out / 'postmortem.md'}")


if __name__ == "__main__":
    main()
