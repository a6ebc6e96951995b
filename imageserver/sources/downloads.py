"""Source URLs downloaded once, however many requests ask for the same one at once, in any worker of
any server sharing the local disk.

Each URL has a record under `.imageserver/sources/downloads/`, a small file named by the URL's MD5 that holds
the hash of the image made from it. The first request takes the record's lock and downloads; those
that waited for it find the record fresh and use that image. Records are swept away once older than
REUSE_SECONDS, by the first source request to come by when a sweep is due.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from imageserver.core import files
from imageserver.core.errors import ImageServerError, NotFound
from imageserver.core.paths import INFO, ImageKey, state_folder
from imageserver.sources import fetch, sweep
from imageserver.sources.bounds import SourceRules

if TYPE_CHECKING:
    from imageserver.core.metrics import Metrics
    from imageserver.core.settings import Settings

# A source URL downloaded this recently is not downloaded again by requests that waited for it.
REUSE_SECONDS = 60


class SourceDownloads:
    def __init__(self, settings: Settings, metrics: Metrics):
        self.base = settings.base_path
        self.lock_timeout = settings.lock_timeout
        self.durable = not settings.no_fsync     # files flushed to disk before they count as written
        self.rules = SourceRules.from_settings(settings)
        self.metrics = metrics

    def once(self, namespace: str, url: str, create: Callable[[bytes], bytes],
             reuse: Callable[[ImageKey], bytes]) -> bytes:
        """`create(data)` with the bytes at `url`, downloaded now; or, when a request this one waited
        for has just done so, `reuse(key)` of the image it made. Either returns the info JSON."""
        record = state_folder(self.base, "sources", hashlib.md5(url.encode()).hexdigest())
        sweep.now_and_then(os.path.dirname(record), REUSE_SECONDS)
        with files.exclusive(record, self.lock_timeout, durable=self.durable):
            key = self._recent(namespace, record)
            if key is None:
                info = create(self._download(url))
                files.write_atomically(record, json.loads(info)["hash"].encode(), durable=self.durable)
                return info
        # Outside the lock: the requests that waited may go on with the image side by side.
        return reuse(key)

    def _download(self, url: str) -> bytes:
        try:
            with self.metrics.timer("download.time.source"):
                data = fetch.download(url, self.rules)
        except NotFound:
            self.metrics.incr("original_unavailable")
            raise
        self.metrics.incr("original_downloaded")
        return data

    def _recent(self, namespace: str, record: str) -> ImageKey | None:
        """The image a fresh record names, if it is still on local disk."""
        try:
            if time.time() - os.stat(record).st_mtime > REUSE_SECONDS:
                return None
            key = ImageKey(namespace, files.read(record).decode())
        except (OSError, ImageServerError):
            return None
        return key if os.path.exists(key.local_file(self.base, INFO)) else None
