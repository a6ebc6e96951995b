"""Purge: an image removed everywhere (DELETE /<ns>/<folder>, with --purge_key).

One purge, on the server that was asked:
  1. a record in the journal `.imageserver/purges/` (flushed to disk): a purge cut short from here
     on (a crash, a store down) is finished by the sweep at the next start, or a minute and a half
     later, or by the next purge of the image;
  2. a tombstone in the store, `<remote base>/.purged/<ns>.<hash>`, which every server sharing the
     store finds within --purge_poll_seconds;
  3. every object of the image's folder deleted from the store (then the folder, where Manta has one);
  4. every file of its local folder removed (original, info.json, outputs, its records .variants and
     .failed-*), so that nginx in front, which serves from disk, finds nothing either;
  5. the journal record crossed off.

Every other server runs `Sweep` in a thread of its gunicorn master: each --purge_poll_seconds it
lists the tombstones (one LIST request, of a page per 1000 tombstones) and removes its local copy of
each image it finds there (one stat per tombstone when there is no copy). A request costs nothing
more: a hit is served from disk as before, and once the copy is gone it is asked of the store, which
has nothing. The one request that could bring a purged image back, an output made from a local copy
of its original and stored (or a pending upload retried), is checked after its PUT (storage/guard.py:
one HEAD of the tombstone per object stored): found purged, the object is deleted again and the
request is a 404.

The same bytes uploaded again are a new image: an upload that finds its original missing from the
store lifts the tombstone (and this server's unfinished purge of it) before storing anything. A
tombstone seen for --purge_tombstone_seconds by a server is deleted by it.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time

from imageserver.core import files
from imageserver.core.errors import ImageServerError
from imageserver.core.metrics import Metrics
from imageserver.core.paths import ImageKey, state_folder
from imageserver.core.settings import Settings
from imageserver.storage import NoRemoteStore, Store
from imageserver.storage.guard import TOMBSTONE_NAME, tombstone, tombstone_folder

# A purge journaled this long ago is no longer being done by its request (gunicorn's worker timeout
# is 60 s): the sweep finishes it.
RESUME_AFTER_SECONDS = 90
# A child of gunicorn's error log: every purge reaches the server's log, at info level.
log = logging.getLogger("gunicorn.error.purge")

# Files of an image's local folder that a purge leaves to their holders: temporary files and claims
# of work in progress (the work is refused when it is stored: TombstoneGuard), cleared by the
# holder, the next sweep or the clean-up after a crash.
IN_PROGRESS = (".tmp", ".lock")


def remove_local(base: str, key: ImageKey) -> int:
    """Remove the image's files from local disk (its folder too, once empty); the number removed."""
    folder = key.local_folder(base)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    removed = 0
    for name in names:
        if not (name.startswith(".") and name.endswith(IN_PROGRESS)):
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except FileNotFoundError:
                pass
    files.remove_empty_folders(folder, stop=os.path.join(base, key.namespace))
    return removed


