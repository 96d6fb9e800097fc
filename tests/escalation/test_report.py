"""The post-mortem report: rendered when the incident closes, with the evaluation figures computed."""

from __future__ import annotations

import pytest

from schemas.events import FollowUpRequest, IncidentActionKind, IncidentEvent, Tier
from services.escalation.report import ReportInput, render_html, render_markdown
from tests.escalation.world import APPROVER, World, at, change

A = IncidentActionKind
H = 60


def post(key: str, spread: int, excerpt: str) -> dict[str, object]:
    return {"post": key, "platform": key.split(":")[0], "spread": spread, "excerpt": excerpt}


@pytest.fixture
def closed() -> tuple[World, list[IncidentEvent]]:
    w = World()
    events = w.open(
        Tier.level2,
        counts={"2h": 30_000, "4h": 60_000, "8h": 70_000},
        top_posts=(post("weibo:1", 40_000, "充电宝起火"), post("douyin:2", 9_000, "避雷")),
    ).events
    events += w.act(A.ack, 5, actor="值班 张三").events
    events += w.tier(
        Tier.level1,
        Tier.level2,
        20,
        counts={"2h": 120_000, "4h": 150_000, "8h": 160_000},
        top_posts=(post("weibo:1", 90_000, "充电宝起火"), post("zhihu:3", 5_000, "如何看待")),
    ).events
    events += w.act(A.verified, 40).events
    events += w.tick(50).events  # the meeting (due at 50) is missed: group lead paged
    events += w.act(A.meeting_convened, 95).events
    events += w.publish(4 * H, comment="致歉与召回方案").events
    events += w.act(A.correction, 5 * H, comment="涉及批次更正为 2026-09").events
    events += w.tier(Tier.level3, Tier.level1, 6 * H, counts={"2h": 8_000, "4h": 20_000, "8h": 90_000}).events
    events += w.tier(Tier.none, Tier.level3, 10 * H, counts={"2h": 1_200, "4h": 3_000, "8h": 9_000}).events
    events += w.act(A.follow_up, 25 * H, comment="回访 12 位用户，均已退款").events
    events += w.act(A.resolve, 26 * H, actor="总经理 赵六").events
    return w, events


def test_the_report_is_rendered_and_stored_on_the_closing_event(closed):
    _, events = closed
    stored = [e for e in events if e.report]
    assert [(e.state.value, e.action) for e in stored] == [("closed", A.resolve)]
    md = stored[0].report
    assert md is not None
    assert md.startswith("# 危机复盘报告 Post-mortem: g\n")
    assert "draft" not in md.splitlines()[0]


def test_timeliness_figures_come_from_each_deadline(closed):
    md = next(e.report for e in closed[1] if e.report)
    assert md is not None
    assert (
        "- 应急响应时效 Response timeliness: 3/5 deadlines met on time; late or missed: meeting_convened; "
        "still running: postmortem_filed; acknowledged after 5 min; paged: group_lead"
    ) in md
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["召开紧急会议 emergency meeting"].endswith("| 1 h 15 min | ⚠️ 逾期完成 met late |")
    assert rows["完成信息核实 facts verified"].endswith("| ➖ 已取代 superseded |")
    assert rows["收尾 closing (spread stopped)"].endswith("| ✅ 达标 met |")


def test_accuracy_feedback_outcome_and_trend_figures(closed):
    md = next(e.report for e in closed[1] if e.report)
    assert md is not None
    assert "2 passed on (1 verification, 1 statement), 1 correction(s) recorded → 50% not corrected" in md
    assert "涉及批次更正为 2026-09" in md
    assert (
        "3 posts cited as evidence by the incident's tier changes; 回访 list: no items; 1 more 回访 "
        "recorded as free text with the `follow_up` action"
    ) in md
    assert "回访 12 位用户，均已退款" in md
    assert "- 最终结果 Outcome: closed 2026-11-24 12:00 by 总经理 赵六; tier at close 无; cooling from" in md
    assert (
        "peak 2h spread 120,000 at 2026-11-23 10:20; 2h spread at the statement 120,000 (一级 (重大)) → "
        "at close 1,200 (无) (-99%)"
    ) in md


def test_top_posts_are_the_incidents_evidence_by_spread(closed):
    md = next(e.report for e in closed[1] if e.report)
    assert md is not None
    section = md.split("## 主要传播内容")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "platform" not in line]
    assert rows == [
        "| weibo | 90,000 | 充电宝起火 |",
        "| douyin | 9,000 | 避雷 |",
        "| zhihu | 5,000 | 如何看待 |",
    ]


