"""Generate docs/examples/postmortem.{md,html} from the demo crisis, with the real cores and no Kafka.

    .venv/bin/python docs/examples/make_postmortem.py

The sample crisis goes through scoring (hits, windows, tiers); each tier change goes through escalation at the
moment it was detected, and the clock keeps ticking for three days after the sample so that the tiers cool
down. An on-call team responds on a fixed script (ack after 6 minutes, facts verified, a late emergency
meeting so that one SLA shows as missed, a statement returned once by the leadership group and approved in its
second version, a correction, a 回访 list and the close). The report is the one the escalation core stores on
the closing event, exactly as the worker would.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from schemas.events import IncidentAction, IncidentActionKind, IncidentEvent, Post, TierChange  # noqa: E402
from services.cli.demo import load_sample  # noqa: E402
from services.common.clock import FakeClock  # noqa: E402
from services.common.config import load_config  # noqa: E402
from services.escalation.core import EscalationCore, Outcome  # noqa: E402
from services.escalation.report import render_html  # noqa: E402
from services.scoring.core import HitStage, ScoringState, TierStage  # noqa: E402
from services.scoring.matcher import RuleMatcher  # noqa: E402

END = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)  # 11:00 Asia/Shanghai on a Saturday
A = IncidentActionKind
V1 = "关于星河空调起火事件的说明：我司已关注到网友反映的空调起火情况，正在全力核查，将尽快公布结果。"
V2 = (
    "关于星河空调起火事件的致歉与处理说明：经核查，2026-08 批次部分空调电源模块存在过热隐患。我司深表歉意，"
    "即日起召回该批次全部产品，并为受影响用户全额退款，7 日内完成。"
)
# (minutes after opening, action, actor, comment, fields); a 回访 item's "due_in" is minutes after the action,
# an outcome's "item" the item's place on the list.
SCRIPT: list[tuple[int, IncidentActionKind, str, str, dict[str, Any]]] = [
    (6, A.ack, "值班 张三", "已收到，开始核实", {}),
    (40, A.verified, "客服负责人 李四", "确认三起起火投诉属实，批次 2026-08", {}),
    (95, A.meeting_convened, "总经理 赵六", "应急小组会议召开，客服、法务、技术参加", {}),
    (150, A.statement_drafted, "市场负责人 王五", "", {"text": V1}),
    (152, A.statement_submitted, "市场负责人 王五", "", {}),
    (180, A.statement_returned, "总经理 赵六", "须写明召回批次、退款方案与时间表", {"version": 1}),
    (210, A.statement_drafted, "市场负责人 王五", "", {"text": V2}),
    (212, A.statement_submitted, "市场负责人 王五", "", {}),
    (230, A.statement_approved, "法务负责人 周八", "同意发布", {"version": 2}),
    (240, A.statement_published, "市场负责人 王五", "官方微博、官网同步发布", {"version": 2}),
    (300, A.correction, "市场负责人 王五", "更正：涉及批次为 2026-08 与 2026-09 两批", {}),
    (
        20 * 60,
        A.follow_up_added,
        "客服负责人 李四",
        "",
        {
            "follow_up": {
                "target": "微博用户 @星河受害者（起火视频）",
                "post": "weibo:wb1",
                "owner": "客服 小陈",
            }
        },
    ),
    (
        20 * 60,
        A.follow_up_added,
        "客服负责人 李四",
        "",
        {"follow_up": {"target": "抖音用户（避雷视频）", "owner": "客服 小陈"}},
    ),
    (
        20 * 60,
        A.follow_up_added,
        "客服负责人 李四",
        "",
        {"follow_up": {"target": "电话投诉用户 5 位", "owner": "客服 小刘"}},
    ),
    (22 * 60, A.follow_up_outcome, "客服 小陈", "已全额退款并致歉", {"item": 0, "outcome": "done"}),
    (23 * 60, A.follow_up_outcome, "客服 小陈", "私信三次未回复", {"item": 1, "outcome": "unreachable"}),
    (24 * 60, A.follow_up_outcome, "客服 小刘", "5 位均已上门取件退款", {"item": 2, "outcome": "done"}),
    (24 * 60, A.follow_up, "客服负责人 李四", "另回访 37 位投诉用户，32 位已退款，5 位待上门取件", {}),
    (26 * 60, A.resolve, "总经理 赵六", "负面传播停止，讨论降温", {}),
]


def main() -> None:
    config = load_config()
    clock = FakeClock(END - timedelta(hours=3))
    hits, tiers = HitStage(config, RuleMatcher(config.rules), clock), TierStage(config, clock=clock)
    state = ScoringState.in_memory()
    escalation, incidents = EscalationCore(config.escalation), dict[str, dict[str, Any]]()
    events: list[IncidentEvent] = []
    pending: list[tuple[datetime, IncidentActionKind, str, str, dict[str, Any]]] = []

    def apply(out: Outcome) -> None:
        events.extend(out.events)
        out.save(incidents)  # as the worker does, after the output

    def on_changes(changes: list[TierChange]) -> None:
        for change in changes:
            out = escalation.on_tier_change(change, incidents, change.detected_at)
            if out.events and out.events[0].kind.value == "opened":
                opened = out.events[0].event_time
                pending.extend((opened + timedelta(minutes=m), *step) for m, *step in SCRIPT)
            apply(out)

    def run_until(t: datetime) -> None:
        while pending and pending[0][0] <= t:
            when, action, actor, comment, fields = pending.pop(0)
            apply(escalation.on_tick(incidents, when))  # the clock runs up to the action
            iid = events[0].incident_id
            fields = dict(fields)
            if "follow_up" in fields:
                item = dict(fields["follow_up"])
                item["due_at"] = when + timedelta(minutes=item.pop("due_in", 8 * 60))
                fields["follow_up"] = item
            if "item" in fields:
                fields["item_id"] = incidents["xinghe"]["follow_ups"][fields.pop("item")]["item_id"]
            apply(
                escalation.on_action(
                    IncidentAction(
                        event_time=when,
                        incident_id=iid,
                        group="xinghe",
                        action=action,
                        actor=actor,
                        comment=comment,
                        **fields,
                    ),
                    incidents,
                )
            )

    for raw in load_sample(END):
        post = Post.model_validate(raw)
        run_until(post.event_time)
        clock.set(post.event_time)  # detection happens as the post is observed
        for hit in hits.process(post, state):
            on_changes(tiers.process(hit, state))
        apply(escalation.on_tick(incidents, clock()))
    t = END
    while t < END + timedelta(days=2):  # after the sample the windows drain and the tier cools down
        t += timedelta(minutes=10)
        run_until(t)
        clock.set(t)
        on_changes(tiers.tick(state))
        apply(escalation.on_tick(incidents, t))
    report = next(e.report for e in reversed(events) if e.report)
    out = ROOT / "docs" / "examples"
    (out / "postmortem.md").write_text(report, encoding="utf-8")
    (out / "postmortem.html").write_text(render_html(report), encoding="utf-8")
    print(f"{len(events)} incident events -> {out / 'postmortem.md'}")


if __name__ == "__main__":
    main()
