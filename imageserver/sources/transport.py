"""The transport of a download: requests, connecting only to the address the guard checked.

requests sends each hop through a transport adapter that connects to that address (with the host name
kept for the Host header, TLS SNI and the certificate check), so a name that resolves to a public
address at the check and to 127.0.0.1 at the connection (DNS rebinding) cannot reach inside. Every
socket it opens is watched by the download's Deadline.
"""
from __future__ import annotations

import socket
import ssl
from typing import Any

import certifi
import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError

from imageserver.core.errors import BadRequest, GatewayTimeout, NotFound
from imageserver.sources.addresses import Target
from imageserver.sources.bounds import Deadline


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


def pinned_session(target: Target, deadline: Deadline) -> requests.Session:
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


def get(session: requests.Session, url: str, target: Target, deadline: Deadline) -> requests.Response:
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
        raise NotFound(f"the source cannot be reached ({reason(error)})") from None


def reason(error: BaseException) -> str:
    """The name of what went wrong underneath requests' and urllib3's wrappers."""
    for _ in range(5):
        inner = getattr(error, "reason", None) or (error.args[0] if error.args else None)
        if not isinstance(inner, BaseException):
            break
        error = inner
    return type(error).__name__