def test_the_api_draft_keeps_posts_and_tier_changes_to_the_incident_window(closed):
    _, events = closed
    open_events = [e for e in events if e.sequence <= 6]
    old_crisis = change(Tier.level1, when=at(-3 * 24 * H), counts={"2h": 777_777})
    this_one = change(Tier.level2, counts={"2h": 30_000})
    inside = {"platform": "weibo", "spread": 500, "excerpt": "in", "first_seen": at(1), "last_seen": at(2)}
    before = {
        "platform": "weibo",
        "spread": 99_999,
        "excerpt": "an old crisis",
        "first_seen": at(-3 * 24 * H),
        "last_seen": at(-2 * 24 * H),
    }
    r = ReportInput.from_events(open_events, [old_crisis, this_one], [inside, before])
    assert r.draft
    assert [p.counts["2h"] for p in r.curve] == [30_000]
    assert [p["excerpt"] for p in r.top_posts] == ["in"]
    md = render_markdown(r)
    assert "(草稿 draft: still open)" in md.splitlines()[0]
    assert "99,999" not in md
    assert "777,777" not in md


def test_html_escapes_and_keeps_the_tables(closed):
    md = next(e.report for e in closed[1] if e.report)
    assert md is not None
    page = render_html(md + "| <script> | x |\n")
    assert "<script>" not in page
    # SLA, statement versions, tier curve, top posts, timeline (the extra row joins it); no 回访 list
    assert page.count("<table>") == 5
    assert "&lt;script&gt;" in page
    assert "<li>信息传递准确性" in page


def test_a_reopened_incident_reports_its_retired_deadlines_and_the_reopen(closed):
    w, _ = closed
    w.act(A.reopen, 30 * H)
    out = w.act(A.resolve, 31 * H, comment="override: second wave handled")
    md = out.events[-1].report
    assert md is not None
    assert "reopened 1 time(s)" in md
    assert "closed by override before cooling" in md
    assert md.count("| 发声回应 public statement |") == 2  # first round met, second round superseded


HOSTILE_NAME = (
    "值班\n# 假标题 Fake heading\r\n- [确认处理 Acknowledge](https://evil.example/phish)"
    "\u2028## <img src=x onerror=alert(1)> **粗体** `code` | 列"
)


def test_names_and_comments_cannot_add_headings_links_or_html():
    """An actor name with line breaks once added headings (also a list item, a link, HTML) to the report."""
    w = World()
    events = w.open(Tier.level2, counts={"2h": 30_000}).events
    events += w.act(A.ack, 5, actor=HOSTILE_NAME).events
    events += w.act(A.verified, 8, actor=HOSTILE_NAME).events
    events += w.act(
        A.correction, 10, actor=HOSTILE_NAME, comment="更正\n# 另一个标题 [链接](https://evil.example)"
    ).events
    # Statement text and 回访 items are typed by people too.
    events += w.act(A.statement_drafted, 11, actor=HOSTILE_NAME, text=HOSTILE_NAME + "\n\n正文").events
    events += w.act(A.statement_submitted, 11, actor=HOSTILE_NAME).events
    events += w.act(A.statement_approved, 12, actor=APPROVER, version=1, comment=HOSTILE_NAME).events
    events += w.act(A.statement_published, 13, actor=HOSTILE_NAME).events
    item = FollowUpRequest(target=HOSTILE_NAME, owner=HOSTILE_NAME[:64], due_at=at(60))
    events += w.act(A.follow_up_added, 14, actor=HOSTILE_NAME, follow_up=item).events
    events += w.act(A.resolve, 20, actor=HOSTILE_NAME, comment="override: false alarm").events
    md = next(e.report for e in events if e.report)
    assert md is not None
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings == [
        "# 危机复盘报告 Post-mortem: g",
        "## SLA 时效 Timeliness",
        "## 评估 Evaluation",
        "## 声明审核 Statement review (经领导小组审核)",
        "## 回访 Follow-up list",
        "## 等级曲线 Tier curve",
        "## 主要传播内容 Top posts (during the incident)",
        "## 时间线 Timeline",
    ]
    versions = [
        line for line in md.split("## 声明审核")[1].split("\n## ")[0].splitlines() if line.startswith("| ")
    ]
    assert all(line.count("|") == 8 for line in versions), versions
    items = [
        line
        for line in md.split("## 回访 Follow-up list")[1].split("\n## ")[0].splitlines()
        if line[:2] == "| "
    ]
    assert all(line.count("|") == 7 for line in items), items
    assert not any(line.startswith("- [") for line in md.splitlines())
    assert "](https://evil.example" not in md.replace("\\](https://evil.example", "")
    assert "<img" not in md.replace("\\<img", "")
    timeline = [line for line in md.split("## 时间线 Timeline")[1].splitlines() if line.startswith("| ")]
    assert all(line.count("|") == 6 for line in timeline), timeline  # the name's pipe split no cell
    assert r"\[确认处理 Acknowledge\](https://evil.example/phish)" in md
    assert "closed 2026-" in md
    assert r"by 值班 \# 假标题" not in md  # a "#" inside a line is text; nothing to escape

    page = render_html(md)
    assert page.count("<h1>") == 1
    assert page.count("<h2>") == 7
    assert "<img" not in page
    assert "<a " not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "[确认处理 Acknowledge](https://evil.example/phish)" in page  # shown as written, not as a link
