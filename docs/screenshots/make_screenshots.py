"""Screenshots of the console for docs/screenshots/: the bundled sample crisis replayed through a real stack.

    .venv/bin/python docs/screenshots/make_screenshots.py

Starts an embedded broker (or uses YUQING_KAFKA_BOOTSTRAP), ingest, scoring, escalation and the desk
with four rule groups, replays the sample crisis at 270x, acknowledges two incidents the way an on-call
team would (a third is left to breach its short ack deadline), takes the main incident's statement
through one return to a second version waiting for review and lists its 回访 items, then photographs the
tier board, the incident list, an incident, its statement review (as an approver sees it), its 回访 list
and the ledger at 1280x800 and 375x812 in the system Chromium (apt-get install chromium fonts-noto-cjk).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.cli.demo import load_sample  # noqa: E402
from services.cli.runner import Stack  # noqa: E402
from services.common import json  # noqa: E402
from services.common.broker import EmbeddedBroker, free_port  # noqa: E402
from services.common.config import bundled_config_path  # noqa: E402
from tests.desk.browser import DESKTOP, PHONE, chromium  # noqa: E402

OUT = Path(__file__).resolve().parent
TOKEN = "screenshot-token"  # noqa: S105 - a throwaway token for a throwaway stack
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GROUPS = [
    {"name": "xinghe", "brands": ["星河电器", "星河空调", "星河冰箱", "星河"]},
    {"name": "xinghe-ac", "brands": ["星河空调"], "negatives": ["起火", "冒烟", "烧黑", "退款", "投诉"]},
    {"name": "xinghe-fridge", "brands": ["星河冰箱"], "negatives": ["避雷", "漏电", "质量问题", "投诉"]},
    {"name": "kuaidi", "brands": ["某快递"]},
]
SPEED = 270.0
ON_CALL, DRAFTER, APPROVER = "值班员 王芳", "市场负责人 王五", "总经理 赵六"
STATEMENT_V1 = (
    "关于星河空调起火事件的说明：\n我司已关注到网友反映的空调起火情况，正在全力核查，将尽快公布结果。"
)
STATEMENT_V2 = (
    "关于星河空调起火事件的致歉与处理说明：\n"
    "经核查，2026-08 批次部分空调电源模块存在过热隐患，我司深表歉意。\n"
    "即日起召回该批次全部产品，并为受影响用户全额退款，7 日内完成。客服热线 400-000-0000。"
)


def _config(workdir: Path) -> Path:
    config = yaml.safe_load(bundled_config_path().read_text(encoding="utf-8"))
    config["rules"]["groups"] = GROUPS
    # A short level-3 ack deadline, so that the pictures show a breached SLA in red as well.
    config["escalation"] = {
        "sla": {"level3": {"ack_minutes": 0.25, "response_minutes": 60}},
        "statement": {"approvers": [APPROVER, "法务负责人 周八"]},
    }
    alerts = str(workdir / "alerts.jsonl")
    config["notifier"] = {"channels": [{"name": "file", "type": "file", "path": alerts}]}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)
    return path


async def _replay(client: httpx.AsyncClient, api: str, posts: list[dict[str, Any]]) -> None:
    """Paced at compressed real time, as a live feed arrives (see `yuqing demo`)."""
    first = datetime.fromisoformat(posts[0]["event_time"])
    t0 = time.monotonic()
    batch: list[dict[str, Any]] = []
    for post in posts:
        due = (datetime.fromisoformat(post["event_time"]) - first).total_seconds() / SPEED
        if batch and time.monotonic() - t0 < due:
            (await client.post(f"{api}/v1/posts", content=json.dumps(batch))).raise_for_status()
            batch = []
            await asyncio.sleep(max(0.0, due - (time.monotonic() - t0)))
        batch.append(post)
    (await client.post(f"{api}/v1/posts", content=json.dumps(batch))).raise_for_status()


async def _until(what: str, check: Any, within: float = 90.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.5)
    raise RuntimeError(f"gave up waiting for {what}")


async def _respond(client: httpx.AsyncClient, api: str) -> str:
    """The on-call team's first steps; returns the xinghe incident to photograph."""

    async def incidents() -> dict[str, dict[str, Any]]:
        items = (await client.get(f"{api}/v1/incidents", headers=AUTH)).json()["items"]
        return {i["group"]: i for i in items}

    async def level1() -> bool:
        groups = (await client.get(f"{api}/v1/tiers", headers=AUTH)).json()["groups"]
        return any(g["group"] == "xinghe" and g["tier"] == 1 for g in groups)

    await _until("xinghe at level 1", level1)
    await _until("the xinghe incident", lambda: _has(incidents, {"xinghe"}))
    # The sub-brand groups share brand terms with xinghe; the matcher gives a shared mention's evidence to one
    # group only, so they may open no incident: act on those that did.
    await asyncio.sleep(5)
    present = set(await incidents())
    script = [
        ("xinghe", "ack", ON_CALL, "已收到，正在联系售后核实起火批次"),
        ("xinghe", "meeting_convened", "应急小组 李强", "紧急会议已召开，法务、客服、市场到会"),
        ("xinghe-ac", "ack", ON_CALL, "并入星河主事件处理"),
    ]
    for group, action, actor, comment in [step for step in script if step[0] in present]:
        incident = (await incidents())[group]
        body = {"action": action, "actor": actor, "comment": comment}
        url = f"{api}/v1/incidents/{incident['incident_id']}/actions"
        (await client.post(url, json=body, headers=AUTH)).raise_for_status()
        target = {"ack": "acknowledged", "meeting_convened": "meeting_convened"}[action]
        await _until(f"{group} {target}", lambda g=group, t=target: _state_is(incidents, g, t))
    if "xinghe-fridge" in present:
        await _until("xinghe-fridge past its ack deadline", lambda: _breached(incidents, "xinghe-fridge"))
    incident_id = str((await incidents())["xinghe"]["incident_id"])
    await _review_and_follow_up(client, api, incident_id)
    return incident_id


