"""gunicorn's settings for this app: fixed ones here, and those taken from our Settings in
`from_settings`. `images server` applies both; the top-level gunicorn.conf.py does the same for plain
gunicorn, with Settings from the environment alone. (Nothing here reads the environment at import:
`images server` has flags that the environment does not know.)

Sync workers, one per core: each request is CPU work in ImageMagick, so more workers than cores only
add memory. ImageMagick is loaded by each worker after the fork (the app is not preloaded), and set
up there (post_worker_init), because its OpenMP threads do not survive a fork.
"""
import signal
from typing import TYPE_CHECKING

from imageserver.core import shared  # noqa: F401  (made here, in the master, to be shared by workers)
from imageserver.serving import access_log

if TYPE_CHECKING:
    from imageserver.core.settings import Settings

# gunicorn's sync worker, answering the requests gunicorn refuses itself in JSON (worker.py).
worker_class = "imageserver.serving.worker.JsonErrorWorker"
preload_app = False
timeout = 60
graceful_timeout = 30
keepalive = 5
# A worker is replaced after 9,000 to 11,000 requests (gunicorn adds 0 to max_requests_jitter to
# max_requests, for each worker its own): whatever a long-lived process gathers (ImageMagick's caches,
# a fragmented heap) is given back now and then, and the workers, started together, are not replaced
# together. A replacement costs about a second of one worker's set-up (init_worker), once every few
# minutes at the busiest (a worker at 50 requests a second): under 0.1% of its time.
max_requests = 9000
max_requests_jitter = 2000
# One line per request (access_log.py), written by our logger: the same line as gunicorn's, cheaper.
access_log_format = access_log.FORMAT
logger_class = "imageserver.serving.access_log.AccessLogger"
# Bodies are read by the app with its own limit; headers stay bounded here (414 and 431, in JSON).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190


def post_worker_init(worker):
    # Ctrl-C reaches the whole process group: let the master turn it into a graceful stop, so that
    # the worker finishes the request it is on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # In the worker only, after the fork, with the app loaded and before its first request:
    # ImageMagick's policy and limits, then a worker in which ImageMagick kept the remains of a
    # failed image finishes its request and is replaced.
    from imageserver.images.setup import set_up_server_worker
    set_up_server_worker(worker_settings(worker), retire=lambda: setattr(worker, "alive", False))


def worker_settings(worker) -> "Settings":
    """The settings the worker's app was built with (by `images server`, or by wsgi.py from the
    environment): the app is loaded by the time post_worker_init runs."""
    return worker.wsgi.extensions["images"].settings


def configure(cfg, settings: "Settings") -> None:
    """gunicorn's `cfg` as `images server` runs it: the fixed settings of this module, then those
    that come from ours."""
    for name, value in list(globals().items()):
        if name in cfg.settings:
            cfg.set(name, value)
    for name, value in from_settings(settings).items():
        cfg.set(name, value)


def from_settings(settings: "Settings") -> dict:
    """The gunicorn settings that come from ours."""
    return {"bind": [f"{settings.listen}:{settings.port}"], "workers": settings.worker_count,
            "accesslog": settings.access_log or None}


# gunicorn 24+ opens a control socket at one fixed path per user; several servers on one host (and
# the tests) would fight over it, and nothing here uses it.
control_socket_disable = True
