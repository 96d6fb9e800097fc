"""Settings errors name the variable and never show a secret or the environment; secrets have a minimum
length. The same rule is checked on the real CLI's output in tests/reliability/test_security.py."""

from __future__ import annotations

import pytest

from services.common.exceptions import ConfigError
from services.common.settings import MIN_SECRET_CHARS, load_settings, secret_fields
from services.desk.settings import DeskSettings
from services.escalation.settings import EscalationSettings
from services.ingest.settings import IngestSettings

INGEST = "ingest-secret-5d1c2b3a"
OPERATOR = "operator-secret-8e7f6a5b"
LINK = "link-secret-2c3d4e5f6a"
CONSOLE = "console-secret-9a8b7c6d"


def refusal(cls: type, **env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(cls, **env)
    return str(caught.value)


def test_the_secret_fields_are_known_by_their_type():
    kafka = {"kafka_sasl_password", "kafka_ssl_key_password"}
    assert secret_fields(IngestSettings) == {"ingest_tokens", *kafka}
    assert secret_fields(DeskSettings) == {
        "operator_tokens",
        "link_secret",
        "console_secret",
        "database_url",
        *kafka,
    }
    assert secret_fields(EscalationSettings) == {"link_secret", *kafka}


def test_a_rule_across_fields_does_not_print_the_settings_it_was_given():
    """The refusal of issue 20: the keys set, operator tokens empty, on 0.0.0.0."""
    message = refusal(
        DeskSettings,
        desk_host="0.0.0.0",  # noqa: S104
        operator_tokens="",
        link_secret=LINK,
        console_secret=CONSOLE,
    )
    assert "operator_tokens is empty" in message
    for secret in (LINK, CONSOLE):
        assert secret not in message
    assert "{" not in message  # no input dict at all


def test_a_bad_field_shows_its_value_unless_it_is_a_secret():
    message = refusal(IngestSettings, api_port="eighty", ingest_tokens="short")
    assert "YUQING_API_PORT: Input should be a valid integer" in message
    assert "(got 'eighty')" in message
    assert "YUQING_INGEST_TOKENS: Value error, token 1 of 1 is 5 characters" in message
    assert "short" not in message.replace("5 characters", "")


def test_secrets_shorter_than_the_minimum_are_refused_naming_the_setting():
    short = "x" * (MIN_SECRET_CHARS - 1)
    cases = {
        "YUQING_INGEST_TOKENS": (IngestSettings, {"ingest_tokens": f"{INGEST},{short}"}),
        "YUQING_OPERATOR_TOKENS": (DeskSettings, {"operator_tokens": short}),
        "YUQING_LINK_SECRET": (DeskSettings, {"link_secret": short}),
        "YUQING_CONSOLE_SECRET": (DeskSettings, {"console_secret": short}),
        "YUQING_LINK_SECRET ": (EscalationSettings, {"link_secret": short}),
    }
    for name, (cls, env) in cases.items():
        message = refusal(cls, **env)
        assert f"{name.strip()}: Value error" in message, message
        assert f"{MIN_SECRET_CHARS - 1} characters; at least {MIN_SECRET_CHARS}" in message
        assert short not in message
    long_enough = "y" * MIN_SECRET_CHARS
    assert load_settings(DeskSettings, operator_tokens=long_enough, link_secret=long_enough)
    # Empty means unset: no links, a random console key.
    assert load_settings(DeskSettings, link_secret="", console_secret="").link_secret is None


def test_the_console_key_cannot_be_the_link_key():
    message = refusal(DeskSettings, link_secret=LINK, console_secret=LINK)
    assert "YUQING_CONSOLE_SECRET is the same as YUQING_LINK_SECRET" in message
    assert LINK not in message


def test_logs_see_masks_and_scalars_only():
    logged = load_settings(IngestSettings, ingest_tokens=INGEST).masked()
    assert logged["ingest_tokens"] == "**********"
    assert logged["api_port"] == 8000
    assert INGEST not in str(logged)
    logged = load_settings(DeskSettings, operator_tokens=INGEST, link_secret=LINK).masked()
    assert logged["link_secret"] == "**********"
    assert logged["console_secret"] is None  # unset is worth knowing, and is no secret
    assert logged["desk_port"] == 8001
    assert LINK not in str(logged)


def test_an_error_cuts_a_long_value_short():
    message = refusal(IngestSettings, topic_prefix="!" + "h" * 500)
    assert "YUQING_TOPIC_PREFIX: String should match pattern" in message
    assert "(got '!" + "h" * 78 + "…)" in message
    assert "h" * 81 not in message