class Purges:
    """The purges asked of this server, and the lifting of a purge by a new upload."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics):
        self.base = settings.base_path
        self.remote_base = settings.remote_base_path
        self.store = store
        self.remote = not isinstance(store, NoRemoteStore)
        self.metrics = metrics
        self.journal = state_folder(self.base, "purges")
        self.durable = not settings.no_fsync     # files flushed to disk before they count as written

    def purge(self, key: ImageKey) -> dict:
        """Remove the image everywhere (idempotent: an image purged already, or never uploaded, is
        purged again at the cost of the requests that find so); what was removed."""
        record = self._record(key)
        files.write_atomically(record, json.dumps({"namespace": key.namespace, "hash": key.hash,
                                                   "purged_at": time.time()}).encode(), durable=self.durable)
        removed = self._finish(key, record)
        self.metrics.incr("purge")
        log.info("purged %s: %d objects from the store, %d local files", key.folder,
                 removed["store"], removed["local"])
        return removed

    def resume(self, written_before: float) -> int:
        """Finish the purges cut short (by a crash, or a store that failed) whose journal records
        were written before `written_before`; how many were finished."""
        try:
            names = [name for name in os.listdir(self.journal) if TOMBSTONE_NAME.fullmatch(name)]
        except FileNotFoundError:
            return 0
        finished = 0
        for name in names:
            record = os.path.join(self.journal, name)
            try:
                if os.stat(record).st_mtime >= written_before:
                    continue    # a purge that a request is doing now
            except FileNotFoundError:
                continue
            match = TOMBSTONE_NAME.fullmatch(name)
            if match is None:
                continue    # not a record of ours
            key = ImageKey(match["namespace"], match["hash"])
            removed = self._finish(key, record)
            finished += 1
            self.metrics.incr("purge.resumed")
            log.info("finished the purge of %s cut short before: %d objects from the store, %d "
                     "local files", key.folder, removed["store"], removed["local"])
        return finished

    def lift(self, key: ImageKey) -> None:
        """Before the image is uploaded again: no tombstone (nor a purge of this server's still to
        finish) may remove the new upload."""
        try:
            os.unlink(self._record(key))
        except FileNotFoundError:
            pass
        if self.remote:
            self.store.delete(tombstone(self.remote_base, key))

    def _finish(self, key: ImageKey, record: str) -> dict:
        stored = 0
        if self.remote:
            self.store.put(record, tombstone(self.remote_base, key), "application/json")
            stored = self._remove_from_store(key)
        local = remove_local(self.base, key)
        try:
            os.unlink(record)
        except FileNotFoundError:
            pass
        return {"store": stored, "local": local}

    def _remove_from_store(self, key: ImageKey) -> int:
        folder = key.remote_file(self.remote_base, "").rstrip("/")
        names = self.store.list(folder)
        for name in names:
            self.store.delete(f"{folder}/{name}")
        # Manta's folders: the image's, then its parents while they are empty (others' images
        # share them); the namespace's folder stays.
        for _ in range(4):
            self.store.remove_folder(folder)
            folder = folder.rsplit("/", 1)[0]
        return len(names)

    def _record(self, key: ImageKey) -> str:
        return os.path.join(self.journal, f"{key.namespace}.{key.hash}")


class Sweep:
    """In each server: finish the purges cut short here, and remove the local copies of images any
    server purged (found by their tombstones); delete the tombstones seen for long enough."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics):
        self.base = settings.base_path
        self.purges = Purges(settings, store, metrics)
        self.folder = tombstone_folder(settings.remote_base_path)
        self.keep_seconds = settings.purge_tombstone_seconds
        self.metrics = metrics
        self.first_seen: dict[str, float] = {}
        self.started = time.time()

    def once(self) -> int:
        """One pass; the number of local files removed."""
        # Those of a run before this one at once; this run's when older than any request may be.
        self.purges.resume(written_before=max(self.started, time.time() - RESUME_AFTER_SECONDS))
        if not self.purges.remote:
            return 0
        now = time.monotonic()
        names = [name for name in self.purges.store.list(self.folder) if TOMBSTONE_NAME.fullmatch(name)]
        self.first_seen = {name: self.first_seen.get(name, now) for name in names}
        removed = 0
        for name in names:
            match = TOMBSTONE_NAME.fullmatch(name)
            assert match is not None    # names were kept for matching
            key = ImageKey(match["namespace"], match["hash"])
            if os.path.isdir(key.local_folder(self.base)):
                here = remove_local(self.base, key)
                if here:
                    removed += here
                    self.metrics.incr("purge.swept", here)
                    log.info("removed %d local files of %s, purged by another server", here, key.folder)
            if now - self.first_seen[name] > self.keep_seconds:
                self.purges.store.delete(f"{self.folder}/{name}")
        return removed


def start(settings: Settings) -> threading.Thread | None:
    """The sweep, in a thread of the gunicorn master (it never loads ImageMagick): a first pass at
    once (finishing the purges a crash cut short), then one every --purge_poll_seconds."""
    from imageserver.core.metrics import build_metrics
    from imageserver.storage import build_store

    # Built here, before the thread starts: building them imports modules (a store's client, statsd),
    # and a thread of the master that is importing a module when gunicorn forks a worker leaves that
    # module's import lock held in the worker for ever (the worker hangs at its first import of it).
    sweep = Sweep(settings, build_store(settings), build_metrics(settings))

    first_pass = threading.Event()

    def run() -> None:
        while True:
            try:
                sweep.once()
            except ImageServerError as error:   # a store down: tried again at the next pass
                log.warning("purge sweep: %s", error.message)
            except Exception:   # the thread must outlive any one pass
                log.exception("purge sweep failed")
            first_pass.set()
            time.sleep(settings.purge_poll_seconds)

    thread = threading.Thread(target=run, name="purge-sweep", daemon=True)
    thread.start()
    # The first pass makes the store's first requests, and its client imports modules as it makes
    # them; gunicorn forks its workers right after this. Waiting for that pass keeps a fork from
    # catching an import half done (a store that does not answer holds start-up --store_timeout).
    first_pass.wait(settings.store_timeout)
    return thread
