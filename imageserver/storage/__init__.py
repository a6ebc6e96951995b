"""Storage backends behind one contract (`base.Store`); `build_store` picks one from the settings."""
from __future__ import annotations

from imageserver.core.errors import SettingsError
from imageserver.core.metrics import Metrics
from imageserver.core.paths import state_folder
from imageserver.core.settings import Settings
from imageserver.storage.base import Store
from imageserver.storage.guard import TombstoneGuard
from imageserver.storage.local import NoRemoteStore
from imageserver.storage.pending import NoPendingUploads, PendingUploads, Uploads
from imageserver.storage.timed import TimedStore


def build_store(settings: Settings, metrics: Metrics | None = None) -> Store:
    """S3 when --aws_bucket is set, Manta when --manta_url is, else nothing remote; with `metrics`,
    a remote store reports the time of its transfers. A remote store refuses to bring back a purged
    image (guard.py). A bad combination of settings is a SettingsError."""
    remote = _remote_store(settings)
    if remote is None:
        return NoRemoteStore()
    if metrics is not None:
        remote = TimedStore(remote, metrics)
    return TombstoneGuard(remote, settings.remote_base_path)


def _remote_store(settings: Settings) -> Store | None:
    if settings.aws_bucket and settings.manta_url:
        raise SettingsError("give --aws_bucket or --manta_url, not both: one store at a time")
    if settings.aws_bucket:
        from imageserver.storage.s3 import S3Store
        return S3Store(settings)
    if settings.manta_url:
        from imageserver.storage.manta import MantaStore
        return MantaStore(settings)
    return None


def build_uploads(settings: Settings, metrics: Metrics) -> tuple[Store, Uploads]:
    """The store, and the uploads still to do: outputs made for a GET that the store did not take at
    once, retried by a thread of this worker (when there is a remote store)."""
    store = build_store(settings, metrics)
    if isinstance(store, NoRemoteStore):
        return store, NoPendingUploads()
    folder = state_folder(settings.base_path, "uploads")
    return store, PendingUploads(store, folder, settings.upload_retry_seconds, metrics,
                                 settings.lock_timeout, durable=not settings.no_fsync).start()
