"""Settings: one frozen object built once at start and passed down.

Sources, highest first: explicit values (the CLI), environment (``GATEWAY_`` prefix,
``__`` for nesting), a TOML file (``--config FILE`` or ``GATEWAY_CONFIG``), defaults.
Key names follow ``rabbitmq.conf``'s ``web_stomp.*`` / ``stomp.*`` keys where one
exists (``web_stomp.ws_path`` -> ``ws_path``, ``stomp.default_user`` ->
``default_user``, ...), and the defaults are the plugin's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    # -- listener (web_stomp.tcp.ip / web_stomp.tcp.port / web_stomp.ws_path) ----------
    host: str = Field("0.0.0.0", description="Bind address (web_stomp.tcp.ip).")
    port: int = Field(15674, ge=0, le=65535, description="WebSocket port (web_stomp.tcp.port).")
    ws_path: str = Field("/ws", description="Upgrade path (web_stomp.ws_path).")
    ws_frame: Literal["text", "binary"] = Field(
        "text", description="Opcode of every outbound message (web_stomp.ws_frame)."
    )
    compress: bool = Field(True, description="permessage-deflate (web_stomp.ws_opts.compress).")
    idle_timeout: float = Field(
        60.0,
        ge=0,
        description="Close a socket with no inbound bytes for this long, seconds; 0 = never "
        "(web_stomp.ws_opts.idle_timeout, in ms there).",
    )

    # -- broker -------------------------------------------------------------------------
    amqp_url: str = Field(
        "amqp://127.0.0.1:5672/",
        description="RabbitMQ to talk to; user and password in it are ignored: every "
        "session logs in with its own credentials.",
    )
    connect_timeout: float = Field(10.0, gt=0, description="AMQP connection timeout, seconds.")

    # -- STOMP (stomp.*) ----------------------------------------------------------------
    default_user: str | None = Field("guest", description="stomp.default_user")
    default_pass: SecretStr = Field(SecretStr("guest"), description="stomp.default_pass")
    default_vhost: str = Field("/", description="stomp.default_vhost")
    default_topic_exchange: str = Field("amq.topic", description="stomp.default_topic_exchange")
    default_nack_requeue: bool = Field(True, description="stomp.default_nack_requeue")
    hide_server_info: bool = Field(False, description="stomp.hide_server_info")
    login_timeout: float = Field(
        10.0,
        ge=0,
        description="Close sockets that do not CONNECT in time, seconds (stomp.login_timeout, ms there); 0 = never.",
    )
    loopback_users: list[str] = Field(
        default_factory=lambda: ["guest"],
        description="Users allowed only from a loopback client address (RabbitMQ's loopback_users).",
    )
    trailing_lf: bool = Field(
        True, description="LF after each outbound frame's NUL (rabbitmq_stomp.trailing_lf)."
    )

    # -- limits (stomp.max_frame_size, stomp.max_frame_size_unauthenticated, parser limits)
    max_frame_size: int = Field(4 * 1024 * 1024, gt=0, description="stomp.max_frame_size")
    max_frame_size_unauthenticated: int = Field(
        65536, gt=0, description="stomp.max_frame_size_unauthenticated"
    )
    max_headers: int = Field(
        100, gt=0, description="Headers per frame (rabbitmq_stomp max_headers)."
    )
    max_header_length: int = Field(102400, gt=0, description="Bytes per header name or value.")
    max_body_length: int = Field(104857600, gt=0, description="Bytes per frame body.")

    # -- operations -----------------------------------------------------------------------
    static_dir: Path | None = Field(
        None,
        description="Directory served at / (the demo page); default: static/ beside the "
        "gateway package (a source checkout). The Docker image sets it.",
    )
    log_level: LogLevel = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get() or os.environ.get("GATEWAY_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


class _ConfigFile:
    """The TOML file chosen on the command line, read by settings_customise_sources."""

    def __init__(self) -> None:
        self.path: str | None = None

    def get(self) -> str | None:
        return self.path


_config_file = _ConfigFile()


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Build the one Settings object: CLI overrides > env > TOML file > defaults."""
    if config_file is not None and not Path(config_file).is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")
    _config_file.path = config_file
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _config_file.path = None
