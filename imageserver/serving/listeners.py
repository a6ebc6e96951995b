"""The small HTTP listeners beside the app: the status port (in the gunicorn master) and the --profile
debug port (in each worker). Plain `http.server` in a daemon thread each, with a thread for each
connection, bounded in number and time.

They live outside `web/` on purpose: importing `web` loads ImageMagick, and the master must never
load it (its threads do not survive a fork). Nothing here imports the pipeline.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from imageserver.core.errors import BadRequest, ImageServerError, NotFound, SettingsError
from imageserver.core.json_text import pretty
from imageserver.core.shared import StopFlag
from imageserver.core.version import __version__


def bind(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket, or a SettingsError saying which listener could not have its port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise SettingsError(f"{what}: cannot listen on {host}:{port} ({error.strerror})") from None
    sock.listen(64)
    return sock


# What one listener holds at once (the status port in the master, the debug port in each worker):
# connections, each with its own thread. A load balancer's check is one short request, answered at
# once; a connection that has sent nothing is dropped to make room for a new one.
MAX_CONNECTIONS = 16
# The time a client has to send its whole request, and again to take the answer: one that sends
# nothing, or trickles, is dropped.
REQUEST_SECONDS = 5
# How long a new connection waits for the thread of a dropped one to end, at the cap.
ROOM_SECONDS = 1


class _Server(HTTPServer):
    """An HTTP server on a socket bound beforehand (in the master, before the fork), a thread for
    each connection, at most MAX_CONNECTIONS of them.

    Nothing it holds reaches a forked child: gunicorn forks every worker from the master while the
    status listener runs, and a child keeps its copies of the parent's descriptors forever."""
    routes: dict        # path -> route, set by serve_in_thread

    def __init__(self, sock: socket.socket, handler):
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        # Workers share the debug port: whichever listener is woken second must not wait in accept().
        sock.setblocking(False)
        # Each accepted connection, in the order accepted: the time by which its request must have
        # been read, or None once it has been (or once it was dropped).
        self._connections: dict[socket.socket, float | None] = {}
        self._lock = threading.Condition()
        os.register_at_fork(before=self._lock.acquire, after_in_parent=self._lock.release,
                            after_in_child=self._close_in_child)

    def get_request(self):
        with self._lock:     # a fork never falls between the accept and the record of it
            connection, address = self.socket.accept()
            self._connections[connection] = time.monotonic() + REQUEST_SECONDS
        return connection, address

    def process_request(self, connection, address):
        if self._make_room():
            threading.Thread(target=self._serve, args=(connection, address), daemon=True).start()
        else:
            self.shutdown_request(connection)

    def _make_room(self) -> bool:
        """Whether the connection just accepted may have its thread. At the cap, the oldest
        connection still to send its request is dropped for it; when every other one is being
        answered, the new one is closed."""
        with self._lock:
            if len(self._connections) <= MAX_CONNECTIONS:
                return True
            waiting = [each for each, deadline in self._connections.items() if deadline is not None]
            if len(waiting) < 2:     # the new one itself is the last
                return False
            self._drop(waiting[0])
            return self._lock.wait_for(lambda: len(self._connections) <= MAX_CONNECTIONS,
                                       ROOM_SECONDS)

    def _serve(self, connection, address):
        try:
            self.finish_request(connection, address)
        except Exception:
            self.handle_error(connection, address)
        finally:
            self.shutdown_request(connection)

    def request_read(self, connection) -> None:
        """The connection's request is in: it is being answered, and no longer dropped for time."""
        with self._lock:
            if connection in self._connections:
                self._connections[connection] = None

    def service_actions(self):
        """Drops the connections whose request is not in by its time (serve_forever calls this at
        least every half second)."""
        now = time.monotonic()
        with self._lock:
            late = [each for each, deadline in self._connections.items()
                    if deadline is not None and deadline < now]
            for connection in late:
                self._drop(connection)

    def _drop(self, connection) -> None:
        """Ends the connection under its thread, which is reading it (the thread closes it)."""
        self._connections[connection] = None
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def shutdown_request(self, connection):
        with self._lock:     # forgotten and closed at once, as a fork sees it
            self._connections.pop(connection, None)
            super().shutdown_request(connection)
            self._lock.notify_all()

    def handle_error(self, connection, address):
        if not isinstance(sys.exc_info()[1], OSError):    # a client gone, or dropped: nothing to say
            super().handle_error(connection, address)

    def _close_in_child(self):
        """In a forked child (a new worker): the listening socket and every connection closed. The
        child is one thread, so the objects are as the fork found them; detached first, so that no
        later collection of them closes a number the child has reused."""
        for sock in [self.socket, *self._connections]:
            if sock.fileno() >= 0:     # not a listener closed before (in a test)
                os.close(sock.detach())
        self._connections.clear()
        self._lock.release()


