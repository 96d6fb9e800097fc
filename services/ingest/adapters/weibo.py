"""Weibo statuses in the shapes crawlers store them.

- a bare status (weibo.com ajax, open API: `idstr`, `text_raw`, `mblogid`);
- m.weibo.cn's card `{"card_type": 9, "mblog": {…}}` or `{"mblog": {…}}`;
- an API answer `{"ok": 1, "data": {…status…}}` (statuses/show, m.weibo.cn detail);
- dataabc/weibo-crawler's record (`screen_name`, `created_at` as a day, `retweet`);
- MediaCrawler's record (`note_id`, `content`, `create_time`, `liked_count`, `shared_count`).
"""

from __future__ import annotations

import re
from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    followed_widely,
    get,
    ident,
    inside,
    published,
    require_text,
    short_text,
    spread,
    string,
    truthy,
    url,
    weibo_mid_time,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

# user.verified_type: 0 is a personal (orange/gold V) verification; 1-7 are institutions with a blue V:
# 1 government, 2 company, 3 media, 4 campus, 5 website, 6 app, 7 organisation; 200/220 are 微博达人.
# Only government, media and websites speak as media. A company's blue V is often the brand's own
# account, and calling it media would make the brand's statement look like press coverage.
_MEDIA = {1, 3, 5}
_ORGANISATION = {2, 4, 6, 7}
_PERSONAL = {0, 200, 220}
_INTEGER = re.compile(r"-?[0-9]+")
# A cut-off long text ends with a link to the rest: "...全文" (m.weibo.cn) or "...展开" (weibo.com).
_MORE = ("全文：", "全文:", "全文", "展开")

_COUNTS = {
    "reposts": ("reposts_count", "shared_count"),
    "comments": ("comments_count",),
    "likes": ("attitudes_count", "liked_count"),
}


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    if isinstance(payload.get("mblog"), dict):
        return _inside("mblog", payload["mblog"], reading)
    if "ok" in payload and "data" in payload:
        ok = get(payload, "ok")
        if ok not in (1, "1", True):
            message = payload.get("msg") if isinstance(payload.get("msg"), str) else None
            raise AdapterError("ok", f"the API answered ok={ok!r} ({message or 'no message'}), not 1")
        data = payload["data"]
        if not isinstance(data, dict):
            raise AdapterError("data", "expected the status object")
        if isinstance(data.get("mblog"), dict):
            return _inside("data.mblog", data["mblog"], reading)
        return _inside("data", data, reading)
    return _status(payload, reading)


def _inside(envelope: str, status: Payload, reading: Reading) -> dict[str, Any]:
    return inside(envelope, reading, _status, status, reading)


def _status(payload: Payload, reading: Reading) -> dict[str, Any]:
    post_id = ident(payload, "idstr", "id", "mid", "note_id")
    if post_id is None:
        raise AdapterError("id", "missing; the status id is required")
    long_text = string(payload, "longText.longTextContent")
    text = clean_text(long_text or string(payload, "text") or string(payload, "text_raw") or "")
    if not text:
        text = clean_text(string(payload, "content"))  # MediaCrawler's record
    # isLongText: the list and search answers carry only the first ~140 characters; the rest needs a
    # second request that not every crawler makes.
    truncated = truthy(get(payload, "isLongText")) and not long_text
    if truncated:
        text = _without_more(text)
        reading.warnings.append(
            "isLongText: the text is cut off (no longText.longTextContent); matched on its first part only"
        )
    user_id = ident(payload, "user.idstr", "user.id", "user_id")
    bid = ident(payload, "mblogid", "bid")
    link = url(payload, "note_url") or (
        f"https://weibo.com/{user_id}/{bid}" if user_id and bid else f"https://m.weibo.cn/detail/{post_id}"
    )
    counts = spread(payload, reading, _COUNTS)
    return {
        "platform": Platform.weibo,
        "post_id": post_id,
        "text": require_text(text, "text"),
        "truncated": truncated,
        "author": short_text(
            string(payload, "user.screen_name")
            or string(payload, "screen_name")
            or string(payload, "nickname")
        ),
        "author_type": _author_type(payload, reading, "user"),
        "url": link,
        # m.weibo.cn writes "06-27" or "15小时前"; the mid carries the second.
        "published_at": published(
            payload,
            reading,
            ("created_at", "create_time"),
            id_path="id",
            id_time=weibo_mid_time,
            post_id=post_id,
        ),
        # Weibo always points retweeted_status at the original, never at an intermediate repost.
        "root_post_id": ident(
            payload,
            "retweeted_status.idstr",
            "retweeted_status.id",
            "retweeted_status.mid",
            "retweet.id",
        ),
        "engagement": counts,
    }


def _without_more(text: str) -> str:
    """`text` without the trailing link to its rest and the ellipsis before it."""
    text = text.rstrip()
    for word in _MORE:
        if text.endswith(word):
            text = text[: -len(word)].rstrip()
            break
    for dots in ("...", "…"):
        if text.endswith(dots):
            return text[: -len(dots)].rstrip()
    return text


def _author_type(payload: Payload, reading: Reading, user: str) -> AuthorType:
    kind = get(payload, f"{user}.verified_type")
    if isinstance(kind, str) and len(kind) < 8 and _INTEGER.fullmatch(kind):
        kind = int(kind)
    if isinstance(kind, int) and not isinstance(kind, bool):
        if kind in _MEDIA:
            return AuthorType.media
        if kind in _ORGANISATION:
            return AuthorType.user
        if kind in _PERSONAL:
            return AuthorType.kol
    if get(payload, f"{user}.verified") is True:
        return AuthorType.kol
    return AuthorType.kol if followed_widely(payload, reading, f"{user}.followers_count") else AuthorType.user
