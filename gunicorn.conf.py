# gunicorn -c gunicorn.conf.py wsgi:app  (settings from IMG_* environment variables)
from imageserver.gunicorn_conf import *  # noqa: F401,F403
