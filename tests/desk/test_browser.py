"""The console in headless Chromium against a running stack: log in, watch the board go up live, acknowledge
the incident with its button, export the ledger, and fit a 375 px phone screen."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from schemas.events import Tier, TierChange
from services.common import json
from tests.conftest import produce, write_config
from tests.desk.browser import DESKTOP, PHONE, chromium, require_chromium
from tests.integration.test_live_spread import FAST, XINGHE, _post
from tests.integration.test_pipeline import crisis_posts, wait_ready

pytestmark = pytest.mark.kafka

TOKEN = "op-e2e-token-4f2a"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with chromium() as b:
        yield b


async def test_console_end_to_end(browser, stack_factory, tmp_path):
    config = write_config(tmp_path / "c.yaml")
    stack = stack_factory(
        config,
        services=("ingest", "scoring", "escalation", "desk"),
        extra_env={"YUQING_OPERATOR_TOKENS": TOKEN},
    )
    api, desk = f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(api, stack)
    await wait_ready(desk, stack)
    context = await browser.new_context(
        viewport=DESKTOP, locale="zh-CN", timezone_id="Asia/Shanghai", accept_downloads=True
    )
    page = await context.new_page()

    # Log in: a wrong token is refused, the right one lands on the page first asked for.
    await page.goto(f"{desk}/console/board")
    assert page.url.startswith(f"{desk}/console/login?next=")
    await page.get_by_label("姓名").fill("值班员 王芳")
    await page.get_by_label("运维令牌").fill("not-the-token")
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("alert")).to_contain_text("令牌无效")
    await page.get_by_label("运维令牌").fill(TOKEN)
    await page.get_by_role("button", name="登录").click()
    await expect(page).to_have_url(f"{desk}/console/board")
    await expect(page.get_by_role("link", name="等级看板")).to_have_attribute("aria-current", "page")

    # The tier board follows the crisis as posts arrive, without a reload.
    card = page.locator(".card", has=page.get_by_role("heading", name="xinghe"))
    await expect(card.locator(".badge")).to_have_text("正常")
    await page.evaluate("window.sameDocument = true")
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{api}/v1/posts", json=crisis_posts(datetime.now(UTC)))
    assert resp.status_code == 202, resp.text
    await expect(card.locator(".badge")).to_have_text("一级 重大", timeout=90_000)
    assert await page.evaluate("window.sameDocument === true")
    two_hours = await card.locator('[data-window="2h"]').inner_text()
    assert int(two_hours.replace(",", "")) > 100_000  # the counts of the change to level 1
    await expect(card.locator("svg.spark circle")).to_have_count(3)  # level 3, 2, 1
    await expect(page.locator("#announce")).to_contain_text("xinghe：一级 重大")

    # The incident: from the list to its page, acknowledged with the button; the state changes live.
    await page.get_by_role("link", name="事件", exact=True).click()
    row = page.locator("tbody tr", has_text="xinghe")
    await expect(row).to_have_count(1, timeout=60_000)
    await expect(row.locator(".deadline").first).to_be_visible()
    await row.get_by_role("link").click()
    state = page.locator(".summary .state")
    await expect(state).to_have_text("待确认", timeout=30_000)
    ack = page.get_by_role("button", name="确认收到")
    await expect(ack).to_be_enabled()
    await page.get_by_label("备注（可选）").fill("已收到，正在核实")
    await ack.click()
    await expect(page.locator(".notice")).to_contain_text("已提交「确认收到」")
    await expect(state).to_have_text("已确认", timeout=60_000)
    await expect(ack).to_be_disabled()
    await expect(page.locator("[data-current-state]")).to_have_text("已确认")
    await expect(page.get_by_role("button", name="已召开紧急会议")).to_be_enabled()  # level 1: the meeting
    await expect(page.locator(".timeline li").first).to_contain_text("值班员 王芳")
    await expect(page.locator(".deadline.met")).to_contain_text("确认收到")
    incident_path = page.url.removeprefix(desk).split("?")[0]

    # The post-mortem report embeds the report route's page.
    await page.get_by_role("link", name="复盘报告").click()
    report = page.frame_locator("iframe.report")
    await expect(report.locator("body")).to_contain_text("xinghe")

    # The ledger: filter, then export what the filter shows as CSV.
    await page.get_by_role("link", name="台账").click()
    await page.get_by_label("平台").select_option("weibo")
    await page.get_by_role("button", name="筛选").click()
    await expect(page.locator("[data-total]")).to_have_text("11")
    async with page.expect_download() as info:
        await page.get_by_role("link", name="导出 CSV").click()
    download = await info.value
    assert download.suggested_filename == "ledger.csv"
    saved = tmp_path / "ledger.csv"
    await download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert len(rows) == 11
    assert {r["platform"] for r in rows} == {"weibo"}
    assert {r["post_id"] for r in rows} == {f"wb{i}" for i in range(1, 12)}
    assert all("星河空调起火" in r["excerpt"] for r in rows)
    assert max(int(r["spread"]) for r in rows) == 5000 * 11

    # A phone: the same session, and no page is wider than the screen.
    phone = await browser.new_context(viewport=PHONE, storage_state=await context.storage_state())
    small = await phone.new_page()
    for path in ("/console/board", "/console/incidents", incident_path, "/console/ledger"):
        await small.goto(f"{desk}{path}")
        await expect(small.locator("h1")).to_be_visible()
        width = await small.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
    await phone.close()
    await context.close()


DRAFTER, APPROVER = "市场负责人 王五", "总经理 赵六"


async def _login(browser: Browser, desk: str, actor: str, phone: bool = False) -> Page:
    size = PHONE if phone else DESKTOP
    context = await browser.new_context(
        viewport={"width": size["width"], "height": size["height"]},
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )
    page = await context.new_page()
    await page.goto(f"{desk}/console/login")
    await page.get_by_label("姓名").fill(actor)
    await page.get_by_label("运维令牌").fill(TOKEN)
    await page.get_by_role("button", name="登录").click()
    await expect(page).to_have_url(f"{desk}/console/board")
    return page


async def test_statement_drafted_returned_approved_and_published_by_two_people(
    browser, stack_factory, kafka, topics, tmp_path
):
    """经领导小组审核 in the browser: a drafter and an approver, each logged in; every step shows on the
    other's page without a reload, and only the approver gets the review buttons."""
    config = write_config(tmp_path / "c.yaml", escalation={"statement": {"approvers": [APPROVER]}})
    stack = stack_factory(
        config, services=("escalation", "desk"), extra_env={"YUQING_OPERATOR_TOKENS": TOKEN}
    )
    desk = f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(desk, stack)
    await produce(kafka, topics.tier_changes, [(b"xinghe", json.dumps(level2_change()))])
    drafter = await _login(browser, desk, DRAFTER)
    approver = await _login(browser, desk, APPROVER)

    await drafter.get_by_role("link", name="事件", exact=True).click()
    await expect(drafter.locator("tbody tr", has_text="xinghe")).to_have_count(1, timeout=60_000)
    await drafter.locator("tbody tr", has_text="xinghe").get_by_role("link").click()
    await drafter.get_by_role("link", name="声明审核").click()
    statement_url = drafter.url
    status = drafter.locator("[data-statement-status]")

    # A first draft, submitted; the drafter gets no review buttons.
    await drafter.get_by_label("声明全文").fill("我司高度重视，正在核查。\n感谢各位监督。")
    await drafter.get_by_role("button", name="保存为新版本").click()
    await expect(status).to_have_text("草稿", timeout=30_000)
    await drafter.get_by_role("button", name="提交领导小组审核（第 1 版）").click()
    await expect(status).to_have_text("待领导小组审核", timeout=30_000)
    await expect(drafter.get_by_role("button", name="批准第 1 版")).to_have_count(0)

    # The approver returns it with a comment; the drafter's page follows.
    await approver.goto(statement_url)
    await approver.get_by_label("审核意见（退回时必填）").fill("补充召回批次与时间表")
    await approver.get_by_role("button", name="退回修改").click()
    await expect(approver.locator("[data-statement-status]")).to_have_text("已退回修改", timeout=30_000)
    await expect(status).to_have_text("已退回修改", timeout=30_000)
    await expect(drafter.locator(".review-comment").first).to_contain_text("补充召回批次与时间表")

    # The second version; the approver sees what changed, character by character, and approves it.
    await drafter.get_by_label("声明全文").fill(
        "我司高度重视，已召回 2026-08 批次，7 日内完成退款。\n感谢各位监督。"
    )
    await drafter.get_by_role("button", name="保存为新版本").click()
    await expect(drafter.locator("[data-statement-version]")).to_have_text("2", timeout=30_000)
    await drafter.get_by_role("button", name="提交领导小组审核（第 2 版）").click()
    approve = approver.get_by_role("button", name="批准第 2 版")
    await expect(approve).to_be_enabled(timeout=30_000)
    diff = approver.locator("[data-live-view=statement] .diff")
    await expect(diff.locator("del")).to_have_text("正在核查")
    await expect(diff.locator("ins")).to_have_text("已召回 2026-08 批次，7 日内完成退款")
    await approve.click()
    await expect(status).to_have_text("已批准，待发布", timeout=30_000)

    # Published by the drafter: the incident's statement deadline is met and its state moves.
    await drafter.get_by_label("发布渠道与链接（可选）").fill("官方微博、官网")
    await drafter.get_by_role("button", name="发布第 2 版").click()
    await expect(status).to_have_text("已发布", timeout=30_000)
    await drafter.get_by_role("link", name="← 返回事件").click()
    await expect(drafter.locator(".summary .state")).to_have_text("已发声回应", timeout=30_000)
    await expect(drafter.locator(".deadline.met", has_text="发声回应")).to_have_count(1)
    versions = drafter.locator("[data-statement-summary]")
    await expect(versions).to_have_text("第 2 版 · 已发布")

    # A phone: the statement page fits the screen.
    phone = await _login(browser, desk, APPROVER, phone=True)
    await phone.goto(statement_url)
    await expect(phone.locator("h1")).to_be_visible()
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for page in (drafter, approver, phone):
        await page.context.close()


