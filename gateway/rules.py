"""Destination rules: which user may SUBSCRIBE to (read) or SEND to (write) what.

Checked by the session before anything reaches the broker; RabbitMQ's own
permissions still apply afterwards. Rules come from settings (``[[rules]]``)::

    [groups]
    staff = ["alice", "bob"]

    [[rules]]
    users = ["*"]                              # everyone
    allow_read = ["/topic/user.{user}.*", "/topic/broadcast"]
    allow_write = ["/topic/chat.*"]

    [[rules]]
    groups = ["staff"]
    allow_write = ["/topic/broadcast"]
    deny = ["/queue/secret.**"]

Decision (deny overrides): among the rules that apply to the user (``users`` globs,
``"*"`` = everyone, or ``groups``), a ``deny`` pattern that matches refuses; else an
``allow_read``/``allow_write`` pattern that matches the action allows; else
``rules_default`` decides (``deny`` unless set to ``allow``). No rules at all: every
destination is allowed (only the broker decides). Rule order does not matter.

Patterns: ``*`` matches any characters but ``/``, ``**`` any characters, ``{user}``
the session's login (matched literally). Patterns are matched against the
destination as sent, except that a bare name (``foo``) is ``/queue/foo``, as the
broker reads it (``%2F`` stays as written). Write rules for every form a client may use (``/topic/x`` and ``/exchange/amq.topic/x``
reach the same exchange), or deny the other form.

A refusal is the ERROR the broker would send (``message:access_refused``, body
``ACCESS_REFUSED - read access to destination '/topic/x' in vhost '/' refused for
user 'bob'``) but it is **not fatal**: no channel was closed, since nothing reached
the broker, so the session and its other subscriptions go on.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from functools import lru_cache

from .auth import describe_login
from .errors import StompError
from .settings import DestinationRule, Settings

__all__ = ["AccessRefused", "Rules", "canonical_destination"]

Action = str  # "read" | "write"


class AccessRefused(StompError):
    """A destination rule refused the frame (not fatal: nothing reached the broker)."""

    def __init__(self, action: Action, destination: str, vhost: str, user: str) -> None:
        super().__init__(
            "access_refused",
            f"ACCESS_REFUSED - {action} access to destination '{destination}' "
            f"in vhost '{vhost}' refused for user '{describe_login(user)}'",
            fatal=False,
        )


def canonical_destination(text: str) -> str:
    """A bare name is a queue (RabbitMQ): ``foo`` -> ``/queue/foo``."""
    return text if text.startswith("/") else "/queue/" + text


@lru_cache(maxsize=4096)
def _compile(pattern: str, user: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern.startswith("{user}", i):
            out.append(re.escape(user))
            i += 6
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _matches(patterns: Sequence[str], destination: str, user: str) -> bool:
    return any(_compile(p, user).fullmatch(destination) for p in patterns)


class Rules:
    """The configured rules, ready to answer ``check``."""

    def __init__(self, settings: Settings) -> None:
        self.rules = list(settings.rules)
        self.groups = {name: set(members) for name, members in settings.groups.items()}
        self.default_allow = settings.rules_default == "allow"

    def __bool__(self) -> bool:
        return bool(self.rules)

    def _applies(self, rule: DestinationRule, user: str) -> bool:
        if any(fnmatch.fnmatchcase(user, pattern) for pattern in rule.users):
            return True
        return any(user in self.groups.get(group, ()) for group in rule.groups)

    def allowed(self, action: Action, destination: str, user: str) -> bool:
        if not self.rules:
            return True
        dest = canonical_destination(destination)
        applicable = [rule for rule in self.rules if self._applies(rule, user)]
        if any(_matches(rule.deny, dest, user) for rule in applicable):
            return False
        for rule in applicable:
            patterns = rule.allow_read if action == "read" else rule.allow_write
            if _matches(patterns, dest, user):
                return True
        return self.default_allow

    def check(self, action: Action, destination: str, user: str, vhost: str) -> None:
        """Raise ``AccessRefused`` unless ``user`` may ``action`` ``destination``."""
        if not self.allowed(action, destination, user):
            raise AccessRefused(action, destination, vhost, user)
