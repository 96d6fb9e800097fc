"""The 回访 list: items with an owner, a due time and an outcome; open ones block resolve; owners reminded."""

from __future__ import annotations

import pytest

from schemas.events import FollowUpOutcome, FollowUpRequest, IncidentActionKind, Tier
from services.escalation.core import Incident
from services.escalation.exceptions import InvalidTransition
from services.escalation.report import render_markdown
from tests.escalation.world import World, at

A = IncidentActionKind
H = 60
TOP = ({"post": "weibo:wb1", "platform": "weibo", "spread": 40_000, "excerpt": "星河空调起火"},)


@pytest.fixture
def w() -> World:
    """An incident in the closing stage (收尾): statement out, spread stopped."""
    world = World()
    world.open(Tier.level2, counts={"2h": 60_000}, top_posts=TOP)
    world.act(A.ack, 5)
    world.publish(60)
    world.tier(Tier.none, Tier.level2, 5 * H)
    assert world.state == "cooling"
    return world


def add(w: World, minutes: float, target: str, owner: str, due: float, post: str | None = None) -> str:
    item = FollowUpRequest(target=target, owner=owner, due_at=at(due), post=post)
    out = w.act(A.follow_up_added, minutes, actor="客服 李四", follow_up=item)
    return out.events[0].follow_ups[-1].item_id


def outcome(w: World, minutes: float, item_id: str, result: FollowUpOutcome, note: str = "") -> None:
    w.act(A.follow_up_outcome, minutes, actor="客服 李四", item_id=item_id, outcome=result, comment=note)


def test_items_from_top_posts_or_by_hand_carry_owner_due_and_outcome(w):
    from_post = add(w, 6 * H, "微博用户 @小王（起火视频）", "客服 李四", 30 * H, post="weibo:wb1")
    by_hand = add(w, 6 * H + 1, "电话投诉用户 138****0000", "客服 赵敏", 30 * H)
    assert from_post != by_hand
    assert len(from_post) == 12
    outcome(w, 8 * H, from_post, FollowUpOutcome.done, "已退款并致歉")
    [first, second] = w.incident.follow_ups
    assert (first.post, first.owner, first.due_at, first.outcome, first.note) == (
        "weibo:wb1",
        "客服 李四",
        at(30 * H),
        FollowUpOutcome.done,
        "已退款并致歉",
    )
    assert (second.post, second.outcome) == (None, None)
    event = w.tick(8 * H + 1)  # nothing due; the last action's event carries the list
    assert event.events == []


def test_open_items_block_resolve_unless_overridden_with_a_reason(w):
    item = add(w, 6 * H, "微博用户 @小王", "客服 李四", 30 * H)
    with pytest.raises(InvalidTransition, match=rf"1 open 回访 item\(s\) \({item}\); record their outcomes"):
        w.act(A.resolve, 26 * H)
    with pytest.raises(InvalidTransition, match="open 回访 item"):
        w.act(A.resolve, 26 * H, comment="override:   ")
    out = w.act(A.resolve, 26 * H, comment="override: 用户失联，转客服长期跟进")
    assert w.state == "closed"
    assert out.events[-1].detail.endswith("; 1 回访 item(s) left open")
    # The outcome can still be recorded after the close, as 回访 goes on.
    outcome(w, 27 * H, item, FollowUpOutcome.unreachable, "三次电话未接")
    assert w.incident.follow_ups[0].outcome == FollowUpOutcome.unreachable


def test_items_with_an_outcome_no_longer_block_resolve(w):
    for i, result in enumerate((FollowUpOutcome.done, FollowUpOutcome.declined, FollowUpOutcome.not_needed)):
        outcome(w, 7 * H, add(w, 6 * H + i, f"用户 {i}", "客服 李四", 30 * H), result)
    w.act(A.resolve, 26 * H)
    assert w.state == "closed"


