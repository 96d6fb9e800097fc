"""The post-mortem report (《危机复盘报告》): timeline, SLAs against deadlines, tier curve, top posts, and the
figures the plans' evaluation asks for. Plain functions over a `ReportInput`; Markdown first, HTML from it.

The escalation worker renders it from the incident row when the incident closes (the report of record, on
the closing IncidentEvent); the desk renders a draft from the event topics while an incident is open.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schemas.events import Deadline, FollowUpItem, IncidentEvent, StatementVersion, TierChange
from services.escalation.workdays import SHANGHAI

__all__ = ["LEAD_IN", "ReportInput", "render_html", "render_markdown"]

# Posts and tier changes this long before the opening still belong to the incident: the longest default
# tier window (三级, 8 h) is what raised it.
LEAD_IN = timedelta(hours=8)

_TIER = {0: "无", 1: "一级 (重大)", 2: "二级 (较大)", 3: "三级 (一般)"}
_DEADLINE_NAMES = {
    "ack": "确认接收 acknowledgement",
    "meeting_convened": "召开紧急会议 emergency meeting",
    "facts_verified": "完成信息核实 facts verified",
    "statement_published": "发声回应 public statement",
    "closing": "收尾 closing (spread stopped)",
    "postmortem_filed": "提交复盘报告 post-mortem",
}
_PAGED = re.compile(r"paging (\w+)")
_VERDICT = {
    "met": "✅ 达标 met",
    "met_late": "⚠️ 逾期完成 met late",
    "breached": "❌ 超时 breached",
    "superseded": "➖ 已取代 superseded",
    "pending": "⏳ 进行中 pending",
}


@dataclass(frozen=True)
class Entry:
    seq: int
    at: datetime
    kind: str
    actor: str
    state: str
    tier: int
    action: str | None
    detail: str


@dataclass(frozen=True)
class CurvePoint:
    at: datetime
    tier: int
    reason: str
    counts: dict[str, int]


@dataclass(frozen=True)
class ReportInput:
    incident_id: str
    group: str
    entries: Sequence[Entry]
    deadlines: Sequence[Deadline]
    curve: Sequence[CurvePoint]
    top_posts: Sequence[dict[str, Any]]
    posts_cited: int = 0  # distinct posts the incident's tier changes cited as evidence
    draft: bool = False
    statement: Sequence[StatementVersion] = ()
    follow_ups: Sequence[FollowUpItem] = ()

    @classmethod
    def from_events(
        cls,
        events: Sequence[IncidentEvent],
        tier_changes: Sequence[TierChange],
        posts: Sequence[dict[str, Any]],
    ) -> ReportInput:
        """A draft from what the desk's read model holds; tier changes and posts are cut to the incident."""
        start = events[0].event_time - LEAD_IN
        closed = next((e.event_time for e in events if e.state.value == "closed"), None)
        curve = [
            CurvePoint(tc.window_end, int(tc.tier), tc.reason, dict(tc.counts))
            for tc in tier_changes
            if tc.group == events[0].group
            and tc.detected_at >= start
            and (closed is None or tc.detected_at <= closed)
        ]
        cited = {
            str(p.get("post"))
            for tc in tier_changes
            if tc.group == events[0].group and tc.detected_at >= start
            for p in tc.top_posts
        }
        top = [
            p
            for p in posts
            if _time(p.get("last_seen")) >= start and (closed is None or _time(p.get("first_seen")) <= closed)
        ]
        return cls(
            incident_id=events[0].incident_id,
            group=events[0].group,
            entries=[
                Entry(
                    e.sequence,
                    e.event_time,
                    e.kind.value,
                    e.actor,
                    e.state.value,
                    int(e.tier),
                    e.action.value if e.action else None,
                    e.detail,
                )
                for e in events
            ],
            deadlines=events[-1].deadlines,
            curve=curve,
            top_posts=sorted(top, key=lambda p: -int(p.get("spread", 0)))[:10],
            posts_cited=len(cited),
            draft=events[-1].state.value not in ("closed", "postmortem_filed"),
            statement=events[-1].statement,
            follow_ups=events[-1].follow_ups,
        )


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _t(value: datetime | None) -> str:
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if value else "—"


