# gunicorn -c gunicorn.conf.py wsgi:app  (settings from IMG_* environment variables)
from imageserver.gunicorn_conf import *  # noqa: F401,F403
from imageserver.gunicorn_conf import from_settings
from imageserver.server import clear_leftovers
from imageserver.settings import Settings

globals().update(from_settings(Settings.from_env()))


def on_starting(server):
    clear_leftovers(Settings.from_env().base_path, server.log)