def test_bad_items_and_outcomes_are_refused(w):
    with pytest.raises(InvalidTransition, match="is not after the action"):
        add(w, 6 * H, "用户", "客服 李四", 6 * H)
    with pytest.raises(InvalidTransition, match="more than 30 days away"):
        add(w, 6 * H, "用户", "客服 李四", 6 * H + 31 * 24 * H)
    with pytest.raises(InvalidTransition, match="no 回访 item 0123456789ab"):
        outcome(w, 7 * H, "0123456789ab", FollowUpOutcome.done)
    item = add(w, 6 * H, "用户", "客服 李四", 30 * H)
    outcome(w, 7 * H, item, FollowUpOutcome.done)
    with pytest.raises(InvalidTransition, match="already recorded as done"):
        outcome(w, 8 * H, item, FollowUpOutcome.declined)
    # The same action delivered twice adds the item once.
    spec = FollowUpRequest(target="用户 2", owner="客服 李四", due_at=at(30 * H))
    w.act(A.follow_up_added, 9 * H, actor="客服 李四", follow_up=spec)
    with pytest.raises(InvalidTransition, match="already on the list"):
        w.act(A.follow_up_added, 9 * H, actor="客服 李四", follow_up=spec)
    w.act(A.resolve, 26 * H, comment="override: 测试")
    with pytest.raises(InvalidTransition, match="reopen it first"):
        add(w, 27 * H, "用户", "客服 李四", 30 * H)


def test_the_owner_is_reminded_and_told_once_when_overdue_without_paging_up(w):
    item = add(w, 6 * H, "微博用户 @小王 [链接](https://evil.example)", "客服 李四", 16 * H)
    level = w.incident.escalation_level

    def follow_up_alerts(minutes: float) -> list[str]:
        return [
            a.dedup_key.split("|follow_up|")[1]
            for a in w.tick(minutes).alerts
            if "|follow_up|" in a.dedup_key
        ]

    assert follow_up_alerts(10 * H) == []
    assert follow_up_alerts(11 * H) == [f"{item}|0.5"]
    assert follow_up_alerts(14 * H) == [f"{item}|0.8"]
    overdue = w.tick(16 * H)
    [alert] = overdue.alerts
    assert (alert.kind.value, alert.audience, alert.title) == ("reminder", "responder", "[无] 回访逾期: g")
    assert "负责人 owner: 客服 李四 · 截止 due 2026-11-23T18:00+00:00 · 已逾期 overdue" in alert.body
    assert "回访 微博用户 小王 链接 https://evil.example" in alert.body  # plain words in a robot's Markdown
    assert [e.detail for e in overdue.events] == [f"回访 item {item}: overdue"]
    assert follow_up_alerts(40 * H) == []  # once; and the ladder did not move
    assert w.incident.escalation_level == level


def test_an_item_with_an_outcome_is_not_reminded(w):
    item = add(w, 6 * H, "用户", "客服 李四", 16 * H)
    outcome(w, 7 * H, item, FollowUpOutcome.done)
    assert [a for a in w.tick(20 * H).alerts if "|follow_up|" in a.dedup_key] == []


def test_the_report_counts_items_done_and_not_done(w):
    results = [FollowUpOutcome.done, FollowUpOutcome.done, FollowUpOutcome.unreachable, None]
    for i, result in enumerate(results):
        item = add(w, 6 * H + i, f"用户 {i}", "客服 李四", 30 * H)
        if result is not None:
            outcome(w, 7 * H, item, result, "已退款" if result == FollowUpOutcome.done else "")
    out = w.act(A.resolve, 26 * H, comment="override: 用户 3 转长期跟进")
    md = out.events[-1].report
    assert md is not None
    assert "回访 list: 2 of 4 item(s) done, 2 not done (1 unreachable, 1 still open)" in md
    rows = [
        line
        for line in md.split("## 回访 Follow-up list")[1].split("\n## ")[0].splitlines()
        if line[:2] == "| "
    ]
    assert rows[1] == "| 用户 0 | 客服 李四 | 2026-11-24 16:00 | done | 客服 李四 2026-11-23 17:00 | 已退款 |"
    assert rows[4] == "| 用户 3 | 客服 李四 | 2026-11-24 16:00 | ⏳ open | — | — |"
    assert "回访 list: no items" in render_markdown(World().core.report_input(_fresh()))


def _fresh() -> Incident:
    world = World()
    world.open(Tier.level3)
    return world.incident


def test_two_items_added_at_the_same_instant_are_two_items(w):
    """The action's id covers who and when, not the item: the item id adds the item, so a bulk add by one
    person in one instant keeps every item, while the same action twice still adds one."""
    first = add(w, 6 * H, "用户甲", "客服 李四", 30 * H)
    second = add(w, 6 * H, "用户乙", "客服 李四", 30 * H)
    assert first != second
    assert [i.target for i in w.incident.follow_ups] == ["用户甲", "用户乙"]


def test_a_long_note_is_refused(w):
    item = add(w, 6 * H, "用户", "客服 李四", 30 * H)
    with pytest.raises(InvalidTransition, match="at most 300 characters"):
        outcome(w, 7 * H, item, FollowUpOutcome.done, "长" * 301)
