"""B站 videos in the shapes crawlers store them.

- `/x/web-interface/view`'s `data` (`stat.reply`, `stat.like`, `pubdate`), bare or in the API's
  envelope `{"code": 0, "data": …}`;
- `/x/web-interface/view/detail`'s `{"View": {…}, "Card": …}`, bare or in the envelope;
- a search result item (`type: video`, `review` comments, `like`, `play`, `video_review` danmaku);
- a space upload-list item (`vlist`: `comment`, `play`, `created`; its `review` is always 0);
- MediaCrawler's record (`video_id`, `liked_count`, `video_comment`, `video_share_count`, `create_time`).
"""

from __future__ import annotations

from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    extras,
    followed_widely,
    get,
    ident,
    inside,
    join_title,
    published,
    require_text,
    short_text,
    spread,
    string,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

# owner.official.role: 1 知名UP主, 2 大V达人, 7 高能主播, 9 社会知名人士 are people; 3 企业 and 4 组织 are
# organisations (a brand's own account among them); 5 媒体 and 6 政府 speak as media.
_MEDIA_ROLES = {5, 6}
_ORGANISATION_ROLES = {3, 4}

# Per shape: the spread counts and the extras, each with the fields that hold it.
_VIEW = (
    {"reposts": ("stat.share",), "comments": ("stat.reply",), "likes": ("stat.like",)},
    {"views": "stat.view", "coins": "stat.coin", "favorites": "stat.favorite", "danmaku": "stat.danmaku"},
)
_SEARCH = (
    {"reposts": ("share",), "comments": ("review",), "likes": ("like",)},
    {"views": "play", "favorites": "favorites", "danmaku": "video_review"},
)
_SPACE = (
    {"reposts": ("share",), "comments": ("comment",), "likes": ("like",)},
    {"views": "play", "danmaku": "video_review"},
)
_CRAWLER = (
    {"reposts": ("video_share_count",), "comments": ("video_comment",), "likes": ("liked_count",)},
    {
        "views": "video_play_count",
        "coins": "video_coin_count",
        "favorites": "video_favorite_count",
        "danmaku": "video_danmaku",
    },
)


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    # The API's own envelope {"code": 0, "message": "0", "data": {…}} is often stored as is.
    if "code" in payload and ("data" in payload or "message" in payload):
        code = get(payload, "code")
        if code not in (0, "0"):
            message = string(payload, "message") if isinstance(payload.get("message"), str) else None
            raise AdapterError("code", f"the API answered code {code!r} ({message or 'no message'}), not 0")
        if not isinstance(payload.get("data"), dict):
            raise AdapterError("data", "expected the video object")
        return _inside("data", payload["data"], reading)
    return _inside("", payload, reading)


def _inside(envelope: str, payload: Payload, reading: Reading) -> dict[str, Any]:
    where = envelope
    if isinstance(payload.get("View"), dict):  # view/detail: {"View": …, "Card": …, "Tags": …}
        card = payload.get("Card")
        payload = {**payload["View"], "card": card} if isinstance(card, dict) else payload["View"]
        where = f"{envelope}.View" if envelope else "View"
    view = payload
    return inside(where, reading, _fields, view, reading)


def _fields(payload: Payload, reading: Reading) -> dict[str, Any]:
    if "video_id" in payload and "stat" not in payload:
        counts, extra = _CRAWLER
        bvid, aid = ident(payload, "bvid"), ident(payload, "video_id")
    else:
        bvid, aid = ident(payload, "bvid"), ident(payload, "aid", "id")
        if "stat" in payload:
            counts, extra = _VIEW
        elif "created" in payload or "comment" in payload:
            counts, extra = _SPACE
        else:
            counts, extra = _SEARCH
    if bvid is None and aid is None:
        raise AdapterError("bvid or aid", "missing; the video id is required")
    video = bvid or f"av{aid}"
    desc = string(payload, "desc") or string(payload, "description")
    if desc is not None and desc.strip() == "-":
        desc = None  # B站 shows "-" for an empty description
    # Search results mark the query in the title with <em class="keyword">: markup, removed with the rest.
    text = clean_text(*join_title(string(payload, "title"), desc))
    return {
        "platform": Platform.bilibili,
        "post_id": video,
        "text": require_text(text, "title", "desc"),
        "author": short_text(
            string(payload, "owner.name") or string(payload, "author") or string(payload, "nickname")
        ),
        "author_type": _author_type(payload, reading),
        "url": f"https://www.bilibili.com/video/{video}",
        "published_at": published(
            payload,
            reading,
            ("pubdate", "created", "ctime", "senddate", "create_time"),
            id_path="bvid",
            id_time=None,
            post_id=video,
        ),
        "root_post_id": None,
        "engagement": {
            **spread(payload, reading, counts, extra_paths=tuple(extra.values())),
            "extras": extras(payload, reading, extra),
        },
    }


def _author_type(payload: Payload, reading: Reading) -> AuthorType:
    role = get(payload, "owner.official.role")
    kind = get(payload, "owner.official.type")
    if role in _MEDIA_ROLES:
        return AuthorType.media
    if role in _ORGANISATION_ROLES or kind == 1:
        return AuthorType.user
    if kind == 0 or followed_widely(
        payload, reading, "owner.fans", "card.card.fans", "card.fans", "owner_card.fans"
    ):
        return AuthorType.kol  # type 0 is the yellow 个人认证
    return AuthorType.user
