"""Event factories shared by the test folders: keyword hits, tier changes and incident events."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import (
    Deadline,
    Engagement,
    IncidentEvent,
    IncidentEventKind,
    IncidentState,
    KeywordHit,
    Platform,
    Tier,
    TierChange,
)

T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


def hit(
    post_id: str,
    spread: int,
    *,
    group: str = "xinghe",
    platform: Platform = Platform.weibo,
    sentiment: float = -0.8,
    excerpt: str | None = None,
    url: str | None = None,
    demand: str = "refund",
    at: datetime = T0,
) -> KeywordHit:
    return KeywordHit(
        event_time=at,
        group=group,
        platform=platform,
        post_id=post_id,
        thread_key=f"{platform.value}:{post_id}",
        snapshot_id=post_id,
        first_seen=True,
        delta=Engagement(likes=spread),
        cumulative=Engagement(reposts=spread // 4, comments=spread // 4, likes=spread - 2 * (spread // 4)),
        excerpt=excerpt if excerpt is not None else f"星河空调投诉 {post_id}",
        url=url,
        sentiment=sentiment,
        demand=demand,
        detected_at=at,
    )


def tier_change(
    tier: Tier, previous: Tier, counts: dict[str, int], *, group: str = "xinghe", at: datetime = T0
) -> TierChange:
    return TierChange(
        event_time=at,
        group=group,
        previous=previous,
        tier=tier,
        direction="up" if tier.severity > previous.severity else "down",
        reason="threshold",
        window_end=at,
        counts=counts,
        detected_at=at,
    )


def incident_event(
    seq: int,
    state: IncidentState,
    *,
    tier: Tier = Tier.level2,
    incident_id: str = "inc1",
    group: str = "xinghe",
    actor: str = "system",
    detail: str = "",
) -> IncidentEvent:
    deadlines = (
        Deadline(name="ack", due_at=T0 + timedelta(minutes=30)),
        Deadline(name="facts_verified", due_at=T0 + timedelta(minutes=60)),
    )
    return IncidentEvent(
        event_time=T0 + timedelta(minutes=seq),
        incident_id=incident_id,
        group=group,
        kind=IncidentEventKind.opened if seq == 1 else IncidentEventKind.transitioned,
        state=state,
        tier=tier,
        actor=actor,
        detail=detail,
        deadlines=deadlines,
        sequence=seq,
    )


# Post texts a spreadsheet would run as formulas (OWASP's CSV injection list), and the cell the CSV holds.
# A leading tab or CR, also on the list, never reaches the ledger: events strip surrounding whitespace.
FORMULA_EXCERPTS = {
    '=HYPERLINK("https://evil.example/phish","星河退款点这里")': '\'=HYPERLINK("https://evil.example/phish","星河退款点这里")',
    "+1+cmd|' /C calc'!A0": "'+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0": "'-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0": "'@SUM(1+1)*cmd|' /C calc'!A0",
    "星河 = 差评 -1": "星河 = 差评 -1",  # a formula character later in the text is plain text
}


def formula_hits() -> list[KeywordHit]:
    """A hit per FORMULA_EXCERPTS text, post ids f0, f1, …; the first also has a formula as its url."""
    return [
        hit(f"f{i}", 10 + i, excerpt=text, url="=cmd|' /C calc'!A0" if i == 0 else None)
        for i, text in enumerate(FORMULA_EXCERPTS)
    ]


def assert_csv_neutralised(body: bytes) -> None:
    """The ledger CSV holds every FORMULA_EXCERPTS text as its safe cell, and numbers as numbers."""
    rows = {r["post_id"]: r for r in csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline=""))}
    for i, (text, cell) in enumerate(FORMULA_EXCERPTS.items()):
        assert rows[f"f{i}"]["excerpt"] == cell, text
        assert rows[f"f{i}"]["spread"] == str(10 + i)
    assert rows["f0"]["url"] == "'=cmd|' /C calc'!A0"


# A held-out crisis: (minute, spread) of eleven posts over 88 minutes, 100,001 in all. In order it crosses
# level 3 at minute 15, level 2 at 53 (a post of 40,000, 35 minutes before the newest) and level 1 at 88.
BURST = (
    (0, 3_000),
    (8, 4_000),
    (15, 4_500),
    (25, 6_000),
    (35, 9_000),
    (45, 12_000),
    (53, 40_000),
    (62, 5_000),
    (70, 7_000),
    (78, 4_500),
    (88, 5_001),
)


def crisis_burst(start: datetime, prefix: str = "burst") -> list[dict[str, Any]]:
    """The BURST posts as normalised Post dicts, observed at start + their minute, in time order."""
    posts = []
    for n, (minute, spread) in enumerate(BURST):
        at = start + timedelta(minutes=minute)
        reposts, comments = spread // 5, spread // 10
        posts.append(
            {
                "platform": "weibo",
                "post_id": f"{prefix}{n}",
                "text": f"#星河空调起火# 第{n}位网友：家里的星河空调起火了，售后推诿，要求退款！",
                "published_at": (at - timedelta(minutes=2)).isoformat(),
                "event_time": at.isoformat(),
                "engagement": {
                    "reposts": reposts,
                    "comments": comments,
                    "likes": spread - reposts - comments,
                },
            }
        )
    return posts
