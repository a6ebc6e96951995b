"""Where an image's files are kept: on local disk alone (`LocalOnly`), or on local disk in front of a
remote store that keeps every image for good, shared by every server (`LocalCache`: S3, Manta).

Local disk is laid out as the URLs are, and it is what is served (nginx reads it too). In front of a
store it is a cache: an original or info.json appears on it only once the store has it, so a failed
upload leaves nothing behind, and an output made for a GET is stored before it appears (when the
store fails then, it appears all the same and its upload is written down, to be retried:
storage/pending.py).
"""
from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager

from imageserver.core import files
from imageserver.core.errors import NotFound, StoreError, Unavailable
from imageserver.core.metrics import Metrics
from imageserver.core.names import OutputSpec
from imageserver.core.paths import ORIGINAL, ImageKey
from imageserver.core.settings import Settings
from imageserver.storage import NoRemoteStore, Store
from imageserver.storage.pending import NoPendingUploads, Uploads

log = logging.getLogger(__name__)

# What the store answers when asked for an output another server may have made.
FETCHED, ABSENT, DOWN = "fetched", "absent", "down"


def local_disk(settings: Settings, store: Store, metrics: Metrics,
               uploads: Uploads | None = None) -> LocalOnly | LocalCache:
    """Local disk alone when nothing is remote, else in front of `store`. Both answer the same
    methods; the use cases (images.py) never ask which one they have."""
    if isinstance(store, NoRemoteStore):
        return LocalOnly(settings, metrics)
    return LocalCache(settings, metrics, store, uploads or NoPendingUploads())


class LocalOnly:
    """No remote store: local disk holds the only copy of every image."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.base = settings.base_path
        self.lock_timeout = settings.lock_timeout
        self.durable = not settings.no_fsync     # files flushed to disk before they count as written
        self.metrics = metrics

    def missing(self, key: ImageKey, names: list[str]) -> set:
        """The names, among `names`, of the image's files not kept yet."""
        return {name for name in names if not os.path.exists(key.local_file(self.base, name))}

    def local_copy(self, key: ImageKey, name: str) -> str:
        """The local path of an image's file; NotFound when there is no such image."""
        path = key.local_file(self.base, name)
        if not os.path.exists(path):
            raise _no_such_image(key, name, self.metrics)
        return path

    def check_known(self, key: ImageKey) -> None:
        """Called before an output's lock is taken: a request for an unknown hash must leave nothing
        behind on disk, and here the disk alone can say at once."""
        self.local_copy(key, ORIGINAL)

    @contextmanager
    def forgetting_unknown(self, key: ImageKey):
        """Nothing to clean up: an unknown image is refused before any folder is made for it."""
        yield

    def keep(self, key: ImageKey, contents: dict, missing: set) -> None:
        """Put the image's `missing` files ({name: (bytes, content type)}) on disk: written beside
        their places first, so that none appears unless all were written."""
        with ExitStack() as stack:
            for name, (data, _) in contents.items():
                if name in missing:
                    path = key.local_file(self.base, name)
                    _write(stack.enter_context(files.replacing(path, durable=self.durable)), data)

    def store_output(self, key: ImageKey, spec: OutputSpec, path: str) -> None:
        """Local disk is the only copy: there is nowhere else to put an output."""

    def fetch(self, key: ImageKey, name: str, path: str) -> str:
        """No other server makes outputs for this disk: there is nothing to fetch."""
        return ABSENT

    def keep_made(self, key: ImageKey, spec: OutputSpec, claim: files.Claim, rendered: bytes,
                  store_answer: str) -> bool:
        """Put an output made for a GET in place; True: it is kept wherever it is to be kept."""
        claim.write(rendered)
        return True


