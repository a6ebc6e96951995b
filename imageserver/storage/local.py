"""The default store: nothing remote. Local disk is then the only copy of every image."""
from __future__ import annotations

from imageserver.core.errors import NotFound
from imageserver.storage.base import Store


class NoRemoteStore(Store):
    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        pass

    def get(self, remote_path: str, local_path: str) -> None:
        raise NotFound(f"{remote_path} is not stored here")

    def list(self, remote_folder: str) -> list[str]:
        return []

    def make_folder(self, remote_folder: str) -> None:
        pass

    def delete(self, remote_path: str) -> None:
        pass

    def exists(self, remote_path: str) -> bool:
        return False

    def remove_folder(self, remote_folder: str) -> None:
        pass

    def describe(self) -> str:
        return "none: local disk holds the only copy of every image"