class _Handler(BaseHTTPRequestHandler):
    """Answers GET and HEAD from `self.server.routes[path](query) -> (status, content_type, body)`."""
    server: _Server
    server_version = "imageserver"
    # A request line too broken to name its version is answered with a status line and headers
    # (http.server's default, HTTP/0.9, would send the JSON body bare).
    default_request_version = "HTTP/1.0"
    # The socket's timeout: for each read of the request, and for the whole answer's write.
    timeout = REQUEST_SECONDS

    def parse_request(self) -> bool:
        parsed = super().parse_request()       # reads the headers too
        self.server.request_read(self.connection)
        return parsed

    def do_HEAD(self):
        self.do_GET(send_body=False)

    def do_GET(self, send_body: bool = True):
        parts = urlsplit(self.path)
        route = self.server.routes.get(parts.path)
        try:
            if route is None:
                raise NotFound(f"no such page: {parts.path}")
            status, content_type, body = route(parse_qs(parts.query))
        except ImageServerError as error:
            status = error.status
            content_type, body = "application/json", _json({"error": error.message})
        self._answer(status, content_type, body, send_body)

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (another method, a bad or overlong request line) as JSON too."""
        reason = message or self.responses.get(code, ("error",))[0]
        self._answer(code, "application/json", _json({"error": reason}),
                     send_body=self.command != "HEAD" and code >= 200 and code not in (204, 304))

    def _answer(self, status: int, content_type: str, body: bytes, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, *args):
        pass   # load balancers ask every few seconds; those lines would drown the access log


def serve_in_thread(sock: socket.socket, routes: dict, name: str) -> _Server:
    server = _Server(sock, _Handler)
    server.routes = routes
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def _json(body: dict) -> bytes:
    return pretty(body)


def status_routes(stopping: StopFlag, worker_count: Callable[[], int]) -> dict:
    """The status port, answered by the master: never queued behind busy workers."""

    def status_check(query):
        workers = worker_count()
        if stopping.is_set():
            status, message = 501, "Shutting down"
        elif workers == 0:
            status, message = 503, "No worker is running"
        else:
            status, message = 200, "OK"
        return status, "application/json", _json(
            {"version": __version__, "message": message, "workers": workers})

    return {"/status_check": status_check}


def debug_routes(profiler) -> dict:
    """The --profile port, answered by whichever worker accepts the connection."""

    def index(query):
        text = (f"worker {os.getpid()}\n"
                "/debug/profile?seconds=N  CPU profile of this worker's requests for N seconds "
                "(pstats: python -m pstats FILE, or snakeviz FILE)\n"
                "/debug/heap?limit=N       the N lines of Python code holding the most memory\n")
        return 200, "text/plain; charset=utf-8", text.encode()

    def profile(query):
        seconds = _number(query, "seconds", 30, 1, 600)
        return 200, "application/octet-stream", profiler.cpu_profile(seconds)

    def heap(query):
        limit = int(_number(query, "limit", 25, 1, 1000))
        return 200, "text/plain; charset=utf-8", profiler.heap_top(limit).encode()

    return {"/": index, "/debug": index, "/debug/profile": profile, "/debug/heap": heap}


def _number(query: dict, name: str, default: float, low: float, high: float) -> float:
    text = query.get(name, [str(default)])[0]
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name} must be a number, not {text!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be {low:g}..{high:g}, not {text}")
    return value
