"""`images server`: gunicorn run in this process through its application API, with the status port,
the drain on SIGTERM/SIGINT and the --profile listener around it.

The master binds every socket before it forks: the app's port (gunicorn), the status port (served
by a thread in the master) and the debug port (served by a thread in each worker, which share it).
"""
from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from imageserver.core import files, shared
from imageserver.core.settings import Settings
from imageserver.images import eviction, purge
from imageserver.serving import listeners

if TYPE_CHECKING:
    from gunicorn.glogging import Logger


class GracefulArbiter(Arbiter):
    """SIGTERM and SIGINT stop gracefully: the status check says "Shutting down" at once, the
    server keeps serving for --drain_seconds so that a load balancer can take it out, then stops
    accepting and lets in-flight requests finish (up to graceful_timeout). A second signal during
    the drain stops at once (still gracefully)."""
    log: Logger        # Arbiter.__init__ sets it (its stubs say it may be None)

    def __init__(self, app: Server):
        self.stopping = app.stopping
        self.drain_seconds = app.settings.drain_seconds
        self.drain_ends: float | None = None
        super().__init__(app)

    def handle_term(self):
        self.stopping.set()
        if self.drain_ends is not None or not self.drain_seconds:
            raise StopIteration
        self.drain_ends = time.monotonic() + self.drain_seconds
        self.log.info("Draining: /status_check answers 501 for %g s, then the server stops",
                      self.drain_seconds)

    def handle_int(self):
        self.handle_term()

    def wait_for_signals(self, timeout=1.0):
        if self.drain_ends is not None:
            timeout = max(0.0, min(timeout, self.drain_ends - time.monotonic()))
        signals = super().wait_for_signals(timeout)
        if self.drain_ends is not None and time.monotonic() >= self.drain_ends and not signals:
            raise StopIteration
        return signals


class Server(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stopping = shared.StopFlag()
        self.debug_socket: socket.socket | None = None
        super().__init__()

    def load_config(self):
        from imageserver.serving import gunicorn_conf
        gunicorn_conf.configure(self.cfg, self.settings)

    def load(self):
        """The app, in a worker after the fork; with the profiler and its listener under --profile."""
        from imageserver.web.app import create_app
        app = create_app(self.settings, stopping=self.stopping)
        if self.debug_socket is not None:
            from imageserver.serving.debug import Profiler
            profiler = Profiler()
            app.wsgi_app = profiler.wrap(app.wsgi_app)  # type: ignore[method-assign]  # Flask's way
            listeners.serve_in_thread(self.debug_socket, listeners.debug_routes(profiler),
                                      "debug-listener")
        return app

    def run(self):
        """Bind the side ports (a busy port stops start-up here), then run gunicorn's master."""
        settings = self.settings
        status_socket = None
        if settings.status_port:
            status_socket = listeners.bind(settings.listen, settings.status_port, "--status_port")
        if settings.profile:
            self.debug_socket = listeners.bind("127.0.0.1", settings.profile_port, "--profile_port")
        arbiter = GracefulArbiter(self)
        clear_leftovers(settings.base_path, arbiter.log)
        if status_socket is not None:
            listeners.serve_in_thread(status_socket, listeners.status_routes(
                self.stopping, lambda: len(arbiter.WORKERS)), "status-listener")
        eviction.start(settings)
        purge.start(settings)
        arbiter.run()


def clear_leftovers(base: str, log) -> None:
    """The temporary and lock files of a crash go, in a thread of the master: it walks the whole
    store (a store of 100,000 images took 36 s with a cold disk cache), and the server does not
    wait for it. Until then a leftover is harmless: nothing serves a name starting with a dot, and a
    claim whose holder died is taken over by the next request for its file."""
    started = time.time()

    def clear() -> None:
        removed = files.clear_leftovers(base, made_before=started)
        if removed:
            log.info("Removed %d temporary and lock files left under %s by a previous run", removed,
                     base)

    threading.Thread(target=clear, name="leftovers", daemon=True).start()
