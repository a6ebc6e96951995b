"""The use cases: upload, make and serve an output, info, purge; the local cache, the budgets of
variants and disk space, and the sweeps of the local disk.

service.py loads ImageMagick; eviction and purge run in the gunicorn master too, and do not."""
