"""FeedPoller against feeds served by a local HTTP server: new entries, conditional GETs, bad feeds."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from schemas.events import AuthorType, Platform
from services.common.clock import FakeClock
from services.ingest.feeds import FeedConfig, FeedPoller

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
LAST_MODIFIED = "Sat, 21 Nov 2026 12:00:00 GMT"

RSS_ITEM = """
<item>
  <title>{title}</title>
  <link>https://news.example.cn/{n}.html</link>
  <guid isPermaLink="true">https://news.example.cn/{n}.html</guid>
  <pubDate>Sat, 21 Nov 2026 1{n}:00:00 +0800</pubDate>
  <description><![CDATA[<p>星河电器<b>回应</b>：第{n}条消息&nbsp;详情</p>]]></description>
</item>"""


def rss(*items: int) -> bytes:
    body = "".join(RSS_ITEM.format(n=n, title=f"星河冰箱爆炸事件进展{n}") for n in items)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
  <title>财经日报</title><link>https://news.example.cn/</link><description>财经</description>
  {body}
</channel></rss>""".encode()


ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>家电论坛 - 投诉区</title>
  <id>tag:bbs.example.cn,2026:complaints</id>
  <updated>2026-11-21T12:00:00Z</updated>
  <entry>
    <title>星河冰箱半夜爆了</title>
    <id>tag:bbs.example.cn,2026:thread-1</id>
    <link href="https://bbs.example.cn/thread-1-1-1.html"/>
    <author><name>暴躁老哥</name></author>
    <published>2026-11-21T21:00:00</published>
    <updated>2026-11-21T21:05:00+08:00</updated>
    <content type="html">&lt;p&gt;有没有一起维权的？&lt;/p&gt;</content>
  </entry>
  <entry>
    <title>星河售后电话打不通</title>
    <id>tag:bbs.example.cn,2026:thread-2</id>
    <link href="https://bbs.example.cn/thread-2-1-1.html"/>
    <updated>2026-11-21T13:30:00Z</updated>
    <summary>打了一下午都是忙音</summary>
  </entry>