def _dur(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


# Markdown's inline syntax (emphasis, code, links, raw HTML, entities) and its escape character. Block
# syntax (#, -, >, 1.) only counts at the start of a line, and user text never starts one: see _text.
_MARKDOWN_INLINE = re.compile(r"([\\`*_~\[\]<>&])")
_MARKDOWN_ESCAPED = re.compile(r"\\([\\`*_~\[\]<>&])")


_DETAIL = 300  # characters of a timeline entry's detail in the report; the events keep it whole


def _short(detail: str) -> str:
    """The report of record rides on the closing event, which Kafka caps at 1 MB: a timeline of long comments
    is shown shortened (the incident's events hold every word)."""
    return detail if len(detail) <= _DETAIL else detail[: _DETAIL - 1] + "…"


def _text(value: object) -> str:
    """Text from people (a name, a comment, a post) inline in the report: on one line, whatever line
    breaks it holds (also the Unicode ones that str.splitlines honours), and with no Markdown or HTML of
    its own. A pipe becomes a full-width one so that it cannot split a table row."""
    one_line = " ".join(str(value).splitlines())
    return _MARKDOWN_INLINE.sub(r"\\\1", one_line).replace("|", "｜")


def render_markdown(r: ReportInput) -> str:
    first, last = r.entries[0], r.entries[-1]
    closed = _last(r, lambda e: e.state == "closed" and e.kind == "transitioned")
    peak = min((e.tier for e in r.entries if e.tier), default=0)
    lines = [
        f"# 危机复盘报告 Post-mortem: {_text(r.group)}" + (" (草稿 draft: still open)" if r.draft else ""),
        "",
        f"- 事件编号 Incident: `{r.incident_id}`",
        f"- 最高等级 Peak tier: {_TIER[peak]}",
        f"- 开始 Opened: {_t(first.at)} (Asia/Shanghai)",
        f"- 结束 Closed: {_t(closed.at) if closed else '—'}",
        f"- 当前状态 State: {last.state}",
        f"- 时长 Duration: {_dur((closed or last).at - first.at)}",
        "",
        "## SLA 时效 Timeliness",
        "",
        "| 环节 step | 开始 started | 时限 deadline | 实际 actual | 用时 took | 结果 result |",
        "|---|---|---|---|---|---|",
    ]
    for d in r.deadlines:
        took = d.met_at - d.started_at if d.met_at and d.started_at else None
        due = _t(d.due_at) + (" ≈" if d.approximate else "")
        lines.append(
            f"| {_DEADLINE_NAMES.get(d.name, d.name)} | {_t(d.started_at)} | {due} | {_t(d.met_at)} | "
            f"{_dur(took)} | {_VERDICT[d.status]} |"
        )
    if any(d.approximate for d in r.deadlines):
        lines += ["", "≈ counted Monday to Friday: no Chinese holiday calendar for that year (approximate)."]
    lines += ["", "## 评估 Evaluation", "", *_evaluation(r, closed)]
    lines += ["", "## 声明审核 Statement review (经领导小组审核)", "", *_statement(r)]
    lines += ["", "## 回访 Follow-up list", "", *_follow_ups(r)]
    lines += [
        "",
        "## 等级曲线 Tier curve",
        "",
        "| 时间 time | 等级 tier | 2h | 4h | 8h | 原因 reason |",
        "|---|---|---|---|---|---|",
    ]
    for p in r.curve:
        c = p.counts
        lines.append(
            f"| {_t(p.at)} | {_TIER[p.tier]} | {c.get('2h', 0):,} | {c.get('4h', 0):,} | {c.get('8h', 0):,} "
            f"| {_text(p.reason)} |"
        )
    lines += [
        "",
        "## 主要传播内容 Top posts (during the incident)",
        "",
        "| 平台 platform | 传播量 spread | 内容 excerpt |",
        "|---|---|---|",
    ]
    for post in r.top_posts[:10]:
        excerpt = _text(str(post.get("excerpt", ""))[:80])
        lines.append(f"| {_text(post.get('platform'))} | {int(post.get('spread', 0)):,} | {excerpt} |")
    lines += [
        "",
        "## 时间线 Timeline",
        "",
        "| # | 时间 time | 事件 event | 操作人 actor | 说明 detail |",
        "|---|---|---|---|---|",
    ]
    for e in r.entries:
        lines.append(
            f"| {e.seq} | {_t(e.at)} | {e.kind} → {e.state} | {_text(e.actor)} | {_text(_short(e.detail))} |"
        )
    return "\n".join(lines) + "\n"


def _last(r: ReportInput, pred: Any) -> Entry | None:
    return next((e for e in reversed(r.entries) if pred(e)), None)


def _evaluation(r: ReportInput, closed: Entry | None) -> list[str]:
    counted = [d for d in r.deadlines if d.status != "superseded"]
    on_time = [d.name for d in counted if d.status == "met"]
    late = [d.name for d in counted if d.status in ("met_late", "breached")]
    pending = [d.name for d in counted if d.status == "pending"]
    ack = next(
        (d.met_at - d.started_at for d in r.deadlines if d.name == "ack" and d.met_at and d.started_at), None
    )
    rungs = sorted({m.group(1) for e in r.entries if (m := _PAGED.search(e.detail))})

    def actions(name: str) -> list[Entry]:
        return [e for e in r.entries if e.action == name]

    passed_on = actions("verified") + actions("statement_published")
    corrections = actions("correction")
    accuracy = (
        f"{1 - min(len(corrections), len(passed_on)) / len(passed_on):.0%} not corrected"
        if passed_on
        else "nothing passed on yet"
    )
    follow_ups = actions("follow_up")
    listed = _follow_up_counts(r.follow_ups)
    return [
        f"- 应急响应时效 Response timeliness: {len(on_time)}/{len(counted)} deadlines met on time"
        + (f"; late or missed: {', '.join(late)}" if late else "")
        + (f"; still running: {', '.join(pending)}" if pending else "")
        + (f"; acknowledged after {_dur(ack)}" if ack is not None else "")
        + (f"; paged: {', '.join(rungs)}" if rungs else "; nobody beyond the responder was paged"),
        f"- 信息传递准确性 Accuracy of information passed on: {len(passed_on)} passed on "
        f"({len(actions('verified'))} verification, {len(actions('statement_published'))} statement), "
        f"{len(corrections)} correction(s) recorded → {accuracy}. Counted from operator actions: the service "
        "cannot judge content, so an item counts as accurate unless a `correction` action was recorded.",
        *(f"  - 更正 correction {_t(e.at)} ({_text(e.actor)}): {_text(e.detail)}" for e in corrections),
        f"- 用户反馈处理 User feedback: {r.posts_cited} posts cited as evidence by the incident's tier "
        f"changes; {listed}; {len(follow_ups)} more 回访 recorded as free text with the `follow_up` action "
        "(one may cover many users, so no coverage ratio is claimed for those).",
        *(f"  - 回访 {_t(e.at)} ({_text(e.actor)}): {_text(e.detail)}" for e in follow_ups),
        f"- 最终结果 Outcome: {_outcome(r, closed)}",
        f"- 舆情变化趋势 Trend: {_trend(r, closed)}",
    ]


_OUTCOMES = ("done", "unreachable", "declined", "not_needed")
_STATUS = {
    "draft": "草稿 draft",
    "submitted": "待审核 submitted",
    "approved": "已批准 approved",
    "returned": "已退回 returned",
    "published": "已发布 published",
    "superseded": "已被新版本取代 superseded",
}


def _follow_up_counts(items: Sequence[FollowUpItem]) -> str:
    """The plans' "how well user feedback was handled": items done and not done, by outcome."""
    if not items:
        return "回访 list: no items"
    count = {o: sum(i.outcome is not None and i.outcome.value == o for i in items) for o in _OUTCOMES}
    rest = [f"{count[o]} {o}" for o in _OUTCOMES[1:] if count[o]]
    if still_open := sum(i.outcome is None for i in items):
        rest.append(f"{still_open} still open")
    return (
        f"回访 list: {count['done']} of {len(items)} item(s) done, {len(items) - count['done']} not done"
        + (f" ({', '.join(rest)})" if rest else "")
    )


def _by(who: str | None, at: datetime | None) -> str:
    return f"{_text(who)} {_t(at)}" if who else "—"


def _statement(r: ReportInput) -> list[str]:
    if not r.statement:
        published = any(e.action == "statement_published" for e in r.entries)
        return [
            "No statement version recorded: "
            + (
                "the statement was recorded with a single `statement_published` action, before the approval "
                "workflow, so there is no draft, review or text on record."
                if published
                else "none was drafted."
            )
        ]
    lines = [
        "| 版本 version | 状态 status | 起草 drafted | 提交 submitted | 审核 reviewed | 发布 published "
        "| 意见 comment |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in r.statement:
        lines.append(
            f"| {v.version} | {_STATUS[v.status.value]} | {_by(v.drafted_by, v.drafted_at)} | "
            f"{_by(v.submitted_by, v.submitted_at)} | {_by(v.reviewed_by, v.reviewed_at)} | "
            f"{_by(v.published_by, v.published_at)} | {_text(v.review_comment) or '—'} |"
        )
    for v in r.statement:
        if v.status.value == "published":
            lines += ["", f"- 发布文本 Published text, version {v.version}: {_text(v.text)}"]
    return lines


def _follow_ups(r: ReportInput) -> list[str]:
    if not r.follow_ups:
        return ["No 回访 items were listed."]
    lines = [
        "| 对象 target | 负责人 owner | 截止 due | 结果 outcome | 记录 recorded | 备注 note |",
        "|---|---|---|---|---|---|",
    ]
    for i in r.follow_ups:
        outcome = i.outcome.value if i.outcome else "⏳ open"
        late = " (late)" if i.outcome_at and i.outcome_at > i.due_at else ""
        lines.append(
            f"| {_text(i.target)} | {_text(i.owner)} | {_t(i.due_at)} | {outcome}{late} | "
            f"{_by(i.outcome_by, i.outcome_at)} | {_text(i.note) or '—'} |"
        )
    return lines


def _outcome(r: ReportInput, closed: Entry | None) -> str:
    reopened = sum(e.action == "reopen" for e in r.entries)
    cooling = next((e for e in r.entries if e.state == "cooling"), None)
    parts = [
        f"closed {_t(closed.at)} by {_text(closed.actor)}"
        if closed
        else f"not closed ({r.entries[-1].state})",
        f"tier at close {_TIER[closed.tier]}" if closed else f"tier now {_TIER[r.entries[-1].tier]}",
        f"cooling from {_t(cooling.at)}" if cooling else "never reached cooling",
        f"reopened {reopened} time(s)" if reopened else "not reopened",
    ]
    if closed and "override:" in closed.detail:
        parts.append("closed by override before cooling")
    return "; ".join(parts)


def _counts_at(r: ReportInput, at: datetime) -> CurvePoint | None:
    return next((p for p in reversed(r.curve) if p.at <= at), None)


def _trend(r: ReportInput, closed: Entry | None) -> str:
    if not r.curve:
        return "no tier data"
    peak = max(r.curve, key=lambda p: p.counts.get("2h", 0))
    text = f"peak 2h spread {peak.counts.get('2h', 0):,} at {_t(peak.at)}"
    statement = next((e for e in r.entries if e.action == "statement_published"), None)
    if statement is None:
        return text + "; no statement published, so no before/after"
    before = _counts_at(r, statement.at)
    after = _counts_at(r, closed.at if closed else r.entries[-1].at)
    if before is None or after is None:
        return text
    b, a = before.counts.get("2h", 0), after.counts.get("2h", 0)
    change = f" ({(a - b) / b:+.0%})" if b else ""
    return (
        text + f"; 2h spread at the statement {b:,} ({_TIER[before.tier]}) → "
        f"{'at close' if closed else 'now'} {a:,} ({_TIER[after.tier]}){change}. Window counts are those of "
        "the latest tier change at or before each moment."
    )


def render_html(markdown: str) -> str:
    """A small Markdown subset (headings, lists, tables) to HTML: enough for this report, no dependency."""
    out = [
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>复盘报告</title>',
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}"
        "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em}</style>",
        "</head><body>",
    ]
    in_table = in_list = False
    for raw in markdown.splitlines():
        # Text escaped for Markdown (_text) is shown as written: unescaped, then escaped for HTML.
        line = html.escape(_MARKDOWN_ESCAPED.sub(r"\1", raw))
        if raw.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            if not in_table:
                out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
                in_table = True
            else:
                out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if raw.lstrip().startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{line.lstrip()[2:]}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if raw.startswith("#"):
            level = len(raw) - len(raw.lstrip("#"))
            out.append(f"<h{level}>{line[level:].strip()}</h{level}>")
        elif raw.strip():
            out.append(f"<p>{line}</p>")
    out.append("</table>" if in_table else "</ul>" if in_list else "")
    out.append("</body></html>")
    return "\n".join(out)