async def _review_and_follow_up(client: httpx.AsyncClient, api: str, incident_id: str) -> None:
    """A statement returned once and its second version waiting for the leadership group; a 回访 list of the
    top posts and a caller, one of them done."""
    url = f"{api}/v1/incidents/{incident_id}"

    async def act(body: dict[str, Any]) -> dict[str, Any]:
        resp = await client.post(f"{url}/actions", json=body, headers=AUTH)
        resp.raise_for_status()
        return dict(resp.json())

    async def detail() -> dict[str, Any]:
        return dict((await client.get(url, headers=AUTH)).json())

    async def statement_is(version: int, status: str) -> bool:
        versions = (await detail())["statement"]
        return bool(versions) and (versions[-1]["version"], versions[-1]["status"]) == (version, status)

    steps: list[tuple[dict[str, Any], int, str]] = [
        ({"action": "statement_drafted", "actor": DRAFTER, "text": STATEMENT_V1}, 1, "draft"),
        ({"action": "statement_submitted", "actor": DRAFTER, "version": 1}, 1, "submitted"),
        (
            {
                "action": "statement_returned",
                "actor": APPROVER,
                "version": 1,
                "comment": "须写明召回批次、退款方案与时间表",
            },
            1,
            "returned",
        ),
        ({"action": "statement_drafted", "actor": DRAFTER, "text": STATEMENT_V2}, 2, "draft"),
        ({"action": "statement_submitted", "actor": DRAFTER, "version": 2}, 2, "submitted"),
    ]
    for body, version, status in steps:
        await act(body)
        await _until(f"statement version {version} {status}", lambda v=version, s=status: statement_is(v, s))
    ledger = (await client.get(f"{api}/v1/ledger", params={"group": "xinghe"}, headers=AUTH)).json()["items"]
    top = max(ledger, key=lambda row: int(row["spread"]))
    due = (datetime.now(UTC) + timedelta(hours=20)).isoformat()
    items = [
        {
            "target": f"传播最广的帖子作者：{top['excerpt'][:30]}",
            "post": f"{top['platform']}:{top['post_id']}",
            "owner": "客服 小陈",
            "due_at": due,
        },
        {"target": "抖音用户（避雷视频）", "owner": "客服 小陈", "due_at": due},
        {"target": "电话投诉用户 138****0000", "owner": "客服 小刘", "due_at": due},
    ]
    added = [await act({"action": "follow_up_added", "actor": ON_CALL, "follow_up": item}) for item in items]

    async def listed(n: int) -> bool:
        return len((await detail())["follow_ups"]) == n

    await _until("three 回访 items", lambda: listed(3))
    await act(
        {
            "action": "follow_up_outcome",
            "actor": "客服 小陈",
            "item_id": added[0]["item_id"],
            "outcome": "done",
            "comment": "已全额退款并致歉",
        }
    )

    async def done() -> bool:
        return any(i["outcome"] == "done" for i in (await detail())["follow_ups"])

    await _until("a 回访 item done", done)


