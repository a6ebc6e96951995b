"""`images server`: gunicorn run in this process through its application API."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from .settings import Settings


class GracefulArbiter(Arbiter):
    """SIGINT stops as gracefully as SIGTERM: in-flight requests finish (up to graceful_timeout)."""

    def handle_int(self):
        self.handle_term()


class Server(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self):
        from . import gunicorn_conf
        for name, value in vars(gunicorn_conf).items():
            if name in self.cfg.settings:
                self.cfg.set(name, value)
        self.cfg.set("bind", [f"{self.settings.listen}:{self.settings.port}"])
        self.cfg.set("workers", self.settings.worker_count)

    def load(self):
        from . import create_app
        return create_app(self.settings)

    def run(self):
        GracefulArbiter(self).run()
