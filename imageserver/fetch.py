"""Downloading source URLs for strangers: http(s) only, refused addresses, bounded time and size."""
from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import requests

from .errors import BadRequest, Forbidden, GatewayTimeout, NotFound, PayloadTooLarge

MAXIMUM_REDIRECTS = 5
CHUNK = 64 * 1024


def download(url: str, timeout: float, maximum_bytes: int, allow_private: bool) -> bytes:
    """The body at `url`, following up to 5 redirects, each hop's address checked again."""
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        session.trust_env = False
        for _ in range(MAXIMUM_REDIRECTS + 1):
            check_url(url, allow_private)
            response = _get(session, url, deadline)
            with response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status_code >= 400:
                    raise NotFound(f"the source answered {response.status_code}")
                return _read(response, deadline, maximum_bytes)
    raise NotFound(f"the source redirected more than {MAXIMUM_REDIRECTS} times")


def check_url(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("source must be an http or https URL")
    if allow_private:
        return
    for address in resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)):
        if not is_public(address):
            raise Forbidden(f"source {parts.hostname} is on a non-public address ({address})")


def resolve(host: str, port: int) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except (socket.gaierror, UnicodeError):
        raise NotFound(f"the source host {host!r} cannot be resolved") from None


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _get(session: requests.Session, url: str, deadline: float) -> requests.Response:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise GatewayTimeout("the source took too long")
    try:
        return session.get(url, stream=True, allow_redirects=False, timeout=remaining,
                           headers={"User-Agent": "imageserver"})
    except requests.Timeout:
        raise GatewayTimeout("the source took too long") from None
    except requests.RequestException as error:
        raise NotFound(f"the source cannot be reached ({type(error).__name__})") from None


def _read(response: requests.Response, deadline: float, maximum_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > maximum_bytes:
        raise PayloadTooLarge(f"the source is over the limit of {maximum_bytes} bytes")
    body = bytearray()
    try:
        for chunk in response.iter_content(CHUNK):
            body += chunk
            if len(body) > maximum_bytes:
                raise PayloadTooLarge(f"the source is over the limit of {maximum_bytes} bytes")
            if time.monotonic() > deadline:
                raise GatewayTimeout("the source took too long")
    except requests.RequestException as error:
        raise NotFound(f"the source broke off ({type(error).__name__})") from None
    return bytes(body)
