"""A remote store that does not let a purged image come back (see purge.py): each object of an image,
once stored, is checked against the image's tombstone `<remote base>/.purged/<ns>.<hash>`."""
from __future__ import annotations

import re

from imageserver.core.errors import NotFound
from imageserver.core.paths import ImageKey
from imageserver.storage.base import Store, WrappedStore

TOMBSTONES = ".purged"
TOMBSTONE_NAME = re.compile(r"(?P<namespace>[a-z0-9_]{1,64})\.(?P<hash>[0-9a-f]{32})")
# An image's object in the store: `<ns>/<3 hex>/<3 hex>/<3 hex>/<23 hex>/<name>` under the base.
IMAGE_OBJECT = re.compile(r"(?P<namespace>[a-z0-9_]{1,64})/(?P<h1>[0-9a-f]{3})/(?P<h2>[0-9a-f]{3})/"
                          r"(?P<h3>[0-9a-f]{3})/(?P<rest>[0-9a-f]{23})/[^/]+")


def tombstone_folder(remote_base: str) -> str:
    prefix = remote_base.strip("/")
    return f"{prefix}/{TOMBSTONES}" if prefix else TOMBSTONES


def tombstone(remote_base: str, key: ImageKey) -> str:
    return f"{tombstone_folder(remote_base)}/{key.namespace}.{key.hash}"


class TombstoneGuard(WrappedStore):
    """A remote store whose every object of an image, once stored, is checked against the image's
    tombstone (one HEAD): an image purged meanwhile is not brought back by an output made from a
    local copy of its original, nor by a retried upload; the object goes again, and NotFound."""

    def __init__(self, store: Store, remote_base: str):
        super().__init__(store)
        self.remote_base = remote_base.strip("/")

    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        self.store.put(local_path, remote_path, content_type)
        key = self._image(remote_path)
        if key is not None and self.store.exists(tombstone(self.remote_base, key)):
            self.store.delete(remote_path)
            raise NotFound(f"image {key.hash} of namespace {key.namespace} was purged")

    def _image(self, remote_path: str) -> ImageKey | None:
        prefix = f"{self.remote_base}/" if self.remote_base else ""
        if not remote_path.startswith(prefix):
            return None
        match = IMAGE_OBJECT.fullmatch(remote_path[len(prefix):])
        if match is None:
            return None
        return ImageKey(match["namespace"], match["h1"] + match["h2"] + match["h3"] + match["rest"])
