"""A remote store that reports how long its transfers take (`download.time.store`, `upload.time.store`)."""
from __future__ import annotations

import builtins

from .base import Store


class TimedStore(Store):
    """Wraps a remote store; everything but the timing is the wrapped store's."""

    def __init__(self, store: Store, metrics):
        self.store, self.metrics = store, metrics

    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        with self.metrics.timer("upload.time.store"):
            self.store.put(local_path, remote_path, content_type)

    def get(self, remote_path: str, local_path: str) -> None:
        with self.metrics.timer("download.time.store"):
            self.store.get(remote_path, local_path)

    def list(self, remote_folder: str) -> list[str]:
        return self.store.list(remote_folder)

    def make_folder(self, remote_folder: str) -> None:
        self.store.make_folder(remote_folder)

    def delete(self, remote_path: str) -> None:
        self.store.delete(remote_path)

    def exists(self, remote_path: str) -> bool:
        return self.store.exists(remote_path)

    def remove_folder(self, remote_folder: str) -> None:
        self.store.remove_folder(remote_folder)

    def url(self, remote_path: str, base_url: str) -> str:
        return self.store.url(remote_path, base_url)

    def problems(self) -> builtins.list[str]:
        return self.store.problems()

    def describe(self) -> str:
        return self.store.describe()
