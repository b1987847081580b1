"""Authentication modes: use_http_auth (Basic, Bearer), tokens as passcode, token
expiry, implicit_connect (both transports)."""

from __future__ import annotations

import asyncio
import time

from tests.support.security import basic, make_jwt
from tests.support.wsclient import connect_ws


def session_users(gw) -> list[str | None]:
    return [s.user for s in gw.server.sessions]


async def broker_connection_users(management, user: str) -> list[str]:
    """Users of the broker connections opened as ``user`` (polls until one shows)."""
    async with asyncio.timeout(10):
        while True:
            rows = await management.get("/api/connections?columns=user,name")
            found = [row["user"] for row in rows if row["user"] == user]
            if found:
                return found
            await asyncio.sleep(0.2)


async def test_use_http_auth_basic_wins_over_connect(gateway_factory, management, unique):
    gw = await gateway_factory(use_http_auth=True)
    async with management.user(f"{unique}-basic", "s3cret-basic") as user:
        ws = await connect_ws(
            gw.url, additional_headers={"Authorization": basic(user, "s3cret-basic")}
        )
        try:
            # CONNECT's own credentials are ignored (reference §2.5, rule 1).
            await ws.connect_stomp(login="guest", passcode="not-the-password")
            assert session_users(gw) == [user]
        finally:
            await ws.close()


async def test_use_http_auth_without_header_forces_default_user(gateway_factory):
    gw = await gateway_factory(use_http_auth=True)
    ws = await connect_ws(gw.url)
    try:
        await ws.connect_stomp(login="nobody-like-this", passcode="wrong")
        assert session_users(gw) == ["guest"]
    finally:
        await ws.close()


async def test_use_http_auth_bad_basic_password_is_bad_connect(gateway_factory, management, unique):
    gw = await gateway_factory(use_http_auth=True)
    async with management.user(f"{unique}-basic", "right") as user:
        ws = await connect_ws(gw.url, additional_headers={"Authorization": basic(user, "wrong")})
        try:
            error = await ws.connect_stomp(expect="ERROR")
            assert error.header("message") == "Bad CONNECT"
            assert error.text == f"Access refused for user '{user}'\n"
            assert await ws.is_open()  # as the plugin: a failed CONNECT may be retried
        finally:
            await ws.close()


async def test_use_http_auth_unsupported_scheme_is_bad_connect(gateway_factory):
    gw = await gateway_factory(use_http_auth=True)
    ws = await connect_ws(gw.url, additional_headers={"Authorization": "Digest username=x"})
    try:
        error = await ws.connect_stomp(expect="ERROR")
        assert (error.header("message"), error.text) == (
            "Bad CONNECT",
            "Unsupported or malformed Authorization header\n",
        )
    finally:
        await ws.close()


async def test_authorization_header_ignored_without_use_http_auth(gateway_factory):
    gw = await gateway_factory()
    ws = await connect_ws(gw.url, additional_headers={"Authorization": basic("nobody", "x")})
    try:
        await ws.connect_stomp(login="guest", passcode="guest")
        assert session_users(gw) == ["guest"]
    finally:
        await ws.close()


async def test_bearer_token_on_upgrade_reaches_the_broker_as_password(
    gateway_factory, management, unique
):
    # No OAuth 2 backend here: a user whose password IS the token stands in for it.
    user = f"{unique}-jwt"
    token = make_jwt({"sub": user, "exp": int(time.time()) + 600})
    gw = await gateway_factory(use_http_auth=True)
    async with management.user(user, token):
        ws = await connect_ws(gw.url, additional_headers={"Authorization": f"Bearer {token}"})
        try:
            await ws.connect_stomp(login=None, passcode=None)
            assert session_users(gw) == [user]  # the sub claim is the username
            assert set(await broker_connection_users(management, user)) == {user}
        finally:
            await ws.close()
        forged = make_jwt({"sub": user, "exp": int(time.time()) + 600}, b"forged")
        ws = await connect_ws(gw.url, additional_headers={"Authorization": f"Bearer {forged}"})
        try:
            error = await ws.connect_stomp(expect="ERROR")
            assert (error.header("message"), error.text) == (
                "Bad CONNECT",
                f"Access refused for user '{user}'\n",
            )
        finally:
            await ws.close()


