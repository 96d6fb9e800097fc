"""Generate the bundled sample crisis (services/common/data/sample_crisis.jsonl), deterministically.

A fictional appliance brand, 星河电器, has an air conditioner that caught fire and an after-sales team that
refuses refunds. Over three hours the story spreads from a few complaints to media coverage. The spread
(reposts + comments + likes, counted as positive deltas between snapshots of each post) first exceeds
10,000 within 8 h, then 50,000 within 4 h, then 100,000 within 2 h, on different snapshots and in that order.

    .venv/bin/python tests/data/make_sample_crisis.py
"""

from __future__ import annotations

import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.common import json
from services.common.config import load_config
from services.scoring.matcher import RuleMatcher

OUT = Path(__file__).resolve().parents[2] / "services" / "common" / "data" / "sample_crisis.jsonl"
START = datetime(2026, 11, 21, 8, 0, tzinfo=timezone(timedelta(hours=8)))
BRANDS = ("星河电器", "星河空调", "星河冰箱")
NEGATIVES = ("投诉", "差评", "避雷", "维权", "曝光", "退款", "质量问题", "售后", "起火", "虚假宣传")

COMPLAINTS = [
    "#星河空调起火# 家里的星河空调半夜起火了，售后至今没人管，强烈要求退款！",
    "避雷星河冰箱，质量问题太多，用了三个月压缩机就坏了",
    "星河电器的售后太敷衍了，报修一周没人上门，已经在黑猫投诉",
    "刚看到星河空调起火的新闻，吓得我赶紧把家里的星河空调拔了电，差评",
    "求助：星河电器拒绝退款怎么办？空调冒烟还说是人为损坏",
    "星河空调外机烧黑了，消防都来了，售后说要等厂家鉴定，维权好难",
    "给星河电器一个差评，客服电话永远占线",
    "我家星河冰箱也漏电，已经向12315投诉，大家注意安全",
    "星河电器质量问题集中爆发，维权群已经三百人了",
    "空调起火后星河售后只愿意维修不给退款，这合理吗？#星河空调起火#",
]
MEDIA = [
    "【曝光】多地消费者投诉星河电器空调存在起火隐患，企业回应称正在调查",
    "星河空调起火事件持续发酵，律师：消费者可依法要求退款并索赔",
    "记者调查：星河电器售后推诿，质量问题投诉量一周翻倍",
    "#星河空调起火# 市场监管部门已约谈星河电器，要求排查质量问题",
]
KOL = [
    "家电测评博主实测：星河空调电源线规格不达标，这就是起火原因？避雷！",
    "聊聊星河电器这次的公关危机：售后拒绝退款只会让差评越来越多",
]
TRADITIONAL = [
    "星河電器空調起火，售後不處理，我要投訴！",
    "避雷星河冰箱，質量問題太多了",
]
REPOST_TEXTS = ["转发微博", "太吓人了", "已转给家里人", "支持维权", "//转发", "星河这次完了"]
NOISE = [
    "今晚的星河真美，在山顶看了一整夜",
    "星河空调制冷效果不错，好评",
    "小说《星河》第三章更新了，剧情越来越精彩",
    "某快递投诉无门，包裹丢了半个月",
    "星河电器新品发布会今天在上海举行",
    "避雷这家火锅店，服务太差了",
    "银河与星河有什么区别？科普一下",
    "星河冰箱开箱，颜值很高",
]
PLATFORMS = [
    ("weibo", 40),
    ("douyin", 18),
    ("xiaohongshu", 12),
    ("zhihu", 8),
    ("bilibili", 8),
    ("wechat", 6),
    ("news", 5),
    ("forum", 3),
]


