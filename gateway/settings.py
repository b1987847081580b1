"""Settings: one frozen object built once at start and passed down.

Sources, highest first: explicit values (the CLI), environment (``GATEWAY_`` prefix,
``__`` for nesting), a TOML file (``--config FILE`` or ``GATEWAY_CONFIG``), defaults.
Key names follow ``rabbitmq.conf``'s ``web_stomp.*`` / ``stomp.*`` keys where one
exists (``web_stomp.ws_path`` -> ``ws_path``, ``stomp.default_user`` ->
``default_user``, ...), and the defaults are the plugin's.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

LogLevel = Literal["debug", "info", "warning", "error"]


def _strip_verify(value: Any) -> Any:
    """rabbitmq.conf spells it verify_none / verify_peer; accept none / peer too."""
    if isinstance(value, str) and value.startswith("verify_"):
        return value.removeprefix("verify_")
    return value


class DestinationRule(BaseModel):
    """One ``[[rules]]`` entry: who it applies to and which destinations it names.

    Patterns are destination globs (``*`` = any characters but ``/``, ``**`` = any
    characters, ``{user}`` = the session's login); see ``gateway.rules``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: list[str] = Field(
        default_factory=list, description="Logins (globs; \"*\" = everyone) it applies to."
    )
    groups: list[str] = Field(
        default_factory=list, description="Names of ``groups`` entries it applies to."
    )
    allow_read: list[str] = Field(default_factory=list, description="SUBSCRIBE allowed.")
    allow_write: list[str] = Field(default_factory=list, description="SEND allowed.")
    deny: list[str] = Field(default_factory=list, description="Neither (wins over allow).")


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

    # -- plain STOMP over TCP / TLS (stomp.listeners.tcp.* / stomp.listeners.ssl.*) -----
    # Off unless configured (the plugin's ports are 61613 and 61614).
    tcp_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="STOMP-over-TCP port, off when unset (stomp.listeners.tcp.default; "
        "rabbitmq_stomp uses 61613).",
    )
    tcp_host: str | None = Field(
        None, description="Bind address of the TCP and TLS listeners (default: host)."
    )
    tcp_ssl_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="STOMP-over-TLS port, off when unset (stomp.listeners.ssl.default; "
        "rabbitmq_stomp uses 61614). Needs ssl_certfile and ssl_keyfile.",
    )
    ssl_certfile: Path | None = Field(None, description="PEM certificate (ssl_options.certfile).")
    ssl_keyfile: Path | None = Field(None, description="PEM private key (ssl_options.keyfile).")
    ssl_password: SecretStr | None = Field(
        None, description="Password of an encrypted keyfile (ssl_options.password)."
    )
    ssl_cacertfile: Path | None = Field(
        None, description="PEM CA bundle for client certificates (ssl_options.cacertfile)."
    )
    ssl_verify: Annotated[Literal["none", "peer"], BeforeValidator(_strip_verify)] = Field(
        "none",
        description="Ask clients for a certificate and verify it: none | peer "
        "(ssl_options.verify = verify_none | verify_peer; both spellings accepted).",
    )
    ssl_fail_if_no_peer_cert: bool = Field(
        False,
        description="With ssl_verify=peer, refuse clients without a certificate "
        "(ssl_options.fail_if_no_peer_cert).",
    )

    # -- broker -------------------------------------------------------------------------
    amqp_url: str = Field(
        "amqp://127.0.0.1:5672/",
        description="RabbitMQ to talk to; several (cluster nodes) comma-separated, tried in "
        "turn. User and password in it are ignored: every session logs in with its own "
        "credentials. ?heartbeat=N sets the AMQP heart-beat (default 10 s).",
    )
    amqp_urls: list[str] = Field(
        default_factory=list,
        description="The broker URLs as a list (TOML); when set, amqp_url is ignored.",
    )
    connect_timeout: float = Field(
        5.0, gt=0, description="AMQP connection timeout per broker URL, seconds."
    )
    amqp_connection_mode: Literal["shared", "per_session"] = Field(
        "shared",
        description="shared: the sessions of one user and vhost share a pool of AMQP "
        "connections (a channel each); per_session: one AMQP connection per session, as "
        "the plugin inside the broker.",
    )
    connections_per_user: int = Field(
        2, ge=1, description="shared mode: AMQP connections per (user, vhost) pool."
    )
    channel_max: int = Field(
        0,
        ge=0,
        le=65535,
        description="shared mode: sessions (channels) per pooled AMQP connection; 0 = as "
        "many as the broker allows (its channel_max, 2047 by default).",
    )
    auth_cache_ttl: float = Field(
        30.0,
        ge=0,
        description="shared mode: seconds a proven login (salted hash, never the passcode) "
        "lets further CONNECTs of that user and vhost skip an AMQP login; a changed "
        "password is honoured at the latest after this; 0 = every CONNECT logs in.",
    )
    connection_open_rate: float = Field(
        50.0, gt=0, description="AMQP connections opened per second at most (token bucket)."
    )
    connect_queue_timeout: float = Field(
        30.0,
        ge=0,
        description="Seconds a CONNECT may wait for its turn under connection_open_rate "
        "before it gets an ERROR.",
    )
    pool_idle_timeout: float = Field(
        10.0, ge=0, description="shared mode: close a pooled connection idle this long, seconds."
    )

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

    # -- security (issue 7) ---------------------------------------------------------------
    allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to open a WebSocket (exact, or with * wildcards such "
        "as https://*.example.com); [] = any; a request without Origin is always allowed "
        "(web_stomp.allow_origins, RabbitMQ 4.2.6+).",
    )
    use_http_auth: bool = Field(
        False,
        description="Take credentials from the upgrade request's Authorization header "
        "(Basic, or Bearer <token>); without the header the default user is forced "
        "(web_stomp.use_http_auth).",
    )
    bearer_user: str | None = Field(
        None,
        description="Username sent to RabbitMQ with a Bearer token (RabbitMQ's OAuth 2 "
        "backend ignores it); default: the token's sub claim.",
    )
    implicit_connect: bool = Field(
        False,
        description="A first frame other than CONNECT logs in with the default "
        "credentials, no CONNECTED (stomp.implicit_connect; TCP only in the plugin).",
    )
    rules: list[DestinationRule] = Field(
        default_factory=list,
        description="Destination rules ([[rules]]): per user or group, allow_read "
        "(SUBSCRIBE) / allow_write (SEND) / deny globs; [] = no rules.",
    )
    groups: dict[str, list[str]] = Field(
        default_factory=dict, description="Named groups of logins for rules.groups."
    )
    rules_default: Literal["allow", "deny"] = Field(
        "deny",
        description="With rules configured: what a destination no rule allows gets.",
    )

    # -- limits (issue 7) -------------------------------------------------------------------
    max_connections: int = Field(
        0, ge=0, description="Client connections at once, all listeners; 0 = no limit "
        "(web_stomp.max_connections / stomp.max_connections)."
    )
    max_connections_per_ip: int = Field(
        0, ge=0, description="Client connections at once from one client address; 0 = no limit."
    )
    max_subscriptions: int = Field(
        1024, ge=0, description="Subscriptions per session; 0 = no limit."
    )
    max_transactions: int = Field(
        16, ge=1, description="Open transactions per session (RabbitMQ main: 16)."
    )
    max_outbound_buffer: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Bytes queued for one client that does not read before it is "
        "disconnected; 0 = no limit.",
    )

    # -- TLS for WebSocket, client addresses behind a balancer (issue 7) -------------------
    ws_ssl_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="WebSocket-over-TLS (wss) port, off when unset (web_stomp.ssl.port; "
        "the plugin's usual 15673). Uses the ssl_* settings.",
    )
    proxy_protocol: bool = Field(
        False,
        description="Expect a PROXY protocol v1/v2 header on every plain (non-TLS) "
        "connection, WebSocket and TCP (web_stomp.proxy_protocol, stomp.proxy_protocol).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of proxies whose X-Forwarded-For header names the client "
        "(WebSocket only); [] = never trust the header.",
    )

    # -- operations (issue 6 / 7) -----------------------------------------------------------
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Also serve /metrics, /healthz, /readyz on this port (they are always "
        "on the WebSocket port too).",
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        description="On SIGTERM/SIGINT: seconds to drain sessions before exiting.",
    )

    # -- flow control and performance (issues 6.3, 8) --------------------------------------
    delivery_window: int = Field(
        1000,
        ge=0,
        description="Prefetch of every ack:auto subscription: such subscriptions are "
        "consumed with manual acks the gateway sends once a MESSAGE is handed to the "
        "socket, and none while the client does not read, so a slow client stops the "
        "broker instead of filling the gateway's memory. 0 = none (ack:auto consumes "
        "with no_ack, as the plugin). Client-mode subscriptions are bounded by their own "
        "prefetch-count (and max_outbound_buffer).",
    )
    local_fanout: bool = Field(
        True,
        description="shared mode: ack:auto subscriptions to the same exchange (non-durable "
        "/topic and /exchange, no queue options) on one pooled AMQP connection share one "
        "broker queue and are copied to each session by the gateway; each subscriber still "
        "binds on its own channel, so the broker checks its permissions.",
    )
    publish_window: int = Field(
        1000,
        ge=0,
        description="SENDs of one session the broker has not confirmed yet before the "
        "gateway stops reading that client; 0 = no limit.",
    )
    write_high_water: int = Field(
        256 * 1024,
        gt=0,
        description="Unsent bytes to one client above which its session takes no more "
        "deliveries (resumed below a quarter of it).",
    )
    workers: int = Field(
        0,
        ge=0,
        description="Worker processes serving the same ports (SO_REUSEPORT), each with "
        "its own event loop and broker connections; 0 = one per CPU core.",
    )

    # -- operations -----------------------------------------------------------------------
    static_dir: Path | None = Field(
        None,
        description="Directory served at / (the demo page); default: static/ beside the "
        "gateway package (a source checkout). The Docker image sets it.",
    )
    log_level: LogLevel = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @model_validator(mode="after")
    def _tls_needs_certificate(self) -> Settings:
        if self.tcp_ssl_port is not None and (
            self.ssl_certfile is None or self.ssl_keyfile is None
        ):
            raise ValueError("tcp_ssl_port needs ssl_certfile and ssl_keyfile")
        return self

    @model_validator(mode="after")
    def _wss_needs_certificate(self) -> Settings:
        if self.ws_ssl_port is not None and (
            self.ssl_certfile is None or self.ssl_keyfile is None
        ):
            raise ValueError("ws_ssl_port needs ssl_certfile and ssl_keyfile")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad one
        return value

    @field_validator("static_dir")
    @classmethod
    def _static_dir_absolute(cls, value: Path | None) -> Path | None:
        # GATEWAY_STATIC_DIR="" parses as Path("."), which would serve the working
        # directory (config files included): only an absolute path is accepted.
        if value is not None and not value.is_absolute():
            raise ValueError(f"static_dir must be an absolute path, not {str(value)!r}")
        return value

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
