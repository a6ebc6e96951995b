"""The bounds of a download, from the settings: --http_timeout for the whole of it (connecting, the TLS
handshake, the status line, the headers and the body of every hop, together: see Deadline),
--maximum_source_bytes for its body, and which hosts and addresses it may reach.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imageserver.core.errors import GatewayTimeout

if TYPE_CHECKING:
    from imageserver.core.settings import Settings


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
