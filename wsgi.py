"""The WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, settings from IMG_* variables."""
from imageserver import create_app

app = create_app()
