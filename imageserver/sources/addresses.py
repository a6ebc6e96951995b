"""The address guard: which addresses a ?source= URL may reach.

Each hop of a download (the URL, then each redirect) is checked on its own: scheme, host against
--allowed_source_hosts, then every address the host resolves to. The host is resolved once, and the
hop connects to the address checked here (transport.py), never to what the name resolves to later.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from imageserver.core.errors import BadRequest, Forbidden, GatewayTimeout, NotFound
from imageserver.sources.bounds import Deadline

if TYPE_CHECKING:
    from imageserver.sources.bounds import SourceRules

MAXIMUM_URL_LENGTH = 4096
# Cloud metadata services: refused even with --allow_private_sources, which is for development
# against local servers, never for reaching the credentials of the machine the server runs on.
METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.170.23", "100.100.100.200", "192.0.0.192",
    "fd00:ec2::254", "fd00:ec2::23")}
# IPv6 addresses whose last 32 bits are an IPv4 address: IPv4-compatible (::a.b.c.d, deprecated but
# still routed to the IPv4 address by some stacks), IPv4-translated (::ffff:0:a.b.c.d) and NAT64's
# well-known prefix. IPv4-mapped, 6to4 and Teredo are told apart by the ipaddress module itself.
LAST_32_BITS_IPV4 = tuple(ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96"))
# NAT64's local-use prefix may be any of /48, /56, /64 or /96, each putting the IPv4 address
# elsewhere (RFC 6052, skipping bits 64-71): every place is judged.
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


@dataclass(frozen=True)
class Target:
    """One checked hop: where to connect, and what to call it."""
    scheme: str
    host: str           # the name, for the Host header, SNI and the certificate
    port: int
    address: str        # the checked address that is connected to
    target: str         # path and query, sent in the request line
    host_header: str


def check_url(url: str, rules: SourceRules, deadline: Deadline | None = None) -> Target:
    """The hop to make for `url`, or the error that refuses it; its name looked up within what is
    left of the download's time (all of --http_timeout without a deadline)."""
    if len(url) > MAXIMUM_URL_LENGTH:
        raise BadRequest(f"the source URL is longer than {MAXIMUM_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest("the source URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("source must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise BadRequest("the source URL must not carry a user name or password")
    host = parts.hostname.rstrip(".")
    if rules.allowed_hosts and not host_allowed(host, rules.allowed_hosts):
        raise Forbidden(f"source host {host} is not one of --allowed_source_hosts")
    addresses = addresses_of(host, port, deadline.remaining() if deadline else rules.timeout)
    for address in addresses:
        check_address(host, address, rules.allow_private)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, addresses[0], target, parts.netloc)


def host_allowed(host: str, allowed: tuple) -> bool:
    """`example.com` allows that host only; `.example.com` any host under it (and itself)."""
    host = host.lower()
    for entry in allowed:
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def addresses_of(host: str, port: int, seconds: float) -> list[str]:
    """Every address of `host`, IPv4 first: the first is the one connected to. GatewayTimeout when
    the lookup takes longer than `seconds`.

    The resolver (getaddrinfo) has timeouts of its own, per name server and attempt, that add up to
    tens of seconds for a name server that never answers, and a lookup cannot be interrupted: so it
    runs in a thread of its own, which the request waits for only `seconds` (a lookup given up on
    ends later in its thread, which holds nothing else)."""
    found: dict = {}
    done = threading.Event()

    def look_up() -> None:
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as error:
            found["error"] = error
        finally:
            done.set()

    threading.Thread(target=look_up, name=f"resolve {host}", daemon=True).start()
    if not done.wait(seconds):
        raise GatewayTimeout(f"the source host {host!r} was not resolved in time")
    if isinstance(found.get("error"), (socket.gaierror, UnicodeError, OSError)):
        raise NotFound(f"the source host {host!r} cannot be resolved")
    if "error" in found:
        raise found["error"]
    infos = found["infos"]
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise NotFound(f"the source host {host!r} has no address")
    return sorted(addresses, key=lambda a: ":" in a)


def check_address(host: str, address: str, allow_private: bool) -> None:
    """Refuse a metadata address in any form, and (unless allowed) any address that is not public."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if any(each in METADATA_ADDRESSES for each in (ip, *embedded_ipv4(ip))):
        raise Forbidden(f"source {host} is a cloud metadata address ({address})")
    if not allow_private and not is_public(address):
        raise Forbidden(f"source {host} is on a non-public address ({address})")


def is_public(address: str) -> bool:
    """A globally routed unicast address; an IPv6 address that carries IPv4 addresses is judged by
    them alone (the ipaddress module calls some such forms global whatever they carry)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    inside = embedded_ipv4(ip)
    if inside:
        return all(is_public(str(each)) for each in inside)
    return ip.is_global and not ip.is_multicast and ip not in METADATA_ADDRESSES


def embedded_ipv4(ip) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (IPv4-mapped, IPv4-compatible, IPv4-translated,
    6to4, Teredo's server and client, NAT64), or none."""
    if ip.version == 4:
        return []
    if ip.ipv4_mapped:
        return [ip.ipv4_mapped]
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)
    if any(ip in network for network in LAST_32_BITS_IPV4):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in LOCAL_NAT64:
        return [_rfc6052_ipv4(int(ip), length) for length in (48, 56, 64, 96)]
    return []


def _rfc6052_ipv4(value: int, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address after a NAT64 prefix of this length, bits 64-71 (always zero) skipped."""
    if prefix_length == 96:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    without_bits_64_to_71 = (value >> 64) << 56 | (value & ((1 << 56) - 1))
    return ipaddress.IPv4Address(without_bits_64_to_71 >> (120 - prefix_length - 32) & 0xFFFFFFFF)
