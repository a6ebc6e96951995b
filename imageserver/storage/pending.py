"""Uploads a reply does not wait for: outputs made on demand reach the store from a background thread.

Each upload is first written down as a small file in `<local_base_path>/.imageserver/uploads/`, and
crossed off only once the store has the object. One that fails (the store is down, the worker was
stopped) is logged, counted (`remote_upload_failed`) and tried again every --upload_retry_seconds by
whichever worker of this server comes to it first: it is never dropped silently.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time

from .. import files
from ..errors import ImageServerError
from .base import Store

log = logging.getLogger(__name__)
LOCK_SECONDS = 600


class ImmediateUploads:
    """Uploads done before the reply (the process command, and servers with nothing remote)."""

    def __init__(self, store: Store):
        self.store = store

    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        self.store.put(local_path, remote_path, content_type)

    def pending(self) -> int:
        return 0


class BackgroundUploads:
    def __init__(self, store: Store, folder: str, retry_seconds: float, metrics):
        self.store = store
        self.folder = folder
        self.retry_seconds = retry_seconds
        self.metrics = metrics
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="uploads", daemon=True)

    def start(self) -> "BackgroundUploads":
        """Start the thread: once in each worker, after the fork."""
        self.thread.start()
        return self

    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        """Write the upload down, and leave it to the background thread."""
        record = os.path.join(self.folder, hashlib.sha1(remote_path.encode()).hexdigest())
        item = {"local_path": local_path, "remote_path": remote_path, "content_type": content_type}
        files.write_atomically(record, json.dumps(item).encode())
        self.queue.put(record)

    def pending(self) -> int:
        """Uploads written down and not yet done, by every worker of this server."""
        return len(self._records(0))

    def _run(self) -> None:
        next_sweep = time.monotonic()
        while True:
            try:
                record = self.queue.get(timeout=max(0.0, next_sweep - time.monotonic()))
            except queue.Empty:
                for old in self._records(self.retry_seconds):
                    self._upload(old)
                next_sweep = time.monotonic() + self.retry_seconds
                continue
            self._upload(record)

    def _records(self, older_than: float) -> list[str]:
        """Records last tried (or written) at least `older_than` seconds ago."""
        limit = time.time() - older_than
        try:
            names = [name for name in os.listdir(self.folder) if not name.startswith(".")]
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            path = os.path.join(self.folder, name)
            try:
                if os.stat(path).st_mtime <= limit:
                    found.append(path)
            except FileNotFoundError:
                pass
        return found

    def _upload(self, record: str) -> None:
        """Do one upload, unless another worker did it; on failure leave it for the next sweep."""
        try:
            with files.exclusive(record, LOCK_SECONDS):
                try:
                    item = json.loads(files.read(record))
                except FileNotFoundError:
                    return
                try:
                    self.store.put(item["local_path"], item["remote_path"], item["content_type"])
                except FileNotFoundError:
                    log.warning("not uploading %s: its local file is gone", item["remote_path"])
                except ImageServerError as error:
                    self.metrics.incr("remote_upload_failed")
                    log.warning("upload of %s failed (tried again in %g s): %s",
                                item["remote_path"], self.retry_seconds, error.message)
                    os.utime(record)
                    return
                os.unlink(record)
        except Exception:  # the thread must outlive any one upload
            log.exception("upload of %s failed", record)