</feed>""".encode()


def stable_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class Doc:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    status: int = 200


@dataclass
class Site:
    docs: dict[str, Doc] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    base: str = ""

    def requests_to(self, path: str) -> list[tuple[dict[str, str], int]]:
        return [(headers, status) for p, headers, status in self.seen if p == path]


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            doc = state.docs.get(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            if doc is None:
                status = 404
            elif doc.status != 200:
                status = doc.status
            elif (doc.etag and headers.get("if-none-match") == doc.etag) or (
                doc.last_modified and headers.get("if-modified-since") == doc.last_modified
            ):
                status = 304
            else:
                status = 200
            state.seen.append((self.path, headers, status))
            self.send_response(status)
            if status == 200 and doc is not None:
                self.send_header("Content-Type", doc.content_type)
                self.send_header("Content-Length", str(len(doc.body)))
                if doc.etag:
                    self.send_header("ETag", doc.etag)
                if doc.last_modified:
                    self.send_header("Last-Modified", doc.last_modified)
                self.end_headers()
                self.wfile.write(doc.body)
            else:
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as c:
        yield c


def poller(site: Site, client: httpx.AsyncClient, *feeds: tuple[str, str], **kwargs: Any) -> FeedPoller:
    configs = [FeedConfig(url=site.base + path, platform=platform) for path, platform in feeds]
    return FeedPoller(configs, client, clock=FakeClock(NOW), **kwargs)


async def test_first_poll_returns_every_entry_as_a_post(site, client):
    site.docs["/rss"] = Doc(rss(1, 2), etag='"v1"', last_modified=LAST_MODIFIED)
    site.docs["/atom"] = Doc(ATOM, content_type="application/atom+xml", etag='"a1"')
    feeds = poller(site, client, ("/rss", "news"), ("/atom", "forum"))

    posts = await feeds.poll_once()

    assert [p.post_id for p in posts] == [
        stable_id("https://news.example.cn/1.html"),
        stable_id("https://news.example.cn/2.html"),
        stable_id("tag:bbs.example.cn,2026:thread-1"),
        stable_id("tag:bbs.example.cn,2026:thread-2"),
    ]
    news = posts[0]
    assert news.platform is Platform.news
    assert news.text == "星河冰箱爆炸事件进展1\n星河电器回应：第1条消息 详情"
    assert news.author == "财经日报"
    assert news.author_type is AuthorType.media
    assert news.url == "https://news.example.cn/1.html"
    assert news.published_at == datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    # A feed has no counts: unknown (null), not 0.
    assert news.engagement.unknown == {"reposts", "comments", "likes"}
    assert news.engagement.total == 0
    assert news.event_time == NOW
    assert news.root_post_id is None

    thread = posts[2]
    assert thread.platform is Platform.forum
    assert thread.text == "星河冰箱半夜爆了\n有没有一起维权的？"
    assert thread.author == "暴躁老哥"
    assert thread.author_type is AuthorType.user
    assert thread.url == "https://bbs.example.cn/thread-1-1-1.html"
    # No offset in <published>: Beijing time, not UTC as feedparser would assume.
    assert thread.published_at == datetime(2026, 11, 21, 13, 0, tzinfo=UTC)
    assert posts[3].text == "星河售后电话打不通\n打了一下午都是忙音"
    assert posts[3].author == "家电论坛 - 投诉区"
    assert posts[3].published_at == datetime(2026, 11, 21, 13, 30, tzinfo=UTC)
    assert feeds.errors == {}


async def test_second_poll_is_conditional_and_a_304_gives_nothing(site, client):
    site.docs["/rss"] = Doc(rss(1, 2), etag='"v1"', last_modified=LAST_MODIFIED)
    site.docs["/atom"] = Doc(ATOM, content_type="application/atom+xml", last_modified=LAST_MODIFIED)
    feeds = poller(site, client, ("/rss", "news"), ("/atom", "forum"))
    assert len(await feeds.poll_once()) == 4

    assert await feeds.poll_once() == []

    (first, status1), (second, status2) = site.requests_to("/rss")
    assert "if-none-match" not in first
    assert "if-modified-since" not in first
    assert (second["if-none-match"], second["if-modified-since"], status1, status2) == (
        '"v1"',
        LAST_MODIFIED,
        200,
        304,
    )
    atom_headers, atom_status = site.requests_to("/atom")[1]
    assert (atom_headers["if-modified-since"], atom_status) == (LAST_MODIFIED, 304)
    assert "if-none-match" not in atom_headers


async def test_only_a_new_entry_is_returned(site, client):
    site.docs["/rss"] = Doc(rss(1, 2), etag='"v1"')
    feeds = poller(site, client, ("/rss", "news"))
    await feeds.poll_once()
    site.docs["/rss"] = Doc(rss(3, 1, 2), etag='"v2"')

    posts = await feeds.poll_once()

    assert [p.url for p in posts] == ["https://news.example.cn/3.html"]
    headers, status = site.requests_to("/rss")[1]
    assert (headers["if-none-match"], status) == ('"v1"', 200)  # the feed changed, so the answer is full
    assert await feeds.poll_once() == []


async def test_a_server_without_validators_still_gives_each_entry_once(site, client):
    site.docs["/rss"] = Doc(rss(1, 2))
    feeds = poller(site, client, ("/rss", "news"))
    assert len(await feeds.poll_once()) == 2
    assert await feeds.poll_once() == []
    assert all(status == 200 for _, status in site.requests_to("/rss"))


async def test_bad_feeds_are_errors_counted_not_crashes(site, client):
    site.docs["/rss"] = Doc(rss(1))
    site.docs["/html"] = Doc(b"<html><body>not a feed</body></html>", content_type="text/html")
    site.docs["/down"] = Doc(b"", status=500)
    site.docs["/broken"] = Doc(
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>A &amp B</title><link>https://x.example.cn/a</link></item><item><title>cut"
    )
    feeds = poller(site, client, ("/rss", "news"), ("/html", "news"), ("/down", "news"), ("/broken", "news"))
    feeds_gone = FeedPoller([FeedConfig(url="http://127.0.0.1:9/feed")], client, clock=FakeClock(NOW))

    posts = await feeds.poll_once()
    assert await feeds_gone.poll_once() == []

    # Entries feedparser recovers from broken XML are kept; the feed still counts an error.
    assert [p.url for p in posts] == ["https://news.example.cn/1.html", "https://x.example.cn/a"]
    assert feeds.errors == {site.base + "/html": 1, site.base + "/down": 1, site.base + "/broken": 1}
    assert feeds.last_error[site.base + "/html"] == "not an RSS or Atom feed"
    assert feeds.last_error[site.base + "/down"] == "HTTP 500"
    assert feeds.last_error[site.base + "/broken"].startswith("malformed feed")
    assert feeds_gone.errors == {"http://127.0.0.1:9/feed": 1}
    assert feeds_gone.last_error["http://127.0.0.1:9/feed"].startswith("fetch failed: ConnectError")

    await feeds.poll_once()
    assert feeds.errors[site.base + "/html"] == 2  # a failed feed earns no validators: refetched whole


async def test_seen_entries_are_bounded(site, client):
    site.docs["/rss"] = Doc(rss(1, 2, 3))
    feeds = poller(site, client, ("/rss", "news"), max_seen=2)
    assert len(await feeds.poll_once()) == 3
    site.docs["/rss"] = Doc(rss(2, 3))
    assert await feeds.poll_once() == []  # the two most recent are remembered
    site.docs["/rss"] = Doc(rss(1))
    # Entry 1 aged out of the memory, so it looks new: the limit must exceed what all feeds hold.
    assert [p.url for p in await feeds.poll_once()] == ["https://news.example.cn/1.html"]


def test_feed_platform_must_be_news_or_forum():
    with pytest.raises(ValidationError, match="platform"):
        FeedConfig(url="https://x.example.cn/rss", platform="weibo")


class KafkaDown(Exception):
    pass


async def test_entries_not_delivered_come_back_and_validators_wait_for_the_ack(site, client):
    site.docs["/rss"] = Doc(rss(1, 2), etag='"v1"', last_modified=LAST_MODIFIED)
    feeds = poller(site, client, ("/rss", "news"))
    delivered: list[str] = []
    broker_up = False

    async def deliver(posts):
        if not broker_up:
            raise KafkaDown("broker unreachable")
        delivered.extend(p.url for p in posts)

    assert await feeds.poll_once(deliver) == []
    assert feeds.errors == {site.base + "/rss": 1}
    assert "2 posts not delivered" in feeds.last_error[site.base + "/rss"]

    broker_up = True
    posts = await feeds.poll_once(deliver)

    # The second request carried no validators, so the feed answered in full rather than 304.
    _, (second, status) = site.requests_to("/rss")
    assert "if-none-match" not in second
    assert status == 200
    assert (
        [p.url for p in posts]
        == delivered
        == [
            "https://news.example.cn/1.html",
            "https://news.example.cn/2.html",
        ]
    )
    # Now delivered, the entries are remembered and the validators kept.
    assert await feeds.poll_once(deliver) == []
    headers, status = site.requests_to("/rss")[2]
    assert (headers["if-none-match"], status) == ('"v1"', 304)
    assert len(delivered) == 2


async def test_any_failure_of_one_feed_is_counted_and_the_others_are_polled(site, client):
    site.docs["/rss"] = Doc(rss(1))
    bad = ["http://[::1", "http://127.0.0.1:99999/feed", "ftp://x.example.cn/feed"]
    configs = [FeedConfig(url=u) for u in bad] + [FeedConfig(url=site.base + "/rss")]
    feeds = FeedPoller(configs, client, clock=FakeClock(NOW))

    posts = await feeds.poll_once()
    again = await feeds.poll_once()

    assert [p.url for p in posts] == ["https://news.example.cn/1.html"]
    assert again == []
    assert feeds.errors == dict.fromkeys(bad, 2)
    assert all(feeds.last_error[u] for u in bad)


async def test_a_feed_larger_than_the_cap_is_an_error_not_read(site, client):
    site.docs["/big"] = Doc(rss(*range(1, 10)))
    feeds = poller(site, client, ("/big", "news"), max_bytes=1000)
    assert await feeds.poll_once() == []
    assert feeds.last_error[site.base + "/big"] == "feed is larger than 1000 bytes; not read"


async def test_missing_or_implausible_feed_dates_are_unknown_and_cst_is_beijing(site, client):
    """A publication time the feed does not give truthfully is null, never the poll time (which is when
    the entry was seen: `event_time`)."""
    item = (
        "<item><title>{t}</title><link>https://news.example.cn/{t}.html</link><pubDate>{d}</pubDate></item>"
    )
    items = (
        "".join(
            item.format(t=t, d=d)
            for t, d in (
                ("cst", "Sat, 21 Nov 2026 10:00:00 CST"),
                ("epoch", "Thu, 01 Jan 1970 00:00:00 GMT"),
                ("future", "Sat, 21 Nov 2099 10:00:00 +0800"),
            )
        )
        + "<item><title>undated</title><link>https://news.example.cn/undated.html</link></item>"
    )
    site.docs["/rss"] = Doc(
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()
    )
    posts = await poller(site, client, ("/rss", "news")).poll_once()
    assert {p.post_id: p.published_at for p in posts} == {
        stable_id("https://news.example.cn/cst.html"): datetime(2026, 11, 21, 2, 0, tzinfo=UTC),
        stable_id("https://news.example.cn/epoch.html"): None,
        stable_id("https://news.example.cn/future.html"): None,
        stable_id("https://news.example.cn/undated.html"): None,
    }
    assert {p.event_time for p in posts} == {NOW}


@pytest.mark.parametrize("prefix", [b"\n", b"\r\n\r\n  ", b"\xef\xbb\xbf\n"])
async def test_a_feed_with_blank_lines_before_its_xml_declaration_is_no_poll_error(site, client, prefix):
    site.docs["/rss"] = Doc(prefix + rss(1, 2))
    feeds = poller(site, client, ("/rss", "news"))
    posts = await feeds.poll_once()
    assert [p.text.split("\n")[0] for p in posts] == ["星河冰箱爆炸事件进展1", "星河冰箱爆炸事件进展2"]
    assert feeds.errors == {}
