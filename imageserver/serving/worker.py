"""The gunicorn worker: gunicorn's sync worker, with the answers gunicorn writes itself in JSON, and
a connection closed at once after its reply when the client has sent nothing more. Every request is
read by gunicorn and answered by the Flask app; cache hits at scale are nginx's (nginx.py).

gunicorn answers some requests before the app sees them (a request line over `limit_request_line`
is a 414, headers over their limits a 431, a malformed request a 400) and one the app could not
finish (cut off by the worker timeout); it writes those as HTML through `gunicorn.util.write_error`.
This worker has them written as the app writes its errors: {"error": "..."}, with `nosniff`.
"""
from __future__ import annotations

import datetime
import socket

from gunicorn import util
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.sync import SyncWorker

from imageserver.core.json_text import pretty

# gunicorn's own message for an error of the app is empty; ours says what the app says.
INTERNAL_ERROR = "internal error"


def write_json_error(sock, status: int, reason: str, message: str) -> None:
    """gunicorn's `util.write_error`, with a JSON body laid out as the app's (web.error_response)."""
    body = pretty({"error": message or INTERNAL_ERROR})
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Content-Type-Options: nosniff\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def nothing_unread(client: socket.socket) -> bool:
    """True when the client has sent nothing left unread (or has closed); never waits."""
    try:
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return True
    except OSError:
        return False


class JsonErrorWorker(SyncWorker):
    timed_out = False

    def init_process(self):
        # gunicorn has no setting for the body of its own answers: this worker process swaps the
        # one function that writes them all (HTML) for ours (JSON), before it serves anything.
        util.write_error = write_json_error  # type: ignore[assignment]  # gunicorn's parameter names
        super().init_process()

    def handle_request(self, listener, req, client, addr):
        super().handle_request(listener, req, client, addr)
        # The reply is sent. gunicorn then closes gracefully: it half-closes and waits for the
        # client to close first, draining what it sent, because closing with unread bytes in the
        # socket makes the kernel reset the connection, which can cut the reply short (RFC 9112,
        # 9.6). So a worker waits a round trip to the client before it takes the next connection.
        # With nothing unread a close cannot reset: close at once; gunicorn's own close that follows
        # then finds the socket closed and does nothing.
        if not self.cfg.is_ssl and nothing_unread(client):
            client.close()

    def handle_abort(self, sig, frame):
        # The master sends SIGABRT to a worker whose request has run past the timeout; gunicorn
        # then raises SystemExit in the middle of that request.
        self.timed_out = True
        super().handle_abort(sig, frame)

    def handle_error(self, req, client, addr, exc):
        if not (self.timed_out and isinstance(exc, SystemExit)):
            super().handle_error(req, client, addr, exc)
            return
        # Not gunicorn's 500: the request was not wrong, it was too slow for this server now.
        self.log.error("Request cut off by the worker timeout (%s s): %s %s", self.cfg.timeout,
                       getattr(req, "method", "-"), getattr(req, "uri", "-"))
        message = (f"the request took longer than the {self.cfg.timeout:g} s a worker may spend "
                   f"on one, and was stopped")
        if req is not None:
            self._log_access(req, client, addr, "503 Service Unavailable")
        try:
            write_json_error(client, 503, "Service Unavailable", message)
        except OSError:
            self.log.debug("Failed to send the timeout answer.")

    def _log_access(self, req, client, addr, status: str) -> None:
        """The access log line gunicorn writes for the answers it makes itself."""
        addr = addr or ("", -1)
        environ = default_environ(req, client, self.cfg)
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
        response = Response(req, client, self.cfg)
        response.status = status
        self.log.access(response, req, environ, datetime.timedelta(0))
