"""Proofs of recent logins: how a CONNECT is checked without a connection of its own.

With shared AMQP connections (``gateway.broker.pool``) a session rides on a connection
some other session of the same user opened. Its credentials must still be proven, so
a wrong passcode never rides on someone else's login. A ``ProofCache`` remembers, for
each (user, vhost), a salted scrypt hash of the passcode of the last login the broker
accepted, and when that was:

* a CONNECT whose passcode hashes to the remembered value, less than ``ttl`` seconds
  after the broker accepted it, is proven;
* anything else (no proof, an older one, another passcode) must be proven by the
  broker: the pool opens a fresh AMQP connection with these credentials;
* a passcode the broker refused is remembered as refused for ``ttl`` too, so a client
  retrying a wrong passcode in a loop costs one AMQP login per ``ttl``, not one each.

Invariants: the passcode itself is never stored (only ``scrypt(passcode, salt)`` with
a random per-process salt mixed with user and vhost); the age of a proof counts from
the broker's answer, never refreshed by cache hits, so a password changed (or a user
deleted) in RabbitMQ is honoured by every CONNECT at the latest ``ttl`` seconds later;
``ttl == 0`` disables the cache: every CONNECT is proven by the broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from collections.abc import Callable

Key = tuple[str, str]  # (login, vhost)

# scrypt cost: 1 MiB and ~3 ms per hash on one core (run in a thread: hashlib releases
# the GIL). The cache lives in memory for seconds, with a salt that dies with the
# process: the hash only has to make a memory dump useless for reading passcodes.
SCRYPT_N = 2**10
SCRYPT_R = 8
SCRYPT_P = 1
DIGEST_SIZE = 32
MAX_ENTRIES = 10_000  # proofs / refusals kept before expired ones are purged


class ProofCache:
    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._salt = os.urandom(16)
        self._proofs: dict[Key, tuple[bytes, float]] = {}
        self._refused: dict[tuple[Key, bytes], float] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def digest(self, login: str, vhost: str, passcode: str) -> bytes:
        """scrypt of the passcode, salted with the process salt, the user and the vhost."""
        salt = (
            self._salt
            + hashlib.sha256(f"{login}\0{vhost}".encode("utf-8", "surrogateescape")).digest()
        )
        return hashlib.scrypt(
            passcode.encode("utf-8", "surrogateescape"),
            salt=salt,
            n=SCRYPT_N,
            r=SCRYPT_R,
            p=SCRYPT_P,
            dklen=DIGEST_SIZE,
        )

    async def digest_async(self, login: str, vhost: str, passcode: str) -> bytes:
        """``digest`` in a worker thread, so the event loop keeps serving meanwhile."""
        return await asyncio.to_thread(self.digest, login, vhost, passcode)

    # -- accepted logins ----------------------------------------------------------------
    def proven(self, key: Key, digest: bytes) -> bool:
        """True when the broker accepted this very passcode less than ``ttl`` ago."""
        entry = self._proofs.get(key)
        if entry is None or not self.enabled:
            return False
        remembered, at = entry
        if self._clock() - at >= self.ttl:
            del self._proofs[key]
            return False
        return hmac.compare_digest(remembered, digest)

    def remember(self, key: Key, digest: bytes) -> None:
        """The broker accepted this login just now."""
        if not self.enabled:
            return
        now = self._clock()
        self._proofs[key] = (digest, now)
        self._refused.pop((key, digest), None)
        if len(self._proofs) > MAX_ENTRIES:
            self._purge(now)

    def forget(self, key: Key) -> None:
        """Drop the proof (e.g. the broker closed a connection of this user)."""
        self._proofs.pop(key, None)

    # -- refused logins -----------------------------------------------------------------
    def refused(self, key: Key, digest: bytes) -> bool:
        """True when the broker refused this very passcode less than ``ttl`` ago."""
        at = self._refused.get((key, digest))
        if at is None or not self.enabled:
            return False
        if self._clock() - at >= self.ttl:
            del self._refused[(key, digest)]
            return False
        return True

    def remember_refusal(self, key: Key, digest: bytes) -> None:
        if not self.enabled:
            return
        now = self._clock()
        self._refused[(key, digest)] = now
        if len(self._refused) > MAX_ENTRIES:
            self._purge(now)
            while len(self._refused) > MAX_ENTRIES:  # oldest first (insertion order)
                del self._refused[next(iter(self._refused))]

    def _purge(self, now: float) -> None:
        self._proofs = {k: v for k, v in self._proofs.items() if now - v[1] < self.ttl}
        self._refused = {k: at for k, at in self._refused.items() if now - at < self.ttl}

    def __len__(self) -> int:
        return len(self._proofs)
