"""Settings come from defaults, a TOML file, the environment and the CLI, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.__main__ import _safe_url, parse_args
from gateway.settings import load_settings


def test_defaults_are_the_plugins() -> None:
    s = load_settings()
    assert (s.port, s.ws_path, s.ws_frame, s.compress) == (15674, "/ws", "text", True)
    assert (s.default_user, s.default_pass.get_secret_value(), s.default_vhost) == (
        "guest",
        "guest",
        "/",
    )
    assert s.default_topic_exchange == "amq.topic" and s.default_nack_requeue is True
    assert s.login_timeout == 10.0 and s.max_frame_size_unauthenticated == 65536
    assert s.loopback_users == ["guest"]


def test_toml_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('port = 16000\nws_frame = "binary"\ndefault_vhost = "toml"\nws_path = "/stomp"\n')
    monkeypatch.setenv("GATEWAY_DEFAULT_VHOST", "env")
    monkeypatch.setenv("GATEWAY_LOOPBACK_USERS", '["guest", "admin"]')
    s = load_settings(str(config), port=17000)
    assert s.port == 17000  # CLI beats everything
    assert s.default_vhost == "env"  # env beats the file
    assert s.ws_frame == "binary" and s.ws_path == "/stomp"  # from the file
    assert s.loopback_users == ["guest", "admin"]


def test_unknown_keys_and_bad_values_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ValidationError):
        load_settings(str(config))
    with pytest.raises(ValidationError):
        load_settings(ws_frame="utf8")
    with pytest.raises(FileNotFoundError):
        load_settings(str(tmp_path / "missing.toml"))


def test_settings_are_frozen_and_passcode_hidden() -> None:
    s = load_settings()
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]
    assert "guest" not in repr(s.default_pass)


def test_cli_arguments() -> None:
    args = parse_args(
        ["--host", "127.0.0.1", "--port", "0", "--amqp-url", "amqp://h/", "--log-level", "debug"]
    )
    assert (args.host, args.port, args.amqp_url, args.log_level) == ("127.0.0.1", 0, "amqp://h/", "debug")


def test_amqp_url_password_never_logged() -> None:
    assert _safe_url("amqp://user:secret@host:5672/") == "amqp://user@host:5672/"
    assert _safe_url("amqp://host/") == "amqp://host/"
