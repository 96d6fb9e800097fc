"""The statement workflow: drafted, reviewed by the leadership group (经领导小组审核), published."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.events import FollowUpRequest, IncidentAction, IncidentActionKind, Tier
from services.common import json
from services.common.config import EscalationConfig, StatementConfig
from services.escalation.core import Incident
from services.escalation.exceptions import InvalidTransition
from services.escalation.report import render_markdown
from tests.escalation.world import APPROVER, DRAFTER, T0, World, at

A = IncidentActionKind
H = 60
OTHER_APPROVER = "法务负责人 周八"


@pytest.fixture
def w() -> World:
    world = World()
    world.open(Tier.level2)
    world.act(A.ack, 5)
    return world


def statuses(w: World) -> list[tuple[int, str]]:
    return [(v.version, v.status.value) for v in w.incident.statement]


def test_draft_review_and_publish_keep_every_version_and_who_did_what(w):
    first = w.act(A.statement_drafted, 30, actor=DRAFTER, text="我司高度重视，正在核查。")
    assert (first.events[0].kind.value, first.events[0].state.value) == ("noted", "acknowledged")
    assert first.events[0].detail == (
        "statement_drafted; statement version 1 drafted (12 characters)"  # no text in the timeline line
    )
    w.act(A.statement_submitted, 31, actor=DRAFTER)
    returned = w.act(A.statement_returned, 40, actor=APPROVER, version=1, comment="补充召回范围与时间表")
    assert returned.events[0].detail.startswith("statement_returned: 补充召回范围与时间表; ")
    w.act(A.statement_drafted, 50, actor=DRAFTER, text="我司高度重视，已召回 2026-08 批次，7 日内完成。")
    w.act(A.statement_submitted, 51, actor=DRAFTER)
    approved = w.act(A.statement_approved, 55, actor=APPROVER, version=2, comment="同意")
    assert w.state == "acknowledged"  # approval is not publication
    assert approved.events[0].deadlines[-1].name == "statement_published"
    assert approved.events[0].deadlines[-1].status == "pending"
    published = w.act(A.statement_published, 60, actor="运营 钱七", comment="官微、官网同步发布")
    assert (published.events[0].kind.value, w.state) == ("transitioned", "statement_published")
    assert w.deadline("statement_published").met_at == at(60)
    assert statuses(w) == [(1, "returned"), (2, "published")]
    v1, v2 = published.events[0].statement  # every event carries the versions, texts included
    assert (v1.text, v1.reviewed_by, v1.review_comment) == (
        "我司高度重视，正在核查。",
        APPROVER,
        "补充召回范围与时间表",
    )
    assert (v2.drafted_by, v2.submitted_at, v2.reviewed_by, v2.reviewed_at) == (
        DRAFTER,
        at(51),
        APPROVER,
        at(55),
    )
    assert (v2.published_by, v2.published_at) == ("运营 钱七", at(60))


def test_publishing_needs_an_approved_version(w):
    # The one-button publication of before is refused: nothing was drafted, so nothing was signed off.
    with pytest.raises(InvalidTransition, match="none is drafted yet"):
        w.act(A.statement_published, 10)
    w.act(A.statement_drafted, 20, actor=DRAFTER, text="声明草稿")
    with pytest.raises(InvalidTransition, match=r"the latest, version 1, is draft"):
        w.act(A.statement_published, 21)
    w.act(A.statement_submitted, 22, actor=DRAFTER)
    with pytest.raises(InvalidTransition, match="version 1, is submitted"):
        w.act(A.statement_published, 23)
    w.act(A.statement_returned, 24, actor=APPROVER, version=1, comment="措辞")
    with pytest.raises(InvalidTransition, match="version 1, is returned"):
        w.act(A.statement_published, 25)
    assert w.state == "acknowledged"
    assert w.deadline("statement_published").status == "pending"


def test_an_approved_version_is_superseded_by_a_newer_draft(w):
    w.act(A.statement_drafted, 20, actor=DRAFTER, text="第一版")
    w.act(A.statement_submitted, 21, actor=DRAFTER)
    w.act(A.statement_approved, 22, actor=APPROVER, version=1)
    w.act(A.statement_drafted, 23, actor=DRAFTER, text="第二版，未经审核")
    assert statuses(w) == [(1, "superseded"), (2, "draft")]
    with pytest.raises(InvalidTransition, match="version 2, is draft"):
        w.act(A.statement_published, 24)


def test_self_approval_is_refused_unless_configured():
    w = World()
    w.open(Tier.level2)
    w.act(A.statement_drafted, 10, actor=APPROVER, text="总经理亲自起草")
    w.act(A.statement_submitted, 11, actor=APPROVER)
    # The same person, however the name is spaced or cased at login.
    with pytest.raises(InvalidTransition, match="drafted version 1 and may not approve it too"):
        w.act(A.statement_approved, 12, actor="  总经理   赵六 ", version=1)
    w.act(A.statement_returned, 12, actor=APPROVER, version=1, comment="撤回重写")  # returning is no approval
    w.act(A.statement_drafted, 13, actor=APPROVER, text="总经理重写")
    w.act(A.statement_submitted, 14, actor=APPROVER)
    w.act(A.statement_approved, 15, actor=OTHER_APPROVER, version=2)  # another member signs it off
    assert statuses(w) == [(1, "returned"), (2, "approved")]

    own = World(EscalationConfig(statement=StatementConfig(approvers=(APPROVER,), allow_self_approval=True)))
    own.open(Tier.level2)
    own.act(A.statement_drafted, 10, actor=APPROVER, text="总经理亲自起草")
    own.act(A.statement_submitted, 11, actor=APPROVER)
    own.act(A.statement_approved, 12, actor=APPROVER, version=1)
    assert statuses(own) == [(1, "approved")]


def test_only_configured_approvers_review(w):
    w.act(A.statement_drafted, 20, actor=DRAFTER, text="草稿")
    w.act(A.statement_submitted, 21, actor=DRAFTER)
    for kind, comment in ((A.statement_approved, ""), (A.statement_returned, "不行")):
        with pytest.raises(InvalidTransition, match="'值班 张三' is not an approver"):
            w.act(kind, 22, actor="值班 张三", version=1, comment=comment)
    with pytest.raises(InvalidTransition, match="needs a comment saying what to change"):
        w.act(A.statement_returned, 22, actor=APPROVER, version=1)
    nobody = World(EscalationConfig())
    nobody.open(Tier.level2)
    nobody.act(A.statement_drafted, 20, actor=DRAFTER, text="草稿")
    nobody.act(A.statement_submitted, 21, actor=DRAFTER)
    with pytest.raises(
        InvalidTransition, match=r"no approvers are configured \(escalation.statement.approvers\)"
    ):
        nobody.act(A.statement_approved, 22, actor=APPROVER, version=1)


def test_a_review_names_the_version_read(w):
    w.act(A.statement_drafted, 20, actor=DRAFTER, text="第一版")
    w.act(A.statement_submitted, 21, actor=DRAFTER)
    # The drafter sends a new version while the approver still reads the first: approving "1" must not
    # approve a text the approver never saw.
    w.act(A.statement_drafted, 22, actor=DRAFTER, text="第二版")
    assert statuses(w) == [(1, "superseded"), (2, "draft")]
    with pytest.raises(InvalidTransition, match="version 1 is not the latest"):
        w.act(A.statement_approved, 23, actor=APPROVER, version=1)
    with pytest.raises(InvalidTransition, match="version 2 is draft, not waiting for review"):
        w.act(A.statement_approved, 23, actor=APPROVER, version=2)
    with pytest.raises(ValidationError, match="version\n  statement_approved needs version"):
        IncidentAction(
            event_time=at(23), incident_id=w.iid, group="g", action=A.statement_approved, actor=APPROVER
        )


def test_drafting_refuses_an_unchanged_text_and_too_many_versions():
    w = World(EscalationConfig(statement=StatementConfig(approvers=(APPROVER,), max_versions=2)))
    w.open(Tier.level3)
    w.act(A.statement_drafted, 1, actor=DRAFTER, text="一")
    with pytest.raises(InvalidTransition, match="the same as version 1"):
        w.act(A.statement_drafted, 2, actor=DRAFTER, text="一")
    w.act(A.statement_drafted, 2, actor=DRAFTER, text="二")
    with pytest.raises(InvalidTransition, match=r"2 versions, the most an incident keeps"):
        w.act(A.statement_drafted, 3, actor=DRAFTER, text="三")


def test_action_fields_belong_to_their_action():
    base = {"event_time": T0, "incident_id": "i", "group": "g", "actor": "a"}
    with pytest.raises(ValidationError, match="text\n  statement_drafted needs text"):
        IncidentAction(**base, action=A.statement_drafted, text="   ")
    with pytest.raises(ValidationError, match="text\n  text is only for statement_drafted, not ack"):
        IncidentAction(**base, action=A.ack, text="x")
    with pytest.raises(ValidationError, match="version\n  version is only for"):
        IncidentAction(**base, action=A.ack, version=1)
    assert IncidentAction(**base, action=A.statement_published, version=2).version == 2


def test_the_statement_clock_runs_until_publication_not_approval(w):
    w.act(A.verified, 30)
    w.act(A.statement_drafted, 20 * H, actor=DRAFTER, text="草稿")
    w.act(A.statement_submitted, 20 * H, actor=DRAFTER)
    w.act(A.statement_approved, 23 * H, actor=APPROVER, version=1)
    late = w.tick(24 * H)
    assert [e.detail.split(" ")[0] for e in late.events if e.kind.value == "sla_breached"] == [
        "statement_published"
    ]
    # Approved and waiting for nobody's review: the breach climbs the ladder as any other.
    assert [(a.kind.value, a.audience) for a in late.alerts if "statement" in a.dedup_key] == [
        ("sla_breached", "group_lead")
    ]
    w.act(A.statement_published, 25 * H)
    assert w.deadline("statement_published").status == "met_late"


def test_while_a_version_waits_for_review_reminders_and_the_breach_go_to_the_approvers(w):
    submitted = w.act(A.statement_drafted, 60, actor=DRAFTER, text="草稿") and w.act(
        A.statement_submitted, 61, actor=DRAFTER
    )
    [review] = submitted.alerts
    assert (review.kind.value, review.audience) == ("statement_review", "approvers")
    assert review.title == "[二级] 声明待审核 v1: g"
    assert "审核人 approvers: 总经理 赵六、法务负责人 周八" in review.body
    assert review.dedup_key.endswith("|statement_review|2|v1")

    def statement_alerts(minutes: float) -> list[tuple[str, str]]:
        return [(a.kind.value, a.audience) for a in w.tick(minutes).alerts if "statement" in a.dedup_key]

    assert statement_alerts(12 * H) == [("reminder", "approvers")]  # 50 % of 24 h
    assert statement_alerts(19.2 * H) == [("reminder", "approvers")]  # 80 %
    level = w.incident.escalation_level
    breach = w.tick(24 * H)
    assert [(a.kind.value, a.audience) for a in breach.alerts if "statement" in a.dedup_key] == [
        ("sla_breached", "approvers")
    ]
    assert "paging approvers: statement_published breached while version 1 waits for review" in [
        e.detail for e in breach.events
    ]
    assert w.incident.escalation_level == level  # the ladder did not climb for the approvers' wait
    assert w.tick(25 * H).alerts == []


def test_reminders_go_to_the_ladder_when_nothing_waits_for_review(w):
    w.act(A.statement_drafted, 60, actor=DRAFTER, text="草稿")  # drafted, never submitted
    alerts = [(a.kind.value, a.audience) for a in w.tick(12 * H).alerts if "statement" in a.dedup_key]
    assert alerts == [("reminder", "responder")]


def test_a_further_statement_is_signed_off_too_and_moves_nothing(w):
    w.publish(2 * H)
    met = w.deadline("statement_published").met_at
    w.act(A.statement_drafted, 5 * H, actor=DRAFTER, text="处理进展通报")
    w.act(A.statement_submitted, 5 * H, actor=DRAFTER)
    with pytest.raises(InvalidTransition, match="version 2, is submitted"):
        w.act(A.statement_published, 6 * H)
    w.act(A.statement_approved, 6 * H, actor=OTHER_APPROVER, version=2)
    out = w.act(A.statement_published, 7 * H)
    assert (out.events[0].kind.value, w.state) == ("noted", "statement_published")
    assert w.deadline("statement_published").met_at == met
    assert statuses(w) == [(1, "published"), (2, "published")]


def test_the_report_shows_versions_reviews_and_the_published_text(w):
    w.act(A.statement_drafted, 30, actor=DRAFTER, text="初稿")
    w.act(A.statement_submitted, 31, actor=DRAFTER)
    w.act(A.statement_returned, 40, actor=APPROVER, version=1, comment="补充时间表")
    w.act(A.statement_drafted, 50, actor=DRAFTER, text="致歉：已召回 2026-08 批次。")
    w.act(A.statement_submitted, 51, actor=DRAFTER)
    w.act(A.statement_approved, 55, actor=OTHER_APPROVER, version=2)
    w.act(A.statement_published, 60, actor=DRAFTER)
    md = render_markdown(w.core.report_input(w.incident))
    section = md.split("## 声明审核 Statement review (经领导小组审核)\n\n")[1].split("\n## ")[0]
    assert section.splitlines()[2:] == [
        "| 1 | 已退回 returned | 市场负责人 王五 2026-11-23 10:30 | 市场负责人 王五 2026-11-23 10:31 | "
        "总经理 赵六 2026-11-23 10:40 | — | 补充时间表 |",
        "| 2 | 已发布 published | 市场负责人 王五 2026-11-23 10:50 | 市场负责人 王五 2026-11-23 10:51 | "
        "法务负责人 周八 2026-11-23 10:55 | 市场负责人 王五 2026-11-23 11:00 | — |",
        "",
        "- 发布文本 Published text, version 2: 致歉：已召回 2026-08 批次。",
    ]


def test_an_incident_from_before_the_workflow_keeps_working():
    """A row saved before this change has no statement or follow-up fields; one published with the old single
    action reports that no review is on record, and an unpublished one must now go through the review."""
    w = World()
    w.open(Tier.level2)
    w.publish(30)
    legacy = w.incidents["g"]
    for name in ("statement", "follow_ups"):
        legacy.pop(name)
    assert Incident.model_validate(legacy).statement == []
    w.incidents["g"] = legacy
    w.tier(Tier.none, Tier.level2, 5 * H)
    assert w.state == "cooling"
    out = w.act(A.resolve, 26 * H)
    assert out.events[-1].report is not None
    assert (
        "before the approval workflow, so there is no draft, review or text on record"
        in out.events[-1].report
    )

    old = World()
    old.open(Tier.level2)
    with pytest.raises(
        InvalidTransition, match="publishing needs a statement approved by the leadership group"
    ):
        old.act(A.statement_published, 30, comment="已发布（旧流程）")


def test_approvers_are_matched_by_name_ignoring_case_and_spaces():
    config = StatementConfig(approvers=("总经理 赵六", "Li Na"))
    assert config.is_approver(" 总经理  赵六")
    assert config.is_approver("li   NA")
    assert not config.is_approver("总经理")
    assert not config.is_approver("Li Nan")
    with pytest.raises(ValidationError, match="approvers listed twice"):
        StatementConfig(approvers=("Li Na", "li  na"))


def test_the_largest_incident_event_fits_a_kafka_message():
    """Kafka refuses a message over 1 MB by default, and the worker would retry it for ever. With every bound
    at its maximum (10 versions of 5,000 characters, 50 回访 items with the longest fields and notes), the
    closing event with its report, and the incident's row, stay well under it."""
    config = EscalationConfig(statement=StatementConfig(approvers=(APPROVER,), max_versions=10))
    w = World(config)
    w.open(Tier.level1)
    for v in range(1, 11):
        w.act(A.statement_drafted, v, actor=DRAFTER, text=f"{v:02}" + "声" * 4998)
        w.act(A.statement_submitted, v, actor=DRAFTER)
        w.act(A.statement_approved, v, actor=APPROVER, version=v, comment="意" * 300)
        w.act(A.statement_published, v, actor=DRAFTER, comment="发" * 4000)
    for i in range(50):
        item = FollowUpRequest(target=f"{i:03}" + "访" * 197, owner="负" * 64, due_at=at(30 * H))
        added = w.act(A.follow_up_added, 20 + i / 100, actor="记" * 64, follow_up=item)
        item_id = added.events[0].follow_ups[-1].item_id
        w.act(
            A.follow_up_outcome,
            21 + i / 100,
            actor="果" * 64,
            item_id=item_id,
            outcome="done",
            comment="注" * 300,
        )
    closing = w.act(A.resolve, 40, actor=APPROVER, comment="override: " + "因" * 3990).events[-1]
    assert closing.report is not None
    size, row = len(json.dumps(closing)), len(json.dumps(w.incidents["g"]))
    print(f"closing event: {size:,} bytes; incident row (its changelog record): {row:,} bytes")
    assert size < 1_000_000, size
    assert row < 1_000_000, row