def _extras(platform: str, rnd: random.Random, total: int) -> dict[str, int]:
    if platform == "bilibili":
        return {"coin": total // 20, "favorite": total // 15, "view": total * 12}
    if platform == "xiaohongshu":
        return {"collected": total // 8}
    if platform == "wechat":
        return {"read": total * 20}
    if platform == "douyin":
        return {"play": total * 30}
    return {}


def _split(total: int, rnd: random.Random) -> tuple[int, int, int]:
    reposts = int(total * rnd.uniform(0.2, 0.35))
    comments = int(total * rnd.uniform(0.15, 0.3))
    return reposts, comments, total - reposts - comments


def generate() -> list[dict[str, Any]]:
    rnd = random.Random(20261121)
    lines: list[dict[str, Any]] = []
    posts: list[dict[str, Any]] = []
    platforms = [p for p, w in PLATFORMS for _ in range(w)]
    # Matching originals appear over 170 minutes; early ones are small complaints, later ones media and KOLs.
    for i in range(80):
        minute = int(170 * (i / 80) ** 0.8)
        platform = rnd.choice(platforms)
        if i % 13 == 5:
            text = rnd.choice(TRADITIONAL)
        elif minute > 60 and i % 5 == 0:
            text = rnd.choice(MEDIA)
            platform = rnd.choice(("news", "weibo", "wechat"))
        elif minute > 40 and i % 7 == 0:
            text = rnd.choice(KOL)
        else:
            text = rnd.choice(COMPLAINTS)
        author_type = "media" if text in MEDIA else "kol" if text in KOL else "user"
        posts.append(
            {
                "id": f"{platform[:2]}_{4890000000 + i * 7919}",
                "platform": platform,
                "minute": minute,
                "text": text,
                "author_type": author_type,
                "root": None,
            }
        )
    for i in range(25):  # reposts of earlier matching posts: short texts that count for the root
        root = rnd.choice([p for p in posts[:60] if p["platform"] == "weibo"])
        minute = int(root["minute"]) + rnd.randint(3, 40)
        posts.append(
            {
                "id": f"wb_r{5900000000 + i * 104729}",
                "platform": "weibo",
                "minute": min(minute, 175),
                "text": rnd.choice(REPOST_TEXTS),
                "author_type": "user",
                "root": root["id"],
            }
        )
    for i in range(18):  # noise that must not match
        posts.append(
            {
                "id": f"nz_{6100000000 + i * 31}",
                "platform": rnd.choice(platforms),
                "minute": rnd.randint(0, 178),
                "text": NOISE[i % len(NOISE)],
                "author_type": "user",
                "root": None,
            }
        )
    for p in posts:
        growth = 1.0 + (float(p["minute"]) / 60) ** 1.6  # later posts spread faster: the crisis accelerates
        base = {"user": 260, "kol": 2000, "media": 3000}[str(p["author_type"])]
        final = int(base * growth * rnd.uniform(0.6, 1.4))
        if str(p["id"]).startswith("nz_"):
            final = rnd.randint(5, 400)
        if p["root"]:
            final = rnd.randint(20, 300)
        snapshots = rnd.randint(2, 5)
        for s in range(snapshots):
            offset = int(p["minute"]) + s * rnd.randint(4, 9)
            at = START + timedelta(minutes=offset, seconds=rnd.randint(0, 59))
            if at > START + timedelta(minutes=179):
                break
            total = int(final * ((s + 1) / snapshots) ** 1.3)
            reposts, comments, likes = _split(total, rnd)
            published = START + timedelta(minutes=int(p["minute"]))
            lines.append(
                {
                    "platform": p["platform"],
                    "post_id": p["id"],
                    "text": p["text"],
                    "author": {"user": "网友", "kol": "家电测评君", "media": "财经观察"}[
                        str(p["author_type"])
                    ]
                    + str(rnd.randint(100, 999)),
                    "author_type": p["author_type"],
                    "url": f"https://example.invalid/{p['platform']}/{p['id']}",
                    "published_at": published.isoformat(),
                    "root_post_id": p["root"],
                    "engagement": {
                        "reposts": reposts,
                        "comments": comments,
                        "likes": likes,
                        "extras": _extras(str(p["platform"]), rnd, total),
                    },
                    "event_time": at.isoformat(),
                }
            )
    lines.sort(key=lambda d: (str(d["event_time"]), str(d["post_id"])))
    return lines


def crossings(lines: list[dict[str, Any]]) -> dict[int, float]:
    """Minutes at which the windowed spread first exceeds each tier threshold, matched by the real matcher."""
    matcher = RuleMatcher(load_config().rules)
    matched = {d["post_id"] for d in lines if not d["root_post_id"] and matcher.match(str(d["text"]))}
    last: dict[str, int] = {}
    events: list[tuple[datetime, int]] = []
    found: dict[int, float] = {}
    for d in lines:
        if d["post_id"] not in matched and d["root_post_id"] not in matched:
            continue
        e = d["engagement"]
        total = e["reposts"] + e["comments"] + e["likes"]
        delta = max(0, total - last.get(d["post_id"], 0))
        last[d["post_id"]] = max(total, last.get(d["post_id"], 0))
        at = datetime.fromisoformat(str(d["event_time"]))
        events.append((at, delta))
        for tier, threshold, hours in ((3, 10_000, 8), (2, 50_000, 4), (1, 100_000, 2)):
            window = sum(x for t, x in events if at - t < timedelta(hours=hours))
            if tier not in found and window > threshold:
                found[tier] = (at - START).total_seconds() / 60
    return found


if __name__ == "__main__":
    data = generate()
    found = crossings(data)
    print(f"{len(data)} lines; first crossings (minutes): {found}")
    assert list(found) == [3, 2, 1], found
    assert found[3] < found[2] - 5 < found[1] - 10, found
    OUT.write_bytes(b"".join(json.dumps(d) + b"\n" for d in data))
