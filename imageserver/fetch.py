"""Downloading source URLs for strangers: http(s) only, refused addresses, bounded time and size.

Each hop (the URL, then each redirect) is checked on its own: scheme, host against
--allowed_source_hosts, then every address the host resolves to. The host is resolved once, and the
connection goes to that checked address (with the host name kept for the Host header, TLS SNI and the
certificate check), so a name that resolves to a public address at the check and to 127.0.0.1 at the
connection (DNS rebinding) cannot reach inside.
"""
from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.exceptions import HTTPError, TimeoutError as Urllib3Timeout

from .errors import BadRequest, Forbidden, GatewayTimeout, NotFound, PayloadTooLarge

MAXIMUM_REDIRECTS = 5
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
CHUNK = 64 * 1024
MAXIMUM_URL_LENGTH = 4096
# Cloud metadata services: refused even with --allow_private_sources, which is for development
# against local servers, never for reaching the credentials of the machine the server runs on.
METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.170.23", "100.100.100.200", "192.0.0.192",
    "fd00:ec2::254", "fd00:ec2::23")}
# IPv6 prefixes that carry an IPv4 address inside (NAT64), checked as that IPv4 address too.
NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


@dataclass(frozen=True)
class SourceRules:
    """What a source download may do, from the settings."""
    timeout: float
    maximum_bytes: int
    allow_private: bool = False
    allowed_hosts: tuple = ()

    @classmethod
    def from_settings(cls, settings) -> "SourceRules":
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
    deadline = time.monotonic() + rules.timeout
    for _ in range(MAXIMUM_REDIRECTS + 1):
        target = check_url(url, rules)
        response = _get(target, deadline)
        try:
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                url = urljoin(url, location)
                continue
            if response.status >= 400:
                raise NotFound(f"the source answered {response.status}")
            if response.status != 200:
                raise NotFound(f"the source answered {response.status}, not 200")
            return _read(response, deadline, rules.maximum_bytes)
        finally:
            response.close()
    raise NotFound(f"the source redirected more than {MAXIMUM_REDIRECTS} times")


def check_url(url: str, rules: SourceRules) -> Target:
    """The hop to make for `url`, or the error that refuses it."""
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
    addresses = resolve(host, port)
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


def resolve(host: str, port: int) -> list[str]:
    """Every address of `host`, IPv4 first: the first is the one connected to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise NotFound(f"the source host {host!r} cannot be resolved") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise NotFound(f"the source host {host!r} has no address")
    return sorted(addresses, key=lambda a: ":" in a)


def check_address(host: str, address: str, allow_private: bool) -> None:
    ip = ipaddress.ip_address(address.split("%")[0])
    embedded = _embedded_ipv4(ip)
    if ip in METADATA_ADDRESSES or embedded in METADATA_ADDRESSES:
        raise Forbidden(f"source {host} is a cloud metadata address ({address})")
    if not allow_private and not is_public(address):
        raise Forbidden(f"source {host} is on a non-public address ({address})")


def is_public(address: str) -> bool:
    """A globally routed unicast address, whose embedded IPv4 address (if any) is one too."""
    ip = ipaddress.ip_address(address.split("%")[0])
    embedded = _embedded_ipv4(ip)
    if embedded is not None and not is_public(str(embedded)):
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        return True     # its IPv4 address decided, above
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip) -> "ipaddress.IPv4Address | None":
    """The IPv4 address inside an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in prefix for prefix in NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _pool(target: Target, timeout: float) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to the checked address, speaking for the host name."""
    options = dict(timeout=urllib3.Timeout(connect=timeout, read=timeout), maxsize=1, retries=False)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address, target.port, ssl_context=_tls_context(), server_hostname=target.host,
            assert_hostname=target.host, cert_reqs="CERT_REQUIRED", **options)
    return urllib3.HTTPConnectionPool(target.address, target.port, **options)


def _tls_context() -> ssl.SSLContext:
    """The system's trusted authorities (SSL_CERT_FILE honoured) and certifi's."""
    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    return context


def _get(target: Target, deadline: float) -> urllib3.HTTPResponse:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise GatewayTimeout("the source took too long")
    headers = {"Host": target.host_header, "User-Agent": "imageserver", "Accept": "image/*",
               "Accept-Encoding": "identity"}
    try:
        return _pool(target, remaining).urlopen(
            "GET", target.target, headers=headers, redirect=False, retries=False,
            preload_content=False, decode_content=False, assert_same_host=False)
    except Urllib3Timeout:
        raise GatewayTimeout("the source took too long") from None
    except (HTTPError, OSError) as error:
        raise NotFound(f"the source cannot be reached ({_reason(error)})") from None


def _read(response: urllib3.HTTPResponse, deadline: float, maximum_bytes: int) -> bytes:
    """The body, read one receive at a time, each bounded by what is left of the deadline."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > maximum_bytes:
        raise PayloadTooLarge(f"the source is over the limit of {maximum_bytes} bytes")
    body = bytearray()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayTimeout("the source took too long")
            if response.connection is not None and response.connection.sock is not None:
                response.connection.sock.settimeout(remaining)
            chunk = response.read1(CHUNK, decode_content=False)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > maximum_bytes:
                raise PayloadTooLarge(f"the source is over the limit of {maximum_bytes} bytes")
    except (Urllib3Timeout, socket.timeout):
        raise GatewayTimeout("the source took too long") from None
    except (HTTPError, OSError) as error:
        raise NotFound(f"the source broke off ({_reason(error)})") from None


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error
    return type(reason).__name__
