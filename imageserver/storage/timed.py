"""A remote store that reports how long its transfers take (`download.time.store`, `upload.time.store`)."""
from __future__ import annotations

from imageserver.core.metrics import Metrics
from imageserver.storage.base import Store, WrappedStore


class TimedStore(WrappedStore):
    """Wraps a remote store; everything but the timing is the wrapped store's."""

    def __init__(self, store: Store, metrics: Metrics):
        super().__init__(store)
        self.metrics = metrics

    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        with self.metrics.timer("upload.time.store"):
            self.store.put(local_path, remote_path, content_type)

    def get(self, remote_path: str, local_path: str) -> None:
        with self.metrics.timer("download.time.store"):
            self.store.get(remote_path, local_path)
