"""Command line: ``stomp-gateway`` / ``python -m gateway``."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from . import __version__
from .logging import configure, get_logger
from .settings import load_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="stomp-gateway",
        description="STOMP over WebSocket to RabbitMQ: a drop-in for rabbitmq_web_stomp "
        "(and, with --tcp-port, for rabbitmq_stomp's plain STOMP over TCP/TLS). "
        "Every option can also be set in the environment (GATEWAY_<NAME>) or a TOML file.",
    )
    p.add_argument("--host", help="bind address (default 0.0.0.0; web_stomp.tcp.ip)")
    p.add_argument("--port", type=int, help="WebSocket port (default 15674; web_stomp.tcp.port)")
    p.add_argument(
        "--ws-path", dest="ws_path", help="upgrade path (default /ws; web_stomp.ws_path)"
    )
    p.add_argument(
        "--tcp-port",
        dest="tcp_port",
        type=int,
        help="also serve plain STOMP over TCP on this port (off by default; rabbitmq_stomp "
        "uses 61613; stomp.listeners.tcp.default)",
    )
    p.add_argument(
        "--tcp-host",
        dest="tcp_host",
        help="bind address of the TCP/TLS listeners (default: --host)",
    )
    p.add_argument(
        "--tcp-ssl-port",
        dest="tcp_ssl_port",
        type=int,
        help="also serve STOMP over TLS on this port (off by default; rabbitmq_stomp uses "
        "61614; needs --ssl-certfile and --ssl-keyfile)",
    )
    p.add_argument("--ssl-certfile", dest="ssl_certfile", metavar="PEM", help="TLS certificate")
    p.add_argument("--ssl-keyfile", dest="ssl_keyfile", metavar="PEM", help="TLS private key")
    p.add_argument(
        "--ssl-cacertfile", dest="ssl_cacertfile", metavar="PEM", help="CA for client certificates"
    )
    p.add_argument(
        "--ssl-verify",
        dest="ssl_verify",
        choices=["none", "peer"],
        help="verify client certificates (default none; ssl_options.verify)",
    )
    p.add_argument(
        "--ws-ssl-port",
        dest="ws_ssl_port",
        type=int,
        help="also serve WebSocket over TLS (wss) on this port (off by default; "
        "web_stomp.ssl.port; needs --ssl-certfile and --ssl-keyfile)",
    )
    p.add_argument(
        "--metrics-port",
        dest="metrics_port",
        type=int,
        help="also serve /metrics, /healthz, /readyz on this port (always on --port too)",
    )
    p.add_argument(
        "--shutdown-timeout",
        dest="shutdown_timeout",
        type=float,
        help="seconds to drain sessions on SIGTERM/SIGINT (default 10)",
    )
    p.add_argument(
        "--amqp-url",
        dest="amqp_url",
        help="RabbitMQ URL (default amqp://127.0.0.1:5672/); cluster nodes comma-separated, "
        "tried in turn",
    )
    p.add_argument(
        "--amqp-connection-mode",
        dest="amqp_connection_mode",
        choices=["shared", "per_session"],
        help="shared (default): the sessions of one user share AMQP connections; "
        "per_session: one AMQP connection per session",
    )
    p.add_argument(
        "--connections-per-user",
        dest="connections_per_user",
        type=int,
        help="shared mode: AMQP connections per user and vhost (default 2)",
    )
    p.add_argument(
        "--auth-cache-ttl",
        dest="auth_cache_ttl",
        type=float,
        help="shared mode: seconds a proven login spares the same passcode an AMQP login "
        "(default 30; 0 = always log in)",
    )
    p.add_argument(
        "--workers",
        dest="workers",
        type=int,
        help="worker processes sharing the ports (SO_REUSEPORT); default: one per CPU core",
    )
    p.add_argument("--config", metavar="FILE", help="TOML settings file (also GATEWAY_CONFIG)")
    p.add_argument(
        "--log-level",
        dest="log_level",
        choices=["debug", "info", "warning", "error"],
        help="default info",
    )
    p.add_argument("--version", action="version", version=f"stomp-gateway {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    try:
        settings = load_settings(args.config, **overrides)
    except (ValidationError, FileNotFoundError) as exc:
        print(f"stomp-gateway: invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure(settings.log_level, settings.log_format)
    get_logger("gateway").info(
        "starting", version=__version__, amqp_url=_safe_url(settings.amqp_url)
    )
    from .server import run

    run(settings)


def _safe_url(url: str) -> str:
    """The AMQP URL (or comma-separated URLs) without any password in it."""
    from yarl import URL

    def safe(one: str) -> str:
        return str(URL(one).with_password(None)) if URL(one).password else one

    return ",".join(safe(part) for part in url.split(","))


if __name__ == "__main__":
    main()
