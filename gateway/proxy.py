"""The client's real address behind a load balancer.

Two mechanisms, both off by default:

* ``proxy_protocol``: every connection on the plain listeners (WebSocket and TCP)
  starts with a PROXY protocol header, v1 (text) or v2 (binary), as HAProxy and most
  cloud balancers send it (``web_stomp.proxy_protocol`` / ``stomp.proxy_protocol``).
  ``ProxyHeaderReader`` is fed the first bytes of a connection and returns the source
  address and whatever bytes follow the header. A missing or malformed header closes
  the connection (Ranch does the same). ``LOCAL`` (v2) and ``UNKNOWN`` (v1)
  connections, a balancer's health checks, keep the socket's own address.
* ``trusted_proxies`` (WebSocket only): when the socket's peer is in one of these
  CIDRs, the ``X-Forwarded-For`` header is read right to left and the first address
  that is not itself a trusted proxy is the client.

The address found is what the session sees as the client: the loopback rule for
``loopback_users``, per-address connection limits, connection names and logs.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Sequence

__all__ = [
    "PROXY_V2_SIGNATURE",
    "ProxyHeaderError",
    "ProxyHeaderReader",
    "TrustedProxies",
]

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the longest v1 line, CRLF included
V2_MAX_PAYLOAD = 4096  # far more than any address block plus TLVs a balancer sends

Address = tuple[str, int]


class ProxyHeaderError(Exception):
    """The connection did not start with a valid PROXY header."""


class ProxyHeaderReader:
    """Incremental: ``feed`` until it returns ``(source or None, rest)``.

    ``source`` is None for LOCAL / UNKNOWN connections (use the socket's address).
    """

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> tuple[Address | None, bytes] | None:
        buf = self._buf = self._buf + data
        if buf.startswith(b"PROXY "):
            return self._v1(buf)
        if len(buf) < 16:
            # Not enough to tell yet; fail early on anything that cannot become one.
            if not (PROXY_V2_SIGNATURE.startswith(buf[:12]) or b"PROXY ".startswith(buf[:6])):
                raise ProxyHeaderError("not a PROXY header")
            return None
        if buf.startswith(PROXY_V2_SIGNATURE):
            return self._v2(buf)
        raise ProxyHeaderError("not a PROXY header")

    @staticmethod
    def _v1(buf: bytes) -> tuple[Address | None, bytes] | None:
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) >= V1_MAX:
                raise ProxyHeaderError("PROXY v1 line too long")
            return None
        if end + 2 > V1_MAX:
            raise ProxyHeaderError("PROXY v1 line too long")
        rest = buf[end + 2 :]
        parts = buf[:end].decode("ascii", "replace").split(" ")
        if len(parts) >= 2 and parts[1] == "UNKNOWN":
            return None, rest
        if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
            raise ProxyHeaderError("malformed PROXY v1 line")
        try:
            source = ipaddress.ip_address(parts[2])
            ipaddress.ip_address(parts[3])
            port = int(parts[4])
            int(parts[5])
        except ValueError:
            raise ProxyHeaderError("malformed PROXY v1 addresses") from None
        if source.version != (4 if parts[1] == "TCP4" else 6) or not 0 <= port <= 65535:
            raise ProxyHeaderError("malformed PROXY v1 addresses")
        return (str(source), port), rest

    @staticmethod
    def _v2(buf: bytes) -> tuple[Address | None, bytes] | None:
        version_command, family, length = struct.unpack("!BBH", buf[12:16])
        if version_command >> 4 != 2 or version_command & 0x0F not in (0, 1):
            raise ProxyHeaderError("bad PROXY v2 version or command")
        if length > V2_MAX_PAYLOAD:
            raise ProxyHeaderError("PROXY v2 header too long")
        if len(buf) < 16 + length:
            return None
        payload, rest = buf[16 : 16 + length], buf[16 + length :]
        if version_command & 0x0F == 0:  # LOCAL: the balancer's own connection
            return None, rest
        address_family = family >> 4
        if address_family == 1 and len(payload) >= 12:  # AF_INET
            host = socket.inet_ntop(socket.AF_INET, payload[0:4])
            (port,) = struct.unpack("!H", payload[8:10])
            return (host, port), rest
        if address_family == 2 and len(payload) >= 36:  # AF_INET6
            host = socket.inet_ntop(socket.AF_INET6, payload[0:16])
            (port,) = struct.unpack("!H", payload[32:34])
            return (host, port), rest
        if address_family in (0, 3):  # UNSPEC, AF_UNIX: no usable address
            return None, rest
        raise ProxyHeaderError("malformed PROXY v2 address block")


class TrustedProxies:
    """``trusted_proxies`` CIDRs and the X-Forwarded-For walk."""

    def __init__(self, cidrs: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The client address: ``peer`` unless it is trusted and forwards for someone."""
        if not self.trusted(peer):
            return peer
        hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
        client = peer
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop.split("%")[0])
            except ValueError:
                break  # garbage: stop at the last address we could trust
            client = hop
            if not self.trusted(hop):
                break
        return client