async def _has(incidents: Any, groups: set[str]) -> bool:
    return groups <= set(await incidents())


async def _breached(incidents: Any, group: str) -> bool:
    return any(d["status"] == "breached" for d in (await incidents())[group]["deadlines"])


async def _state_is(incidents: Any, group: str, state: str) -> bool:
    return bool((await incidents())[group]["state"] == state)


async def _photograph(api: str, incident_id: str) -> list[Path]:
    # (picture, page, who is logged in): the statement as the approver sees it, with the review buttons.
    pages = [
        ("board", "/console/board", ON_CALL),
        ("incidents", "/console/incidents", ON_CALL),
        ("incident", f"/console/incidents/{incident_id}", ON_CALL),
        ("statement", f"/console/incidents/{incident_id}/statement", APPROVER),
        ("follow-ups", f"/console/incidents/{incident_id}/follow-ups", ON_CALL),
        ("ledger", "/console/ledger", ON_CALL),
    ]
    written = []
    async with chromium() as browser:
        for device, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            sessions = {}
            for actor in (ON_CALL, APPROVER):
                context = await browser.new_context(
                    viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai", device_scale_factor=1
                )
                page = await context.new_page()
                await page.goto(f"{api}/console/login")
                await page.get_by_label("姓名").fill(actor)
                await page.get_by_label("运维令牌").fill(TOKEN)
                await page.get_by_role("button", name="登录").click()
                await page.wait_for_url(f"{api}/console/board")
                sessions[actor] = page
            for name, path, actor in pages:
                page = sessions[actor]
                await page.goto(f"{api}{path}")
                await page.wait_for_timeout(1500)  # the first countdown tick and the live indicator
                out = OUT / f"{name}-{device}.png"
                await page.screenshot(path=str(out))
                written.append(out)
            for page in sessions.values():
                await page.context.close()
    return written


async def _run() -> None:
    with tempfile.TemporaryDirectory(prefix="yuqing-shots-") as tmp:
        workdir = Path(tmp)
        env = {
            "YUQING_TOPIC_PREFIX": f"yuqing-shots-{int(time.time())}.",
            "YUQING_CONFIG_FILE": str(_config(workdir)),
            "YUQING_DATA_DIR": str(workdir),
            "YUQING_PARTITIONS": "3",
            "YUQING_LOG_LEVEL": "warn",
            "YUQING_OPERATOR_TOKENS": TOKEN,
        }
        stack = Stack(
            env=env,
            log_dir=workdir / "logs",
            api_port=free_port(),
            desk_port=free_port(),
            web_ports={s: free_port() for s in ("scoring", "escalation")},
        )
        if not os.environ.get("YUQING_KAFKA_BOOTSTRAP"):
            stack.broker = EmbeddedBroker(port=free_port(), home=workdir / "broker")
        await asyncio.to_thread(stack.start, ("ingest", "scoring", "escalation", "desk"))
        api, desk = f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.desk_port}"
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                await _until("the API", lambda: _ready(client, api), within=120)
                await _until("the desk", lambda: _ready(client, desk), within=120)
                await _replay(client, api, load_sample())
                incident_id = await _respond(client, desk)
            for path in await _photograph(desk, incident_id):
                print(f"wrote {path.relative_to(ROOT)}")
        finally:
            await asyncio.to_thread(stack.stop)


async def _ready(client: httpx.AsyncClient, api: str) -> bool:
    try:
        return (await client.get(f"{api}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    asyncio.run(_run())
