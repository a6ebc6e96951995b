"""Uploads still to do: outputs the store did not take when they were made, tried again until it does.

An output made for a GET is stored before the reply. When the store fails at that moment, the client
still gets its image, and the upload is written down here, as a small file in
`<local_base_path>/.imageserver/uploads/`, before the output appears on local disk; it is crossed off
only once the store has the object. A thread in every worker tries the uploads written down every
--upload_retry_seconds, whichever worker of this server comes to one first, also after a restart:
nothing is ever dropped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time

from imageserver.core import files
from imageserver.core.errors import ImageServerError, NotFound
from imageserver.core.metrics import Metrics
from imageserver.storage.base import Store

log = logging.getLogger(__name__)
LOCK_SECONDS = 600


class NoPendingUploads:
    """With nothing remote (and in the process command, which waits for every upload) nothing waits."""

    def write_down(self, local_path: str, remote_path: str, content_type: str) -> None:
        raise RuntimeError("there is no remote store to upload to later")

    def pending(self) -> int:
        return 0


class PendingUploads:
    def __init__(self, store: Store, folder: str, retry_seconds: float, metrics: Metrics, lock_timeout: float,
                 durable: bool = True):
        self.store = store
        self.durable = durable      # files flushed to disk before they count as written (not --no_fsync)
        self.folder = folder
        self.retry_seconds = retry_seconds
        self.metrics = metrics
        self.lock_timeout = lock_timeout
        self.thread = threading.Thread(target=self._run, name="uploads", daemon=True)

    def start(self) -> PendingUploads:
        """Start the retry thread: once in each worker, after the fork."""
        self.thread.start()
        return self

    def write_down(self, local_path: str, remote_path: str, content_type: str) -> None:
        """Remember an upload the store did not take; it is tried again in --upload_retry_seconds.

        Called before `local_path` is renamed into place, with that file's lock held: a retry takes
        the same lock, so it never finds the record without its file."""
        item = {"local_path": local_path, "remote_path": remote_path, "content_type": content_type}
        files.write_atomically(self._record(remote_path), json.dumps(item).encode(), durable=self.durable)

    def pending(self) -> int:
        """Uploads written down and not yet done, by every worker of this server."""
        return len(self._records(0))

    def _record(self, remote_path: str) -> str:
        return os.path.join(self.folder, hashlib.sha1(remote_path.encode()).hexdigest())

    def _run(self) -> None:
        while True:
            time.sleep(self.retry_seconds)
            for record in self._records(self.retry_seconds):
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
            with files.exclusive(record, LOCK_SECONDS, durable=self.durable):
                try:
                    item = json.loads(files.read(record))
                except FileNotFoundError:
                    return
                try:
                    # The request that wrote the record down renames the file into place under
                    # this lock: wait for it (its folder exists while that request runs).
                    if not os.path.isdir(os.path.dirname(item["local_path"])):
                        raise FileNotFoundError(item["local_path"])
                    with files.exclusive(item["local_path"], self.lock_timeout, durable=self.durable):
                        self.store.put(item["local_path"], item["remote_path"], item["content_type"])
                except FileNotFoundError:
                    log.warning("not uploading %s: its local file is gone", item["remote_path"])
                except NotFound as error:    # its image was purged meanwhile (purge.py)
                    log.warning("not uploading %s: %s", item["remote_path"], error.message)
                except ImageServerError as error:
                    self.metrics.incr("remote_upload_failed")
                    log.warning("upload of %s failed again (tried again in %g s): %s",
                                item["remote_path"], self.retry_seconds, error.message)
                    os.utime(record)
                    return
                os.unlink(record)
                log.info("stored %s, which failed before", item["remote_path"])
        except Exception:  # the thread must outlive any one upload
            log.exception("upload of %s failed", record)


# What holds the uploads that wait for the store: nothing (no remote store), or a folder of them.
Uploads = NoPendingUploads | PendingUploads
