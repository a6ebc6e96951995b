"""Running the app under gunicorn: its config and hooks, the worker class, the status listener,
the access log, the profiler, and `images server`.

Loaded by the gunicorn master, so nothing here imports ImageMagick at module level."""
