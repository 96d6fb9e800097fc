"""Headless Chromium for the console tests: the system browser (Debian's `chromium`), never a download."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}


def require_chromium() -> None:
    """Skip on a developer machine without Chromium; in CI a missing browser is a broken install step."""
    if os.path.exists(CHROMIUM):
        return
    message = f"no system Chromium at {CHROMIUM}: apt-get install chromium fonts-noto-cjk (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # Chromium starts its GPU and network helpers with the first page: start them here, so that they are
        # the fixture's processes and not taken for ones the first test left running.
        warm = await browser.new_page()
        await warm.close()
        try:
            yield browser
        finally:
            await browser.close()
