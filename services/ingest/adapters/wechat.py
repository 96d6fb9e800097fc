"""微信公众号 articles in the shapes crawlers store them; 视频号 videos go to wechat_channels.

- a flat record (`msgid`/`idx`, `title`, `content`, `account_name`, `publish_time`, `read_num`, …);
- a history-list item `{"comm_msg_info": {"datetime": …}, "app_msg_ext_info": {"content_url": …}}` with
  the counts of `getappmsgext` attached as `appmsgstat` (the list alone has none);
- an item of the 公众平台's article list (`appmsgid`, `itemidx`, `create_time`, `link`) with the counts
  wechat_articles_spider attaches (`read_num`, `like_num`, `comments`);
- a link-list item `{"title", "url", "time", "content"}`.

An article's id is `{mid}_{idx}`: the push (appmsgid, the `mid` of its link) and its place in the push.
"""

from __future__ import annotations

import re
from typing import Any

from schemas.events import AuthorType, Platform
from services.ingest.adapters import wechat_channels
from services.ingest.adapters._fields import (
    Payload,
    Reading,
    clean_text,
    extras,
    hashed_id,
    ident,
    join_title,
    require_text,
    short_text,
    spread,
    string,
    url,
    when,
)
from services.ingest.adapters.exceptions import AdapterError

__all__ = ["map_payload"]

_COUNTS = {
    "reposts": ("share_num", "appmsgstat.share_num"),
    "comments": ("comment_num", "comment_count", "comments.elected_comment_total_cnt"),
    "likes": ("like_num", "appmsgstat.like_num"),
}
_VIEWS = ("read_num", "appmsgstat.read_num")
# mid and idx in an article link: …/s?__biz=…&mid=2247486197&idx=1&sn=…
_MID = re.compile(r"[?&](?:amp;)?mid=(\d+)")
_IDX = re.compile(r"[?&](?:amp;)?idx=(\d+)")


def map_payload(payload: Payload, reading: Reading) -> dict[str, Any]:
    if wechat_channels.is_channels(payload):
        return wechat_channels.map_payload(payload, reading)
    if isinstance(payload.get("app_msg_ext_info"), dict):
        return _history_item(payload, reading)
    link = url(payload, "url", "link", "content_url")
    msgid = ident(payload, "msgid", "appmsgid")
    idx = ident(payload, "idx", "itemidx")
    # One push (msgid) carries up to eight articles told apart by idx.
    if msgid is not None:
        post_id = f"{msgid}_{idx}" if idx else msgid
    elif (from_link := _id_from_link(link)) is not None:
        post_id = from_link
    elif link is not None:
        post_id = hashed_id(link)
    else:
        raise AdapterError("msgid or url", "missing; an article needs its msgid or its link")
    text = clean_text(
        *join_title(string(payload, "title"), string(payload, "content") or string(payload, "digest"))
    )
    return {
        "platform": Platform.wechat,
        "post_id": post_id,
        "text": require_text(text, "title", "content", "digest"),
        "author": short_text(string(payload, "account_name") or string(payload, "nickname")),
        "author_type": AuthorType.media,
        "url": link,
        "published_at": when(payload, reading, "publish_time", "create_time", "datetime", "time"),
        "root_post_id": None,
        "engagement": _engagement(payload, reading),
    }


def _history_item(payload: Payload, reading: Reading) -> dict[str, Any]:
    """An item of the history list (`getmsg`'s general_msg_list): the push's first article."""
    link = url(payload, "app_msg_ext_info.content_url")
    if link is not None:
        link = link.replace("\\/", "/").replace("&amp;", "&")
    post_id = _id_from_link(link)
    if post_id is None:
        raise AdapterError("app_msg_ext_info.content_url", "missing or without mid and idx; the id is in it")
    text = clean_text(
        *join_title(string(payload, "app_msg_ext_info.title"), string(payload, "app_msg_ext_info.digest"))
    )
    return {
        "platform": Platform.wechat,
        "post_id": post_id,
        "text": require_text(text, "app_msg_ext_info.title", "app_msg_ext_info.digest"),
        "author": short_text(string(payload, "account_name") or string(payload, "nickname")),
        "author_type": AuthorType.media,
        "url": link,
        "published_at": when(payload, reading, "comm_msg_info.datetime"),
        "root_post_id": None,
        "engagement": _engagement(payload, reading),
    }


def _engagement(payload: Payload, reading: Reading) -> dict[str, Any]:
    views = next((p for p in _VIEWS if payload.get(p.split(".")[0]) is not None), _VIEWS[0])
    return {
        **spread(payload, reading, _COUNTS, extra_paths=_VIEWS),
        "extras": extras(payload, reading, {"views": views}),
    }


def _id_from_link(link: str | None) -> str | None:
    if link is None:
        return None
    mid, idx = _MID.search(link), _IDX.search(link)
    if mid is None:
        return None
    return f"{mid.group(1)}_{idx.group(1)}" if idx else mid.group(1)
