"""Structured JSON logs with session context, and no secret anywhere: a gateway
subprocess logging at debug gets good and bad passcodes, Basic credentials and Bearer
tokens; its whole output and every frame the clients received are searched for them."""

from __future__ import annotations

import base64
import time

from tests.support.security import GatewayProcess, basic, make_jwt
from tests.support.wsclient import connect_ws


async def connect_and_collect(url: str, received: list[bytes], **kwargs) -> None:
    headers = kwargs.pop("headers", None)
    ws = await connect_ws(url, additional_headers=headers)
    try:
        reply = await ws.connect_stomp(expect=None, **kwargs)
        if reply.command == "CONNECTED":
            await ws.disconnect(receipt="bye")
            await ws.recv_close()
    finally:
        await ws.close()
        received.extend(ws.raw_messages)


async def test_no_secret_in_logs_or_frames(management, unique):
    user = f"{unique}-logs"
    good = f"Good-{unique}-Passcode"
    bad = f"Bad-{unique}-Passcode"
    token_user = f"{unique}-tok"
    token = make_jwt({"sub": token_user, "exp": int(time.time()) + 600, "n": f"{unique}-claims"})
    bad_token = make_jwt({"sub": token_user, "exp": int(time.time()) + 600}, b"forged-" + unique.encode())
    secrets = [good, bad, token, bad_token, token.split(".")[2], bad_token.split(".")[2]]
    secrets += [basic(user, good).split(" ")[1], basic(user, bad).split(" ")[1]]
    received: list[bytes] = []
    async with management.user(user, good), management.user(token_user, token):
        plain = await GatewayProcess.start("--log-level", "debug")
        try:
            await connect_and_collect(plain.url, received, login=user, passcode=good)
            await connect_and_collect(plain.url, received, login=user, passcode=bad)
            await connect_and_collect(plain.url, received, login=token_user, passcode=token)
            await connect_and_collect(plain.url, received, login=token_user, passcode=bad_token)
            await connect_and_collect(plain.url, received, login=token, passcode=bad)
            plain.signal()
            assert await plain.wait() == 0
        finally:
            await plain.kill()
        http = await GatewayProcess.start("--log-level", "debug", env={"GATEWAY_USE_HTTP_AUTH": "true"})
        try:
            for headers in (
                {"Authorization": basic(user, good)},
                {"Authorization": basic(user, bad)},
                {"Authorization": f"Bearer {token}"},
                {"Authorization": f"Bearer {bad_token}"},
            ):
                await connect_and_collect(http.url, received, headers=headers, login=user, passcode=good)
            http.signal()
            assert await http.wait() == 0
        finally:
            await http.kill()
    logs = plain.output + http.output
    everything = [logs, *received]
    for secret in secrets:
        leaks = [chunk for chunk in everything if secret.encode() in chunk]
        assert leaks == [], f"secret {secret[:12]}... leaked"
    assert base64.b64encode(good.encode()) not in logs
    # Every line is JSON; the session's lines carry its context.
    events = plain.events + http.events
    assert all(event.get("event") != "<not json>" for event in events)
    connected = [e for e in events if e.get("event") == "session connected"]
    assert len(connected) == 4  # passcode, JWT as passcode; Basic, Bearer (the others fail)
    for event in connected:
        assert {"session", "peer", "user", "vhost", "level", "timestamp"} <= set(event)
        assert event["user"] in (user, token_user, "guest") and event["vhost"] == "/"
    closed = [e for e in events if e.get("event") == "session closed"]
    assert len(closed) == 9 and all(e["session"].startswith("session-") for e in closed)
