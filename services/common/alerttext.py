"""Text from the public inside an alert: inert in every robot's markdown, and no link that a post chose.

An alert's body is markdown that reaches people through four dialects: WeCom robot markdown, DingTalk robot
markdown (and its actionCard text), Feishu card `lark_md`, and the text and HTML parts of an email. They
disagree on what is markup and on how to escape it:

- links `[text](url)` and autolinked bare URLs in all of them, images `![](url)` in DingTalk;
- mentions `<@userid>` in WeCom and `<at id=all></at>` in Feishu; `<font color=…>` in all three robots;
- headings `#`, quotes `>` and list items at the start of a line; emphasis `*`, `_`, `~`; code `` ` ``;
- escapes: Feishu honours a backslash, WeCom and DingTalk document none (a backslash may show, or vanish).

So no escape is right for all of them, and one that a dialect ignores is an injection. Instead, every
ASCII character that is markup in any of them becomes its full-width form (U+FF01-U+FF5E), which none of
them interprets and which reads the same to a person: `[确认处理](https://x)` arrives as
`［确认处理］（https：//x）`. The colon and the dot between a letter or digit and a letter are among them, so
no scheme or host name is left for a client to autolink. Line and paragraph breaks become spaces, so a post
cannot open a heading, a quote or a list item of its own, and invisible format characters (zero-width
joiners, bidi overrides) are dropped.

A post's own link is shown only as `post_ref` makes it: a fixed label over an https URL on a platform's own
host, rebuilt with every character that could end the link percent-encoded, or else inert text.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse

__all__ = ["POST_LABEL", "inert", "post_ref"]

POST_LABEL = "原帖 post"
# Markup in at least one dialect; `.` is handled apart (only inside host-like words).
_MARKUP = "!#$&()*:<>@[\\]_`{|}~"
_FULLWIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in _MARKUP})
_HOST_DOT = re.compile(r"(?<=[0-9A-Za-z])\.(?=[A-Za-z])")
_SPACES = re.compile(r"\s+")
_HOST = re.compile(r"^[a-z0-9.-]+$")
# The platforms' own sites, where adapters point a post's link; a subdomain of one of them is theirs too.
_PLATFORM_HOSTS = (
    "weibo.com",
    "weibo.cn",
    "weixin.qq.com",
    "douyin.com",
    "xiaohongshu.com",
    "zhihu.com",
    "bilibili.com",
)
# Characters a rebuilt link may keep as they are; anything else (brackets, parentheses, quotes, spaces,
# angle brackets, backslashes) is percent-encoded so that it cannot end the markdown link or open a tag.
_URL_SAFE = "/-._~%=&+,;:"


def inert(text: object, limit: int = 200) -> str:
    """`text` as one line of at most `limit` characters that no robot, mail client or markdown renders as
    anything but text."""
    chars = []
    for ch in str(text or ""):
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp"):
            chars.append(" ")  # newlines, tabs and other controls: a post stays on its line
        elif category != "Cf":  # zero-width and bidi controls hide or reorder what a person reads
            chars.append(ch)
    line = _SPACES.sub(" ", "".join(chars)).strip()
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return _HOST_DOT.sub("．", line.translate(_FULLWIDTH))


def post_ref(url: object) -> str:
    """A post's link for an alert: `[原帖 post](https://…)` when it is https on a platform's own host, else
    the URL as inert text (news sites and forums are anyone's), else '' when there is none."""
    if not url:
        return ""
    raw = str(url)
    try:
        parts = urllib.parse.urlsplit(raw)
        port = parts.port
    except ValueError:
        return inert(raw, 120)
    host = (parts.hostname or "").rstrip(".")
    # Letters, digits, dots and hyphens only: a backslash or a full stop lookalike in the host is read by
    # some browsers as a path or a dot, and could leave the platform's site.
    ours = bool(_HOST.match(host)) and any(host == h or host.endswith("." + h) for h in _PLATFORM_HOSTS)
    if parts.scheme != "https" or not ours or parts.username or parts.password or port not in (None, 443):
        return inert(raw, 120)
    path = urllib.parse.quote(parts.path or "/", safe=_URL_SAFE)
    query = urllib.parse.quote(parts.query, safe=_URL_SAFE + "?")
    link = f"https://{host}{path}" + (f"?{query}" if query else "")
    return f"[{POST_LABEL}]({link})"
