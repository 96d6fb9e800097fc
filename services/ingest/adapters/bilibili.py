"""B站 videos as /x/web-interface/view returns them (the `data` object)."""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    count,
    extras,
    followed_widely,
    get,
    ident,
    join_title,
    require_text,
    short_text,
    string,
    when,
    within,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

_EXTRAS = {
    "views": "stat.view",
    "coins": "stat.coin",
    "favorites": "stat.favorite",
    "danmaku": "stat.danmaku",
}


# owner.official.role: 1 知名UP主, 2 大V达人, 7 高能主播, 9 社会知名人士 are people; 3 企业 and 4 组织 are
# organisations (a brand's own account among them); 5 媒体 and 6 政府 speak as media.
_MEDIA_ROLES = {5, 6}
_ORGANISATION_ROLES = {3, 4}


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    # The API's own envelope {"code": 0, "message": "0", "data": {…}} is often stored as is.
    if "code" in payload and isinstance(payload.get("data"), dict):
        code = get(payload, "code")
        if code not in (0, "0"):
            message = string(payload, "message") if isinstance(payload.get("message"), str) else None
            raise AdapterError("code", f"the API answered code {code!r} ({message or 'no message'}), not 0")
        try:
            return _fields(payload["data"], reading)
        except AdapterError as exc:
            raise within("data", exc) from None
    return _fields(payload, reading)


def _fields(payload: Payload, reading: Reading) -> dict[str, Any]:
    bvid = ident(payload, "bvid")
    aid = ident(payload, "aid")
    if bvid is None and aid is None:
        raise AdapterError("bvid or aid", "missing; the video id is required")
    video = bvid or f"av{aid}"
    desc = string(payload, "desc")
    if desc is not None and desc.strip() == "-":
        desc = None  # B站 shows "-" for an empty description
    text = clean_text(*join_title(string(payload, "title"), desc))
    return {
        "platform": Platform.bilibili,
        "post_id": video,
        "text": require_text(text, "title", "desc"),
        "author": short_text(string(payload, "owner.name")),
        "author_type": _author_type(payload, reading),
        "url": f"https://www.bilibili.com/video/{video}",
        "published_at": when(payload, reading, "pubdate", "ctime"),
        "root_post_id": None,
        "engagement": {
            "reposts": count(payload, "stat.share"),
            "comments": count(payload, "stat.reply"),
            "likes": count(payload, "stat.like"),
            "extras": extras(payload, reading, _EXTRAS),
        },
    }


def _author_type(payload: Payload, reading: Reading) -> AuthorType:
    role = get(payload, "owner.official.role")
    kind = get(payload, "owner.official.type")
    if role in _MEDIA_ROLES:
        return AuthorType.media
    if role in _ORGANISATION_ROLES or kind == 1:
        return AuthorType.user
    if kind == 0 or followed_widely(payload, reading, "owner.fans", "card.fans", "owner_card.fans"):
        return AuthorType.kol  # type 0 is the yellow 个人认证
    return AuthorType.user
