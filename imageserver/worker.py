"""The gunicorn worker: gunicorn's sync worker, with cache hits answered before gunicorn reads the
request (early_hits.py), the answers gunicorn writes itself in JSON, a reply's headers and body sent
together, and a connection closed at once after its reply when the client has sent nothing more.

gunicorn answers some requests before the app sees them (a request line over `limit_request_line`
is a 414, headers over their limits a 431, a malformed request a 400) and one the app could not
finish (cut off by the worker timeout); it writes those as HTML through `gunicorn.util.write_error`.
This worker has them written as the app writes its errors: {"error": "..."}, with `nosniff`.
"""
from __future__ import annotations

import datetime
import os
import socket

from gunicorn import util
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.sync import SyncWorker

from . import access_log, early_hits
from .json_text import pretty

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


def cork(client: socket.socket, on: bool) -> None:
    """Hold back partial segments (Linux's TCP_CORK) until uncorked; nothing where there is none."""
    if hasattr(socket, "TCP_CORK"):
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))
        except OSError:     # the client has gone (or the socket is closed): nothing to send
            pass


class JsonErrorWorker(SyncWorker):
    timed_out = False
    outputs = None    # the app's Outputs layer (web/hits.py), when hits are answered early

    def init_process(self):
        # gunicorn has no setting for the body of its own answers: this worker process swaps the
        # one function that writes them all (HTML) for ours (JSON), before it serves anything.
        util.write_error = write_json_error
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        self.outputs = self.wsgi.wsgi_app if self._answers_hits_early() else None

    def _answers_hits_early(self) -> bool:
        """Whether answering a hit here is what gunicorn would do: the app's first layer is the
        Outputs layer (not so under --profile), plain HTTP, our access log line, no request hooks
        and no path prefix."""
        # Imported here, after the fork: the Outputs layer loads ImageMagick, which the master (which
        # imports this module for the worker class) must never load.
        from .web.hits import Outputs
        cfg = self.cfg
        hooks_unset = all(cfg.settings[name].get() is type(cfg.settings[name]).default
                          for name in ("pre_request", "post_request"))
        return (isinstance(getattr(self.wsgi, "wsgi_app", None), Outputs) and not cfg.is_ssl
                and cfg.protocol == "http" and cfg.proxy_protocol in ("off", False, None)
                and cfg.access_log_format == access_log.FORMAT
                and isinstance(self.log, access_log.AccessLogger) and hooks_unset
                and "SCRIPT_NAME" not in os.environ and "SCRIPT_NAME" not in cfg.env)

    def handle(self, listener, client, addr):
        try:
            answered = self.outputs is not None and self._answered_early(client, addr)
        except SystemExit as stop:   # the worker timeout, while the client had sent nothing
            self.handle_error(None, client, addr, stop)    # answered as gunicorn's handle does
            util.close(client)
            return
        if not answered:
            super().handle(listener, client, addr)

    def _answered_early(self, client: socket.socket, addr) -> bool:
        """Answer a plain request for an output on disk (early_hits.py); False, with nothing read,
        for any other request."""
        started = datetime.datetime.now()
        try:
            request = early_hits.plain_request(client.recv(early_hits.HEAD_LIMIT, socket.MSG_PEEK),
                                               addr, self.cfg.limit_request_fields)
            answer = request and self.outputs.hit(request.environ)
        except OSError:
            return False
        except Exception:
            self.log.exception("Error answering a cache hit early; left to gunicorn")
            return False
        if not answer:
            return False
        environ = request.environ
        try:
            client.recv(request.length)    # the request, now that its answer is ours
            early_hits.send(client, early_hits.reply_head(environ["SERVER_PROTOCOL"],
                                                          answer.status, answer.headers),
                            answer.body)
        except OSError as error:
            self.log.debug("Client gone before its cache hit was sent: %s", error)
        finally:
            if answer.body is not None:
                answer.body.close()
            self.log.answered(answer.status, answer.headers, environ,
                              datetime.datetime.now() - started)
        self.nr += 1
        if self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        if nothing_unread(client):
            client.close()
        else:
            util.close_graceful(client)
        return True

    def handle_request(self, listener, req, client, addr):
        # gunicorn writes the headers, then the body (sendfile for a file): two segments and two
        # wake-ups of the client for a small output. Corked, the kernel sends them as one, when
        # uncorked right after the reply.
        cork(client, True)
        super().handle_request(listener, req, client, addr)
        cork(client, False)
        # The reply is sent. gunicorn then closes gracefully: it half-closes and waits for the
        # client to close first, draining what it sent, because closing with unread bytes in the
        # socket makes the kernel reset the connection, which can cut the reply short (RFC 9112,
        # 9.6). So a worker waits a round trip to the client before it takes the next connection.
        # With nothing unread a close cannot reset: close at once; gunicorn's close that follows
        # (`util.close_graceful`) then finds the socket closed and does nothing.
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
