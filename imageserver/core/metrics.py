"""Counters and timers, sent to statsd over UDP. The default client does nothing, so the code never
asks whether it has one.

A metric is one UDP datagram sent without waiting for anything: when no statsd listens, or the network
refuses it, the datagram is dropped and the request goes on as if nothing had happened.

The statsd package's StatsClient writes and sends every metric, through its public methods, with one
exception: its socket is made non-blocking through the private `_sock`. A blocking UDP send waits
when the socket's send buffer is full (datagrams queued faster than the route to statsd takes them),
and a request would wait for its metrics; statsd 4.0.1 has no option for it (other clients,
datadog's and cadence, send non-blocking by default), and its send already drops the error a full
buffer then gives. The doctor's `probe` writes its one test line itself: it needs a connected
socket, which hears the refusal the package's unconnected client never sees.
"""
from __future__ import annotations

import logging
import socket
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import statsd

if TYPE_CHECKING:
    from imageserver.core.settings import Settings

log = logging.getLogger(__name__)


class NullMetrics:
    def incr(self, name: str, count: int = 1) -> None:
        pass

    def timing(self, name: str, milliseconds: float) -> None:
        pass

    def gauge(self, name: str, value: float) -> None:
        pass

    @contextmanager
    def timer(self, name: str):
        yield


# What every metrics object offers (NullMetrics's methods, which StatsdMetrics sends).
Metrics = NullMetrics


class StatsdMetrics(NullMetrics):
    """The statsd client of this process, created once (per worker) from the settings."""

    def __init__(self, host: str, port: int, prefix: str):
        family, address = udp_address(host, port)
        # The statsd package joins prefix and name with a dot; the original's prefix ends with one.
        self.client = statsd.StatsClient(address[0], address[1], prefix.rstrip(".") or None,
                                         ipv6=family == socket.AF_INET6)
        # A full send buffer drops the metric, never waits (see the module's docstring).
        self.client._sock.setblocking(False)

    def incr(self, name: str, count: int = 1) -> None:
        self.client.incr(name, count)

    def timing(self, name: str, milliseconds: float) -> None:
        self.client.timing(name, milliseconds)

    def gauge(self, name: str, value: float) -> None:
        self.client.gauge(name, value)

    @contextmanager
    def timer(self, name: str):
        """Time the block; a block that raises is not timed (its time says nothing of the work)."""
        start = time.perf_counter()
        yield
        self.timing(name, (time.perf_counter() - start) * 1000)


def udp_address(host: str, port: int) -> tuple[int, tuple]:
    """The address family and socket address for a UDP host, IPv4 or IPv6."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    return family, address


def build_metrics(settings: Settings) -> Metrics:
    """A statsd client when --statsd_host is set; a host that does not resolve only costs a warning."""
    if not settings.statsd_host:
        return NullMetrics()
    try:
        return StatsdMetrics(settings.statsd_host, settings.statsd_port, settings.statsd_prefix)
    except OSError as error:
        log.warning("statsd host %s cannot be used (%s): no metrics will be sent",
                    settings.statsd_host, error)
        return NullMetrics()


def probe(settings: Settings, wait_seconds: float = 0.5) -> str:
    """For doctor: why statsd cannot be reached, or "" when a test counter went without an error.

    statsd never answers, so a silent host is the best there is; but a host with nothing on the port
    usually says so (ICMP port unreachable), which a connected UDP socket reports as refused. The
    statsd package's client sends unconnected and drops every error, so this probe has its own socket.
    """
    try:
        family, address = udp_address(settings.statsd_host, settings.statsd_port)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(wait_seconds)
            sock.connect(address)
            sock.send(f"{settings.statsd_prefix.rstrip('.')}.doctor:1|c".lstrip(".").encode())
            try:
                sock.recv(1)
            except TimeoutError:
                pass
    except ConnectionRefusedError:
        return f"nothing listens on {settings.statsd_host}:{settings.statsd_port} (UDP)"
    except OSError as error:
        return f"{settings.statsd_host}:{settings.statsd_port}: {error.strerror or error}"
    return ""