def level2_change() -> TierChange:
    now = datetime.now(UTC)
    return TierChange(
        event_time=now,
        group="xinghe",
        previous=Tier.none,
        tier=Tier.level2,
        direction="up",
        reason="threshold",
        window_end=now,
        counts={"4h": 60_000},
        detected_at=now,
    )


async def test_the_live_board_moves_between_tier_changes(browser, stack_factory, kafka, topics, tmp_path):
    config = write_config(tmp_path / "c.yaml", rules=XINGHE)
    stack = stack_factory(
        config,
        services=("scoring", "desk"),
        partitions=1,
        extra_env={"YUQING_OPERATOR_TOKENS": TOKEN, **FAST},
    )
    desk = f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(desk, stack)
    page = await _login(browser, desk, "值班员 王芳")
    card = page.locator(".card", has=page.get_by_role("heading", name="xinghe"))
    await page.evaluate("window.sameDocument = true")
    now = datetime.now(UTC)
    await produce(kafka, topics.posts_raw, [_post("p1", 11_000, now)])
    await expect(card.locator(".badge")).to_have_text("三级 一般", timeout=60_000)
    await expect(card.locator('[data-window="2h"]')).to_have_text("11,000")

    # More spread, no tier change: the counts, the minute sparkline and the top posts move on their own.
    await produce(kafka, topics.posts_raw, [_post("p2", 7_000, now)])
    await expect(card.locator('[data-window="2h"]')).to_have_text("18,000", timeout=30_000)
    await expect(card.locator(".badge")).to_have_text("三级 一般")
    assert await page.evaluate("window.sameDocument === true")
    await expect(card.locator('svg[data-spark="minutes"]')).to_be_visible()
    await expect(card.locator("svg.spark circle")).to_have_count(1)  # one tier change so far
    top = card.locator(".top-posts a").first
    await expect(top).to_have_attribute("data-post", "weibo:p1")
    await top.click()
    await expect(page).to_have_url(f"{desk}/console/ledger?group=xinghe&post=weibo%3Ap1")
    await expect(page.locator("[data-total]")).to_have_text("1")
    await page.context.close()
