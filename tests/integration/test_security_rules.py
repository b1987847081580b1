"""Destination rules: per user / group allow_read, allow_write, deny; checked before
anything reaches the broker; refusals are the broker's access_refused ERROR, not fatal."""

from __future__ import annotations

from gateway.rules import Rules
from gateway.settings import Settings


def refused_body(action: str, destination: str, user: str) -> str:
    return (
        f"ACCESS_REFUSED - {action} access to destination '{destination}' "
        f"in vhost '/' refused for user '{user}'"
    )


async def test_rules_allow_deny_and_the_session_goes_on(
    transport, gateway_factory, gateway_client, amqp, unique
):
    gw = await gateway_factory(
        tcp_port=0,
        rules=[
            {
                "users": ["*"],
                "allow_read": [f"/topic/{unique}.user.{{user}}.*", f"/queue/{unique}-*"],
                "allow_write": [f"/topic/{unique}.chat.*"],
            },
            {
                "groups": ["staff"],
                "allow_write": [f"/topic/{unique}.**"],
                "deny": [f"/topic/{unique}.secret"],
            },
        ],
        groups={"staff": ["guest"]},
    )
    c = await gateway_client(gateway=gw)
    # Allowed: own user topic (read), chat (write, everyone), anything of ours (staff).
    await c.subscribe(f"/topic/{unique}.user.guest.news", id="mine")
    await c.send_frame("SEND", {"destination": f"/topic/{unique}.user.guest.news"}, "hello")
    message = await c.recv_frame()
    assert (message.command, message.body) == ("MESSAGE", b"hello")
    # Refused read: someone else's topic. The ERROR carries the SUBSCRIBE's receipt.
    await c.send_frame(
        "SUBSCRIBE",
        {"destination": f"/topic/{unique}.user.alice.news", "id": "theirs", "receipt": "r2"},
    )
    error = await c.recv_frame()
    assert (error.command, error.header("message"), error.header("receipt-id"), error.text) == (
        "ERROR",
        "access_refused",
        "r2",
        refused_body("read", f"/topic/{unique}.user.alice.news", "guest"),
    )
    # deny wins over the staff allow_write.
    await c.send_frame("SEND", {"destination": f"/topic/{unique}.secret"}, "x")
    error = await c.recv_frame()
    assert error.text == refused_body("write", f"/topic/{unique}.secret", "guest")
    # Not fatal: the first subscription still delivers.
    await c.send_frame("SEND", {"destination": f"/topic/{unique}.user.guest.news"}, "still here")
    message = await c.recv_frame()
    assert (message.command, message.body) == ("MESSAGE", b"still here")
    # A bare name is a /queue: the rule for /queue/<unique>-* covers it for reading ...
    amqp.track_queue(f"{unique}-q")
    await c.subscribe(f"{unique}-q", id="q")
    # ... but nobody may write there (no allow_write matches): refused before the broker.
    await c.send_frame("SEND", {"destination": f"{unique}-q"}, "x")
    error = await c.recv_frame()
    assert error.text == refused_body("write", f"{unique}-q", "guest")


async def test_rules_default_deny_and_allow(gateway_factory, stomp, unique):
    rules = [{"users": ["alice"], "allow_read": ["/topic/**"]}]
    deny = await gateway_factory(rules=rules)
    c = await stomp(deny.url)
    await c.send_frame("SEND", {"destination": f"/topic/{unique}"}, "x")
    error = await c.recv_frame()
    assert error.text == refused_body("write", f"/topic/{unique}", "guest")
    allow = await gateway_factory(rules=rules, rules_default="allow")
    c = await stomp(allow.url)
    await c.send(f"/topic/{unique}", "x", receipt="ok")


def test_rule_patterns() -> None:
    rules = Rules(
        Settings(
            rules=[
                {"users": ["a*"], "allow_read": ["/topic/user.{user}.*", "/exchange/x/**"]},
                {"users": ["bob"], "deny": ["/topic/**"], "allow_read": ["/topic/open"]},
            ]
        )
    )
    assert rules.allowed("read", "/topic/user.alice.inbox", "alice")
    assert not rules.allowed("read", "/topic/user.alice.inbox.deeper/x", "alice")
    assert not rules.allowed("read", "/topic/user.bob.inbox", "alice")
    assert not rules.allowed("read", "/topic/user.alice.inbox", "bob")
    assert rules.allowed("read", "/exchange/x/a/b.c", "alex")
    assert not rules.allowed("write", "/exchange/x/a", "alex")
    assert not rules.allowed("read", "/topic/open", "bob")  # deny overrides allow
    # {user} is literal: a login with regex characters matches only itself.
    assert rules.allowed("read", "/topic/user.a.*.inbox", "a.*")
    assert not rules.allowed("read", "/topic/user.abc.inbox", "a.*")
    assert Rules(Settings()).allowed("write", "/anything", "anyone")
