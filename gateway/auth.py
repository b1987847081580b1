"""Who a session logs in as: CONNECT headers, the upgrade's Authorization, tokens.

Pure functions; ``gateway.session`` calls ``resolve_credentials`` while handling
CONNECT. Credential rules (rabbit_stomp_processor ``creds/3``, reference §2.5),
first match wins:

1. ``use_http_auth`` and an ``Authorization`` header on the upgrade request: its
   credentials win over CONNECT's ``login``/``passcode``. ``Basic`` gives a user and
   password. ``Bearer <token>`` (the plugin crashes on it) gives the token as the
   password, with ``bearer_user`` or the token's ``sub`` claim as the username
   (RabbitMQ's OAuth 2 backend ignores the username and validates the token).
   Any other scheme, or a malformed header, is refused ("Bad CONNECT").
2. ``use_http_auth`` and no header: the default user and password are forced.
3. No ``login``: ``default_user``/``default_pass`` (no default user: "Bad CONNECT").
4. ``login``: it and ``passcode``, the default password when ``passcode`` is absent.

Tokens. The gateway never verifies a token (RabbitMQ does, at connection.open); it
only reads the ``exp`` claim of anything that looks like a JWT (a Bearer token, or
a JWT given as ``passcode``) so the session can end when it expires: RabbitMQ does
not re-check tokens of open connections (rabbitmq-server#8295).

Secrets (passwords, tokens) are never logged and never put in an ERROR body;
``describe_login`` shows a token-shaped login as ``<token>``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ConnectError
from .settings import Settings

__all__ = [
    "ResolvedCredentials",
    "describe_login",
    "jwt_claims",
    "resolve_credentials",
]


@dataclass(frozen=True, slots=True)
class ResolvedCredentials:
    login: str
    passcode: str = field(repr=False)
    expires_at: float | None = None  # a token's exp (seconds since the epoch)
    source: str = "connect"  # connect | default | basic | bearer (for logs)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWS compact token, unverified; None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return None
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(payload, dict):
        return None
    return payload


def _expiry(claims: dict[str, Any] | None) -> float | None:
    if claims is None:
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def describe_login(login: str) -> str:
    """A login as it may appear in an ERROR body or a log line: never a token."""
    return "<token>" if jwt_claims(login) is not None else login


def _bad_authorization() -> ConnectError:
    return ConnectError("Bad CONNECT", "Unsupported or malformed Authorization header\n")


def _from_authorization(settings: Settings, authorization: str) -> ResolvedCredentials:
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _bad_authorization() from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise _bad_authorization()
        return ResolvedCredentials(user, password, _expiry(jwt_claims(password)), "basic")
    if scheme.lower() == "bearer" and value:
        claims = jwt_claims(value)
        sub = claims.get("sub") if claims else None
        name = settings.bearer_user or (sub if isinstance(sub, str) and sub else "bearer")
        return ResolvedCredentials(name, value, _expiry(claims), "bearer")
    raise _bad_authorization()


def resolve_credentials(
    settings: Settings, headers: dict[str, str], authorization: str | None
) -> ResolvedCredentials:
    """CONNECT headers (+ the upgrade's Authorization) -> login, passcode, token expiry."""
    default_pass = settings.default_pass.get_secret_value()
    if settings.use_http_auth:
        if authorization:
            return _from_authorization(settings, authorization)
        if settings.default_user is None:
            raise ConnectError("Bad CONNECT", "Missing login or passcode header(s)")
        return ResolvedCredentials(settings.default_user, default_pass, None, "default")
    login = headers.get("login")
    if login is None:
        if settings.default_user is None:
            raise ConnectError("Bad CONNECT", "Missing login or passcode header(s)")
        return ResolvedCredentials(settings.default_user, default_pass, None, "default")
    passcode = headers.get("passcode", default_pass)
    return ResolvedCredentials(login, passcode, _expiry(jwt_claims(passcode)), "connect")
