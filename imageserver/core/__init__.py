"""The core: settings, the grammar of output names and stored paths, signing, durable files, errors.

Imports nothing above it, and nothing of ImageMagick: the gunicorn master uses it."""