async def test_bearer_user_setting_names_the_login(gateway_factory, management, unique):
    user = f"{unique}-svc"
    token = make_jwt({"sub": "someone-else", "exp": int(time.time()) + 600})
    gw = await gateway_factory(use_http_auth=True, bearer_user=user)
    async with management.user(user, token):
        ws = await connect_ws(gw.url, additional_headers={"Authorization": f"Bearer {token}"})
        try:
            await ws.connect_stomp()
            assert session_users(gw) == [user]
        finally:
            await ws.close()


async def test_jwt_as_passcode_reaches_the_broker(gateway_factory, management, unique):
    user = f"{unique}-pass"
    token = make_jwt({"sub": user, "exp": int(time.time()) + 600})
    gw = await gateway_factory()
    async with management.user(user, token):
        ws = await connect_ws(gw.url)
        try:
            await ws.connect_stomp(login=user, passcode=token)
            assert session_users(gw) == [user]
        finally:
            await ws.close()


async def test_session_ends_with_error_when_the_token_expires(gateway_factory, management, unique):
    user = f"{unique}-exp"
    exp = int(time.time()) + 2
    token = make_jwt({"sub": user, "exp": exp})
    gw = await gateway_factory()
    async with management.user(user, token):
        ws = await connect_ws(gw.url)
        try:
            await ws.connect_stomp(login=user, passcode=token)
            await ws.subscribe(f"/topic/{unique}", id="s")
            error = await ws.recv_frame(timeout=6)
            assert time.time() >= exp - 0.05
            assert (error.command, error.header("message"), error.text) == (
                "ERROR",
                "Token expired",
                "The access token of this session expired; connect again with a new one\n",
            )
            assert await ws.recv_close() == (1000, "STOMP died")
        finally:
            await ws.close()


async def test_expired_token_is_refused_at_connect(gateway_factory, unique):
    user = f"{unique}-old"
    token = make_jwt({"sub": user, "exp": int(time.time()) - 10})
    gw = await gateway_factory()
    ws = await connect_ws(gw.url)
    try:
        error = await ws.connect_stomp(login=user, passcode=token, expect="ERROR")
        assert (error.header("message"), error.text) == (
            "Bad CONNECT",
            f"Access refused for user '{user}': token expired\n",
        )
    finally:
        await ws.close()


async def test_token_given_as_login_never_shows_in_the_error(gateway_factory):
    token = make_jwt({"sub": "x", "exp": int(time.time()) + 600})
    gw = await gateway_factory()
    ws = await connect_ws(gw.url)
    try:
        error = await ws.connect_stomp(login=token, passcode="x", expect="ERROR")
        assert error.text == "Access refused for user '<token>'\n"
    finally:
        await ws.close()


async def test_implicit_connect(transport, gateway_factory, gateway_client, unique):
    gw = await gateway_factory(implicit_connect=True, tcp_port=0)
    client = await gateway_client(gateway=gw, connect=False)
    # The first frame logs in with the default user; no CONNECTED, only its RECEIPT.
    await client.send_frame(
        "SUBSCRIBE", {"destination": f"/topic/{unique}", "id": "s", "receipt": "implicit"}
    )
    receipt = await client.recv_frame()
    assert (receipt.command, receipt.header("receipt-id")) == ("RECEIPT", "implicit")
    await client.send_frame("SEND", {"destination": f"/topic/{unique}"}, "hi")
    message = await client.recv_frame()
    assert (message.command, message.body) == ("MESSAGE", b"hi")
    assert session_users(gw) == ["guest"]


async def test_without_implicit_connect_a_first_frame_is_illegal(transport, gateway_client, unique):
    client = await gateway_client(connect=False)
    await client.send_frame("SUBSCRIBE", {"destination": f"/topic/{unique}", "id": "s"})
    error = await client.recv_frame()
    assert (error.header("message"), error.text) == (
        "Illegal command",
        "You must log in using CONNECT first",
    )
