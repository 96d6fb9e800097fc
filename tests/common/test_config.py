from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import yaml

from services.common.broker import BrokerError, EmbeddedBroker
from services.common.config import load_config
from services.common.exceptions import ConfigError
from services.common.settings import CommonSettings, load_settings
from services.ingest.settings import IngestSettings


def test_bundled_config_has_plan_defaults():
    cfg = load_config()
    rules = {r.tier: (r.threshold, r.window_minutes) for r in cfg.tiers.rules}
    assert rules == {3: (10_000, 480), 2: (50_000, 240), 1: (100_000, 120)}
    assert cfg.escalation.sla.level1.response_minutes == 30
    assert cfg.escalation.sla.level2.response_minutes == 60


def test_config_error_names_file_and_field(tmp_path: Path):
    bad = tmp_path / "c.yaml"
    bad.write_text("rules:\n  groups:\n    - name: a\n      brands: []\n")
    with pytest.raises(ConfigError, match=r"rules\.groups\.0\.brands"):
        load_config(bad)
    bad.write_text("rules: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_tier_rules_must_cover_each_tier(tmp_path: Path):
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "rules: {groups: [{name: a, brands: [x]}]}\n"
        "tiers: {rules: [{tier: 1, threshold: 5, window_minutes: 5}]}\n"
    )
    with pytest.raises(ConfigError, match="one rule for each of tiers"):
        load_config(bad)


def test_world_readable_secrets_file_warns(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "rules: {groups: [{name: a, brands: [x]}]}\nnotifier:\n  channels:\n"
        "    - {name: w, type: webhook, url: 'http://x', secret: hunter2}\n"
    )
    os.chmod(path, 0o644)
    with pytest.warns(UserWarning, match="world-readable"):
        load_config(path)
    os.chmod(path, 0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_config(path)
    assert "hunter2" not in repr(cfg)


def test_bad_settings_name_the_env_var(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YUQING_PARTITIONS", "zero")
    with pytest.raises(ConfigError, match="YUQING_PARTITIONS"):
        load_settings(CommonSettings)


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YUQING_INGEST_TOKENS", "alpha-token-0123456789,beta-token-0123456789")
    s = load_settings(IngestSettings)
    assert [t.get_secret_value() for t in s.ingest_tokens] == [
        "alpha-token-0123456789",
        "beta-token-0123456789",
    ]
    assert "alpha" not in repr(s)
    assert "alpha" not in str(s.masked())


def test_broker_without_java_or_mvn_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("YUQING_CACHE_DIR", str(tmp_path / "cache"))
    broker = EmbeddedBroker(port=1, home=tmp_path)
    with pytest.raises(BrokerError, match="java not found"):
        broker._java()
    with pytest.raises(BrokerError, match="mvn not found"):
        broker.fetch()


@pytest.mark.parametrize(
    ("channel", "mode", "named"),
    [
        # Signing secret without the word "secret" anywhere else, group-readable only.
        ("{name: w, type: webhook, url: 'http://x', secret: hunter2}", 0o640, "channel 'w' secret"),
        # A robot URL is itself the credential.
        (
            "{name: ding, type: webhook, url: 'https://oapi.dingtalk.com/robot/send?access_token=abc'}",
            0o604,
            "channel 'ding' url",
        ),
        (
            "{name: fs, type: webhook, url: 'https://open.feishu.cn/open-apis/bot/v2/hook/"
            "0f9d5e1c-2b7a-4c1e-9f3a-8d6b5e4c3a21'}",
            0o644,
            "channel 'fs' url",
        ),
    ],
)
def test_a_config_holding_any_secret_warns_when_others_can_read_it(tmp_path: Path, channel, mode, named):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"rules: {{groups: [{{name: a, brands: [x]}}]}}\nnotifier:\n  channels:\n    - {channel}\n"
    )
    os.chmod(path, mode)
    with pytest.warns(UserWarning, match="group/world-readable") as caught:
        load_config(path)
    assert named in str(caught[0].message)
    os.chmod(path, 0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(path)


def test_a_readable_config_without_secrets_does_not_warn(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "rules: {groups: [{name: secret-recipes, brands: [x]}]}\nnotifier:\n  channels:\n"
        "    - {name: w, type: webhook, url: 'http://127.0.0.1:9000/alerts'}\n"
    )
    os.chmod(path, 0o644)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(path)


def test_deeply_nested_yaml_is_a_config_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rules:\n  groups: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: nested more than 100 levels deep at line 2"):
        load_config(path)
    path.write_text("rules:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)))
    with pytest.raises(ConfigError, match="nested more than 100 levels"):
        load_config(path)


def test_a_config_that_is_not_utf8_is_a_config_error_naming_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes("rules:\n  groups:\n    - name: 星河\n".encode("gbk"))
    with pytest.raises(
        ConfigError, match=r"c\.yaml: not UTF-8 text \(byte 0xd0 on line 3\); save it as UTF-8"
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        (
            "rules: {groups: [{name: a, brands: [x]}]}\nrules: {groups: [{name: b, brands: [y]}]}\n",
            "rules",
            "1 and 2",
        ),
        (
            "rules:\n  groups:\n    - name: a\n      brands: [x]\n      excluded: [试]\n      excluded: []\n",
            "excluded",
            "5 and 6",
        ),
        ("rules: {groups: [{name: a, brands: [x], name: b}]}\n", "name", "1 and 1"),
    ],
)
def test_a_key_twice_in_one_mapping_is_refused(tmp_path: Path, text: str, key: str, lines: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"key '{key}' appears twice in one mapping \(lines {lines}\)"):
        load_config(path)


def test_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    first = "    - &g {name: a, brands: [x], proximity: 5}\n"
    path.write_text("rules:\n  groups:\n" + first + "    - {<<: *g, name: b, proximity: 9}\n")
    assert [g.proximity for g in load_config(path).rules.groups] == [5, 9]


def _group_with(terms: int, cap: int | None = None) -> dict[str, object]:
    rules: dict[str, object] = {"groups": [{"name": "big", "brands": [f"brand{i}" for i in range(terms)]}]}
    if cap is not None:
        rules["max_terms_per_group"] = cap
    return {"rules": rules}


def test_terms_per_group_are_capped_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_group_with(1_001)))
    with pytest.raises(
        ConfigError, match=r"group 'big' lists 1,001 terms \(brands 1,001\); at most 1,000 per group"
    ):
        load_config(path)
    path.write_text(yaml.safe_dump(_group_with(1_000)))
    assert len(load_config(path).rules.groups[0].brands) == 1_000
    path.write_text(yaml.safe_dump(_group_with(1_500, cap=2_000)))  # an operator who needs more raises it
    assert len(load_config(path).rules.groups[0].brands) == 1_500
    path.write_text(yaml.safe_dump(_group_with(10, cap=100_000)))
    with pytest.raises(
        ConfigError, match=r"rules\.max_terms_per_group: Input should be less than or equal to 20000"
    ):
        load_config(path)


def test_negatives_required_and_excluded_count_towards_the_cap(tmp_path: Path) -> None:
    config = _group_with(400, cap=1_000)
    group = config["rules"]["groups"][0]  # type: ignore[index]
    group.update(
        negatives=[f"neg{i}" for i in range(300)],
        required=[f"req{i}" for i in range(200)],
        excluded=[f"exc{i}" for i in range(101)],
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(
        ConfigError, match=r"1,001 terms \(brands 400, negatives 300, required 200, excluded 101\)"
    ):
        load_config(path)
