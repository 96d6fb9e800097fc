"""微信视频号 (Channels, internally "finder") videos as the finder web API returns its feed objects.

They share the `wechat` platform with 公众号 articles; wechat.map_payload sends a payload here when it has
the finder object's own fields (objectDesc, objectNonceId or objectId, or their snake_case spellings
object_desc, object_nonce_id, object_id that search APIs and crawlers write).
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
    require_text,
    short_text,
    spread,
    string,
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["is_channels", "map_payload"]

# Ids of 视频号 objects and 公众号 msgids are both long numbers: the prefix keeps them apart.
_PREFIX = "channels:"
_MARKERS = ("objectDesc", "objectNonceId", "objectId", "object_desc", "object_nonce_id", "object_id")


def is_channels(payload: Payload) -> bool:
    return any(k in payload for k in _MARKERS) or isinstance(payload.get("object"), dict)


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    # Some crawlers store the feed item {"object": {…}} rather than the object.
    if isinstance(payload.get("object"), dict) and not any(k in payload for k in _MARKERS):
        return inside("object", reading, _fields, payload["object"], reading)
    return _fields(payload, reading)


def _fields(payload: Payload, reading: Reading) -> dict[str, Any]:
    object_id = ident(payload, "objectId", "object_id", "id")
    if object_id is None:
        raise AdapterError("objectId", "missing; the 视频号 object id is required")
    text = clean_text(
        string(payload, "objectDesc.description")
        or string(payload, "object_desc.description")
        or string(payload, "description"),
    )
    counts = spread(
        payload,
        reading,
        {
            "reposts": ("forwardCount", "forward_count"),
            "comments": ("commentCount", "comment_count"),
            "likes": ("likeCount", "like_count"),
        },
        extra_paths=("favCount", "fav_count", "readCount", "read_count"),
    )
    # favCount is the ♥ 推荐 ("recommend to friends"), a second, separate like button.
    recommends = "favCount" if get(payload, "favCount") is not None else "fav_count"
    views = "readCount" if get(payload, "readCount") is not None else "read_count"
    return {
        "platform": Platform.wechat,
        "post_id": f"{_PREFIX}{object_id}",
        "text": require_text(text, "objectDesc.description"),
        "author": short_text(
            string(payload, "nickname") or string(payload, "contact.nickname") or string(payload, "nick_name")
        ),
        "author_type": _author_type(payload, reading),
        # A 视频号 video has no web address anyone outside WeChat can open.
        "url": None,
        "published_at": when(payload, reading, "createtime", "createTime", "create_time"),
        "root_post_id": None,
        "engagement": {
            **counts,
            "extras": extras(payload, reading, {"recommends": recommends, "views": views}),
        },
    }


def _author_type(payload: Payload, reading: Reading) -> AuthorType:
    # contact.authInfo.authIconType: 1 is a personal (yellow) verification, 2 an organisation (blue),
    # which includes the brand's own account: not media.
    kind = get(payload, "contact.authInfo.authIconType")
    if kind in (1, "1"):
        return AuthorType.kol
    if kind in (2, "2"):
        return AuthorType.user
    fans = ("contact.fansCount", "fansCount")
    return AuthorType.kol if followed_widely(payload, reading, *fans) else AuthorType.user
