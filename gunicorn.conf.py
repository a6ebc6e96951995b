# gunicorn -c gunicorn.conf.py wsgi:app  (settings from IMG_* environment variables)
from imageserver.core.settings import Settings
from imageserver.serving.gunicorn_conf import *  # noqa: F401,F403
from imageserver.serving.gunicorn_conf import from_settings
from imageserver.serving.server import clear_leftovers

globals().update(from_settings(Settings.from_env()))


def on_starting(server):
    clear_leftovers(Settings.from_env().base_path, server.log)


def when_ready(server):
    # In the master, as `images server` does: the sweeps of --maximum_local_bytes and of purges.
    from imageserver.images import eviction, purge
    eviction.start(Settings.from_env())
    purge.start(Settings.from_env())
