"""The desk app without a broker: its settings at start-up, the body limit of its POST routes, auth first."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from schemas.events import IncidentAction, TierOverride
from services.common.config import load_config
from services.common.exceptions import ConfigError
from services.common.settings import load_settings
from services.desk.settings import DeskSettings
from tests.desk.world import TOKEN, desk_app


class Collect:
    def __init__(self) -> None:
        self.sent: list[IncidentAction | TierOverride] = []

    async def action(self, group: str, action: IncidentAction) -> None:
        self.sent.append(action)

    async def override(self, group: str, command: TierOverride) -> None:
        self.sent.append(command)


@pytest.mark.parametrize("path", ["/v1/tiers/g/override", "/v1/incidents/i/actions"])
def test_operator_posts_have_their_own_limit(path):
    published = Collect()
    with TestClient(desk_app(load_config(), published, max_operator_body_bytes=500)) as client:
        big = {"actor": "老王", "comment": "x" * 600, "action": "ack", "tier": 1}
        resp = client.post(path, json=big, headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 413
        assert "the limit is 500" in resp.json()["detail"]
        # Auth still comes first: no token learns nothing about the limit.
        assert client.post(path, json=big).status_code == 401
    assert not published.sent


def test_an_override_is_published_keyed_by_its_group():
    published = Collect()
    with TestClient(
        desk_app(load_config(), published), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        resp = client.post("/v1/tiers/xinghe/override", json={"tier": None, "actor": "张三"})
    assert resp.status_code == 202
    assert [(type(c).__name__, c.event_id) for c in published.sent] == [
        ("TierOverride", resp.json()["event_id"])
    ]


def test_an_open_desk_is_a_loud_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="services.desk.app"):
        desk_app(load_config(), Collect(), operator_tokens=())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith("AUTH IS OFF for the operator routes and the console")


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "desk.example.cn", "::"])  # noqa: S104
def test_a_reachable_desk_without_tokens_refuses_to_start(host):
    with pytest.raises(ConfigError, match="operator_tokens is empty") as caught:
        load_settings(DeskSettings, desk_host=host)
    assert "YUQING_ALLOW_NO_AUTH" in str(caught.value)
    assert load_settings(DeskSettings, desk_host=host, operator_tokens=TOKEN).desk_host == host
    assert load_settings(DeskSettings, desk_host=host, allow_no_auth=True).allow_no_auth


def test_settings_name_the_desk_port_and_refuse_a_shared_key(monkeypatch):
    assert load_settings(DeskSettings).desk_port == 8001
    monkeypatch.setenv("YUQING_DESK_PORT", "99999")
    with pytest.raises(ConfigError, match="YUQING_DESK_PORT"):
        load_settings(DeskSettings)
    monkeypatch.delenv("YUQING_DESK_PORT")
    key = "one-key-for-everything-0123"
    with pytest.raises(ConfigError, match="YUQING_CONSOLE_SECRET is the same as YUQING_LINK_SECRET"):
        load_settings(DeskSettings, link_secret=key, console_secret=key)
