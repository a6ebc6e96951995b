"""Downloading source URLs for strangers: http(s) only, refused addresses, bounded time and size.

Each hop (the URL, then each redirect) is checked on its own: scheme, host against
--allowed_source_hosts, then every address the host resolves to. The host is resolved once, and
requests sends the hop through a transport adapter that connects to that checked address (with the
host name kept for the Host header, TLS SNI and the certificate check), so a name that resolves to a
public address at the check and to 127.0.0.1 at the connection (DNS rebinding) cannot reach inside.

--http_timeout bounds the whole download: connecting, the TLS handshake, the status line, the headers
and the body of every hop, together (see Deadline).
"""
from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import certifi
import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError, TimeoutError as Urllib3Timeout

from imageserver.core.errors import BadRequest, Forbidden, GatewayTimeout, NotFound, PayloadTooLarge

if TYPE_CHECKING:
    from imageserver.core.settings import Settings

MAXIMUM_REDIRECTS = 5
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
CHUNK = 64 * 1024
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
class SourceRules:
    """What a source download may do, from the settings."""
    timeout: float
    maximum_bytes: int
    allow_private: bool = False
    allowed_hosts: tuple = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceRules:
        return cls(settings.http_timeout, settings.maximum_source_bytes,
                   settings.allow_private_sources, settings.allowed_source_hosts)


@dataclass(frozen=True)
class Target:
    """One checked hop: where to connect, and what to call it."""
    scheme: str
    host: str           # the name, for the Host header, SNI and the certificate
    port: int
    address: str        # the checked address that is connected to
    target: str         # path and query, sent in the request line
    host_header: str


def download(url: str, rules: SourceRules) -> bytes:
    """The body at `url`, following up to 5 redirects, each hop's address checked again."""
    with Deadline(rules.timeout) as deadline:
        for _ in range(MAXIMUM_REDIRECTS + 1):
            target = check_url(url, rules, deadline)
            with _pinned_session(target, deadline) as session, _get(session, url, target, deadline) \
                    as response:
                location = response.headers.get("Location")
                if response.status_code in REDIRECT_STATUSES and location:
                    url = urljoin(url, location)
                    continue
                if response.status_code >= 400:
                    raise NotFound(f"the source answered {response.status_code}")
                if response.status_code != 200:
                    raise NotFound(f"the source answered {response.status_code}, not 200")
                return _read(response, deadline, rules.maximum_bytes)
    raise NotFound(f"the source redirected more than {MAXIMUM_REDIRECTS} times")


# -- the address guard ------------------------------------------------------------------------------


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


# -- the download -----------------------------------------------------------------------------------


class Deadline:
    """The time a download may take, all of it.

    Socket timeouts bound each receive, not their sum: a source that sends its status line one byte a
    second never trips a 5 s timeout, and holds the worker for as long as it likes. So every socket
    the download opens is watched, and when the time is up they are shut down, which wakes whatever
    is waiting on them (connecting, the TLS handshake, the headers or the body).
    """

    def __init__(self, seconds: float):
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def remaining(self) -> float:
        """The seconds left; GatewayTimeout when there are none."""
        left = self.ends - time.monotonic()
        if left <= 0 or self.expired:
            raise GatewayTimeout("the source took too long")
        return left

    def check(self) -> None:
        if self.expired:
            raise GatewayTimeout("the source took too long")

    def watch(self, sock: socket.socket) -> None:
        # A duplicate: the connection's own socket object may be closed (or wrapped in TLS, which
        # detaches it) before the time is up; shutting the duplicate down still ends the connection.
        with self._lock:
            self._sockets.append(sock.dup())
            if self.expired:
                _shut(self._sockets[-1])

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass     # not connected (any more)


class _Watched:
    """A connection whose socket the download's Deadline can shut down."""

    def __init__(self, *args, deadline: Deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def _new_conn(self) -> socket.socket:
        # urllib3's hook for the bare TCP socket: watched before any TLS, so the handshake is too.
        sock = super()._new_conn()  # type: ignore[misc]  # a mixin: the connection class has it
        self.deadline.watch(sock)
        return sock


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """requests' transport for one checked hop: whatever the URL's host resolves to now, the
    connection goes to the checked address, and TLS speaks (SNI) and verifies for the host name."""

    def __init__(self, target: Target, deadline: Deadline):
        super().__init__(max_retries=0)
        self.pool: HTTPConnectionPool
        remaining = deadline.remaining()
        options: dict[str, Any] = dict(timeout=Timeout(connect=remaining, read=remaining), maxsize=1,
                                       retries=False, deadline=deadline)
        if target.scheme == "https":
            self.pool = _TLSPool(target.address, target.port, ssl_context=_tls_context(),
                                 server_hostname=target.host, assert_hostname=target.host,
                                 cert_reqs="CERT_REQUIRED", **options)
        else:
            self.pool = _Pool(target.address, target.port, **options)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self.pool

    def close(self) -> None:
        super().close()
        self.pool.close()


def _pinned_session(target: Target, deadline: Deadline) -> requests.Session:
    session = requests.Session()
    # Proxies, .netrc and CA bundles named in the environment do not apply: the request goes to the
    # checked address, and nowhere else.
    session.trust_env = False
    adapter = PinnedAdapter(target, deadline)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _tls_context() -> ssl.SSLContext:
    """The system's trusted authorities (SSL_CERT_FILE honoured) and certifi's."""
    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    return context


def _get(session: requests.Session, url: str, target: Target, deadline: Deadline) -> requests.Response:
    remaining = deadline.remaining()
    # The pool is for the address: the Host header must name the host.
    headers = {"Host": target.host_header, "User-Agent": "imageserver", "Accept": "image/*",
               "Accept-Encoding": "identity", "Connection": "close"}
    try:
        return session.get(url, headers=headers, timeout=(remaining, remaining), stream=True,
                           allow_redirects=False)
    except requests.Timeout:
        raise GatewayTimeout("the source took too long") from None
    except requests.exceptions.InvalidURL:
        raise BadRequest("the source URL is not a valid URL") from None
    except (requests.RequestException, HTTPError, OSError) as error:
        deadline.check()
        raise NotFound(f"the source cannot be reached ({_reason(error)})") from None


def _read(response: requests.Response, deadline: Deadline, maximum_bytes: int) -> bytes:
    """The body as sent (no content decoding: a gzip bomb stays small), within the deadline."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > maximum_bytes:
        raise PayloadTooLarge(f"the source is over the limit of {maximum_bytes} bytes")
    body = bytearray()
    try:
        while True:
            deadline.remaining()
            chunk = response.raw.read1(CHUNK, decode_content=False)
            if not chunk:
                deadline.check()    # an end that the deadline made is no end of the body
                return bytes(body)
            body += chunk
            if len(body) > maximum_bytes:
                raise PayloadTooLarge(f"the source is over the limit of {maximum_bytes} bytes")
    except (TimeoutError, Urllib3Timeout):
        raise GatewayTimeout("the source took too long") from None
    except (HTTPError, OSError) as error:
        deadline.check()
        raise NotFound(f"the source broke off ({_reason(error)})") from None


def _reason(error: BaseException) -> str:
    """The name of what went wrong underneath requests' and urllib3's wrappers."""
    for _ in range(5):
        inner = getattr(error, "reason", None) or (error.args[0] if error.args else None)
        if not isinstance(inner, BaseException):
            break
        error = inner
    return type(error).__name__
