"""The post-mortem report (《危机复盘报告》): timeline, SLAs against deadlines, tier curve, top posts, and the
figures the plans' evaluation asks for. Plain functions over events; Markdown first, HTML from it."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from schemas.events import IncidentEvent, TierChange
from services.escalation.workdays import SHANGHAI

__all__ = ["render_html", "render_markdown"]

_TIER = {0: "无", 1: "一级 (重大)", 2: "二级 (较大)", 3: "三级 (一般)"}
_DEADLINE_NAMES = {
    "ack": "确认接收 acknowledgement",
    "meeting_convened": "召开紧急会议 emergency meeting",
    "facts_verified": "完成信息核实 facts verified",
    "statement_published": "发声回应 public statement",
    "postmortem_filed": "提交复盘报告 post-mortem",
}


def _t(value: datetime | None) -> str:
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if value else "—"


def _dur(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def render_markdown(
    events: Sequence[IncidentEvent], tier_changes: Sequence[TierChange], top_posts: Sequence[dict[str, Any]]
) -> str:
    first, last = events[0], events[-1]
    peak = max((int(e.tier) for e in events if int(e.tier)), key=lambda t: 4 - t, default=0)
    lines = [
        f"# 危机复盘报告 Post-mortem: {first.group}",
        "",
        f"- 事件编号 Incident: `{first.incident_id}`",
        f"- 最高等级 Peak tier: {_TIER[peak]}",
        f"- 开始 Opened: {_t(first.event_time)} (Asia/Shanghai)",
        f"- 当前状态 State: {last.state.value}",
        f"- 时长 Duration so far: {_dur(last.event_time - first.event_time)}",
        "",
        "## SLA 时效 Timeliness",
        "",
        "| 环节 step | 时限 deadline | 实际 actual | 用时 took | 结果 result |",
        "|---|---|---|---|---|",
    ]
    met = total = 0
    for d in last.deadlines:
        total += 1
        status = d.status
        met += status == "met"
        took = d.met_at - first.event_time if d.met_at else None
        verdict = {"met": "✅ 达标 met", "breached": "❌ 超时 breached", "pending": "⏳ 进行中 pending"}[
            status
        ]
        lines.append(
            f"| {_DEADLINE_NAMES.get(d.name, d.name)} | {_t(d.due_at)} | {_t(d.met_at)} | {_dur(took)} "
            f"| {verdict} |"
        )
    breaches = sum(e.kind.value == "sla_breached" for e in events)
    escalations = sum(e.kind.value == "escalated" for e in events)
    lines += [
        "",
        "## 评估 Evaluation",
        "",
        f"- 应急响应时效 Response timeliness: {met}/{total} deadlines met, {breaches} breached, "
        f"{escalations} escalations",
        f"- 信息传递 Information passed on: {sum(e.kind.value == 'reminder' for e in events)} reminders, "
        f"{len(tier_changes)} tier changes reported",
        f"- 用户反馈处理 User feedback: {len(top_posts)} top posts tracked in the ledger",
        f"- 最终结果 Outcome: {last.state.value}",
        f"- 舆情变化趋势 Trend: {_trend(tier_changes)}",
        "",
        "## 等级曲线 Tier curve",
        "",
        "| 时间 time | 等级 tier | 2h | 4h | 8h | 原因 reason |",
        "|---|---|---|---|---|---|",
    ]
    for tc in tier_changes:
        c = tc.counts
        lines.append(
            f"| {_t(tc.window_end)} | {_TIER[int(tc.tier)]} | {c.get('2h', 0):,} | {c.get('4h', 0):,} | "
            f"{c.get('8h', 0):,} | {tc.reason} |"
        )
    lines += [
        "",
        "## 主要传播内容 Top posts",
        "",
        "| 平台 platform | 传播量 spread | 内容 excerpt |",
        "|---|---|---|",
    ]
    for p in top_posts[:10]:
        excerpt = str(p.get("excerpt", "")).replace("|", "｜").replace("\n", " ")[:80]
        lines.append(f"| {p.get('platform')} | {int(p.get('spread', 0)):,} | {excerpt} |")
    lines += [
        "",
        "## 时间线 Timeline",
        "",
        "| # | 时间 time | 事件 event | 操作人 actor | 说明 detail |",
        "|---|---|---|---|---|",
    ]
    for e in events:
        detail = e.detail.replace("|", "｜")
        lines.append(
            f"| {e.sequence} | {_t(e.event_time)} | {e.kind.value} → {e.state.value} | {e.actor} | {detail} |"
        )
    return "\n".join(lines) + "\n"


def _trend(tier_changes: Sequence[TierChange]) -> str:
    if not tier_changes:
        return "no tier data"
    peak = max(tier_changes, key=lambda tc: tc.counts.get("2h", 0))
    last = tier_changes[-1]
    return (
        f"peak 2h spread {peak.counts.get('2h', 0):,} at {_t(peak.window_end)}; "
        f"latest tier {_TIER[int(last.tier)]} ({last.direction}) at {_t(last.window_end)}"
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
        line = html.escape(raw)
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
        if raw.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{line[2:]}</li>")
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