class LocalCache:
    """Local disk as a cache of the remote store, which has every image: what is not on disk is
    fetched from it, and what is made here is stored in it."""

    def __init__(self, settings: Settings, metrics: Metrics, store: Store, uploads: Uploads):
        self.base = settings.base_path
        self.lock_timeout = settings.lock_timeout
        self.durable = not settings.no_fsync     # files flushed to disk before they count as written
        self.metrics = metrics
        self.remote_base = settings.remote_base_path
        self.retry_seconds = settings.upload_retry_seconds
        self.store = store
        self.uploads = uploads

    def missing(self, key: ImageKey, names: list[str]) -> set:
        """The names, among `names`, of the image's files that the store lacks."""
        return set(names) - set(self.store.list(self._remote_folder(key)))

    def local_copy(self, key: ImageKey, name: str) -> str:
        """The local path of an image's file, fetched from the store first if only it has it."""
        path = key.local_file(self.base, name)
        if os.path.exists(path):
            return path
        with files.exclusive(path, self.lock_timeout, durable=self.durable):
            if not os.path.exists(path):
                try:
                    self.store.get(self._remote(key, name), path)
                except NotFound:
                    raise _no_such_image(key, name, self.metrics) from None
                self.metrics.incr("original_downloaded")
        return path

    def check_known(self, key: ImageKey) -> None:
        """Only the store knows, and asking it first would cost every new output a request: an
        unknown image is found out later, and `forgetting_unknown` cleans up after it."""

    @contextmanager
    def forgetting_unknown(self, key: ImageKey):
        """Looking an image up makes its local folder (for the locks) before the store answers;
        when the store has no such image, the folder goes again."""
        try:
            yield
        except NotFound:
            files.remove_empty_folders(key.local_folder(self.base),
                                       stop=os.path.join(self.base, key.namespace))
            raise

    def keep(self, key: ImageKey, contents: dict, missing: set) -> None:
        """Put the image's files on local disk, storing first those the store lacks: none of them
        appears locally unless all of them were stored."""
        if contents.keys() & missing:
            self.store.make_folder(self._remote_folder(key))
        with ExitStack() as stack:
            for name, (data, content_type) in contents.items():
                path = key.local_file(self.base, name)
                if name not in missing and os.path.exists(path):
                    continue
                temp = stack.enter_context(files.replacing(path, durable=self.durable))
                _write(temp, data)
                if name in missing:
                    self.store.put(temp, self._remote(key, name), content_type)

    def store_output(self, key: ImageKey, spec: OutputSpec, path: str) -> None:
        """Store an output that is on local disk; a failure is the caller's (an upload's) to report."""
        self.store.put(path, self._remote(key, spec.file), spec.content_type)

    def fetch(self, key: ImageKey, name: str, path: str) -> str:
        """Copy an output another server made from the store: FETCHED; ABSENT when it has none;
        DOWN when it failed (the output is then made here, and stored once the store is back)."""
        try:
            self.store.get(self._remote(key, name), path)
        except NotFound:
            return ABSENT
        except (StoreError, Unavailable) as error:
            log.warning("making %s here: %s", name, error.message)
            return DOWN
        return FETCHED

    def keep_made(self, key: ImageKey, spec: OutputSpec, claim: files.Claim, rendered: bytes,
                  store_answer: str) -> bool:
        """Store an output made for a GET, then put it in place on local disk; False when the store
        did not take it (or was found DOWN a moment ago): the output is kept all the same, for the
        render succeeded, and the upload is written down first, to be tried again until it is done.

        Stored before it appears, a crash in between leaves no local copy the store lacks."""
        path, remote = claim.path, self._remote(key, spec.file)
        with files.replacing(path, durable=self.durable) as temp:
            _write(temp, rendered)
            failure = (self._put_now(temp, remote, spec.content_type) if store_answer != DOWN
                       else "the store could not be reached a moment ago")
            if failure:
                self.metrics.incr("remote_upload_failed")
                log.warning("upload of %s failed; served all the same, and stored once the store "
                            "takes it (tried again every %g s): %s", remote, self.retry_seconds, failure)
                self.uploads.write_down(path, remote, spec.content_type)
        return not failure

    def _put_now(self, local_path: str, remote_path: str, content_type: str) -> str:
        """Why the store did not take the file; empty when it did."""
        try:
            self.store.put(local_path, remote_path, content_type)
        except (StoreError, Unavailable) as error:
            return error.message
        return ""

    def _remote(self, key: ImageKey, name: str) -> str:
        return key.remote_file(self.remote_base, name)

    def _remote_folder(self, key: ImageKey) -> str:
        return self._remote(key, "").rstrip("/")


def _no_such_image(key: ImageKey, name: str, metrics: Metrics) -> NotFound:
    """The error for an image that is nowhere, counted when it is the original that is missing."""
    if name == ORIGINAL:
        metrics.incr("original_unavailable")
    return NotFound(f"no image {key.hash} in namespace {key.namespace}")


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
