"""Where an image lives: namespace + MD5 hash -> the partitioned folder `<ns>/6e0/072/682/e66287...`.

The same relative path is used in URLs, on local disk and in the remote store, so that a file server
(nginx) can serve `<local_base_path>/<URL path>` directly.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from imageserver.core.errors import BadRequest, NotFound

NAMESPACE = re.compile(r"[a-z0-9_]{1,64}")
HASH = re.compile(r"[0-9a-f]{32}")
PARTITIONED = re.compile(r"[0-9a-f]{3}/[0-9a-f]{3}/[0-9a-f]{3}/[0-9a-f]{23}")
ORIGINAL = "original"
INFO = "info.json"
# The server's own state under --local_base_path (upload journal, source records, ...): a dot
# folder, which no URL reaches and the nginx block refuses to serve.
STATE_FOLDER = ".imageserver"


def state_folder(base_path: str, *parts: str) -> str:
    return os.path.join(base_path, STATE_FOLDER, *parts)
# Every file of an image is named by its content (hash, then output name), so it never changes:
# the app, the nginx block and the remote stores all send it with this.
CACHE_CONTROL = "public, max-age=31536000, immutable"
# The nginx block's internal location for the files of the store (X-Accel-Redirect): an output the
# app has checked (a signature, an alias) is sent by nginx from there. No client request reaches it.
ACCEL_LOCATION = "/.imageserver-files"
# The same files, for an answer to `.auto`: sent with `Vary: Accept` (nginx keeps no Vary of the app's).
ACCEL_LOCATION_VARY_ACCEPT = "/.imageserver-files-by-accept"
# The header the nginx block adds to every request it passes on (replacing any the client sent):
# only then does the app answer with X-Accel-Redirect instead of the file.
ACCEL_HEADER = "X-Image-Accel"


def check_namespace(namespace: str) -> str:
    if not NAMESPACE.fullmatch(namespace):
        raise BadRequest(f"namespace {namespace[:70]!r} must be 1 to 64 of a-z, 0-9 and _")
    return namespace


@dataclass(frozen=True)
class ImageKey:
    """One image: its namespace and the MD5 hex of its original's bytes."""
    namespace: str
    hash: str

    def __post_init__(self):
        check_namespace(self.namespace)
        if not HASH.fullmatch(self.hash):
            raise NotFound(f"{self.hash!r} is not an image hash")

    @classmethod
    def from_url_parts(cls, namespace: str, p1: str, p2: str, p3: str, rest: str) -> ImageKey:
        if not PARTITIONED.fullmatch(f"{p1}/{p2}/{p3}/{rest}"):
            raise NotFound("the image path must be /<namespace>/<3 hex>/<3 hex>/<3 hex>/<23 hex>/")
        return cls(namespace, p1 + p2 + p3 + rest)

    @classmethod
    def from_path(cls, path: str, namespace: str) -> ImageKey:
        """The key of a file whose path holds the partitioned hash: `.../6e0/072/682/e66.../original`."""
        matches = list(PARTITIONED.finditer(path.replace(os.sep, "/")))
        if not matches:
            raise BadRequest(f"{path!r} does not contain a partitioned image hash")
        return cls(namespace, matches[-1].group().replace("/", ""))

    @property
    def folder(self) -> str:
        """`p/6e0/072/682/e66287b662827da75b244a3`, relative, with forward slashes."""
        h = self.hash
        return f"{self.namespace}/{h[0:3]}/{h[3:6]}/{h[6:9]}/{h[9:]}"

    def local_folder(self, base_path: str) -> str:
        return os.path.join(base_path, *self.folder.split("/"))

    def local_file(self, base_path: str, name: str) -> str:
        return os.path.join(self.local_folder(base_path), name)

    def remote_file(self, remote_base_path: str, name: str) -> str:
        prefix = remote_base_path.strip("/")
        return f"{prefix}/{self.folder}/{name}" if prefix else f"{self.folder}/{name}"
