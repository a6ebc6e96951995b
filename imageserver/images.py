"""The use cases: create an image (from bytes or a source URL), read its info, make its outputs.

No HTTP here. Local disk under --local_base_path is the working copy, laid out as the URLs are; the
Store is where images are kept for good when one is configured (S3, Manta), shared by every server.
With one, an original or info.json appears on local disk only once the store has it, so a failed
upload leaves nothing behind, and an output made for a GET is stored before the reply (if the store
fails then, the client gets the image all the same and the upload is retried: `uploads`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterable

from . import counters, fetch, files, pipeline, space, sweep
from .errors import ImageServerError, NotFound, StoreError, Unavailable
from .json_text import pretty
from .names import OutputSpec, parse_output_list
from .paths import INFO, ORIGINAL, ImageKey, check_namespace, state_folder
from .storage.pending import NoPendingUploads

log = logging.getLogger(__name__)

# A source URL downloaded this recently is not downloaded again by requests that waited for it; its
# record (one small file per URL) is swept away once older than that.
SOURCE_REUSE_SECONDS = 60


@dataclass(frozen=True)
class Output:
    path: str
    made: bool              # False when it was already on local disk, or came from the store
    fetched: bool = False   # True when it came from the store
    pending: bool = False   # True when made, kept, but not yet in the store (it is retried)

    @property
    def cache(self) -> str:
        """How it was had, for the X-Image-Cache header: hit, fetched or made."""
        return "made" if self.made else "fetched" if self.fetched else "hit"


class Images:
    def __init__(self, settings, store, metrics, uploads=None):
        self.settings = settings
        self.store = store
        self.uploads = uploads or NoPendingUploads()
        self.metrics = metrics
        self.base = settings.base_path
        self.limits = pipeline.Limits.from_settings(settings)
        self.source_rules = fetch.SourceRules.from_settings(settings)
        self.posting = counters.POSTING
        # --outputs: made for every new image, besides those a request asks for.
        self.default_outputs = parse_output_list(",".join(settings.outputs), settings)

    # -- creating -----------------------------------------------------------------------------

    def create(self, namespace: str, data: bytes, outputs: Iterable[OutputSpec] = ()) -> bytes:
        """Store an original and its info, make the outputs asked for; return the info JSON."""
        with self._counting_post():
            check_namespace(namespace)
            return self._create(namespace, data, outputs)

    def create_from_source(self, namespace: str, url: str,
                           outputs: Iterable[OutputSpec] = ()) -> bytes:
        """As `create`, with the bytes downloaded from `url`, once however many requests ask at once."""
        with self._counting_post():
            check_namespace(namespace)
            digest = hashlib.md5(url.encode()).hexdigest()
            record = state_folder(self.base, "sources", digest)
            sweep.now_and_then(os.path.dirname(record), SOURCE_REUSE_SECONDS)
            with files.exclusive(record, self.settings.lock_timeout):
                key = self._recent_download(namespace, record)
                if key is None:
                    info = self._create(namespace, self._download(url), outputs)
                    files.write_atomically(record, json.loads(info)["hash"].encode())
                    return info
            # Downloaded a moment ago by a request this one waited for.
            self.process(key, self._outputs_of_new_image(outputs))
            return self.info(key)

    def _download(self, url: str) -> bytes:
        try:
            with self.metrics.timer("download.time.source"):
                data = fetch.download(url, self.source_rules)
        except NotFound:
            self.metrics.incr("original_unavailable")
            raise
        self.metrics.incr("original_downloaded")
        return data

    def _recent_download(self, namespace: str, record: str):
        try:
            if time.time() - os.stat(record).st_mtime > SOURCE_REUSE_SECONDS:
                return None
            key = ImageKey(namespace, files.read(record).decode())
        except (OSError, ImageServerError):
            return None
        return key if os.path.exists(key.local_file(self.base, INFO)) else None

    def _create(self, namespace: str, data: bytes, outputs: Iterable[OutputSpec]) -> bytes:
        source = pipeline.describe(data, self.limits)
        key = ImageKey(namespace, hashlib.md5(data).hexdigest())
        info = info_json(key, source)
        outputs = self._outputs_of_new_image(outputs)
        pipeline.check_work(outputs, source, self.limits)
        names = [ORIGINAL, INFO, *(spec.name for spec in outputs)]
        # A client told that its upload failed (a full disk, a store down) finds no half of it.
        with files.whole_or_not_at_all(key.local_folder(self.base), names,
                                       os.path.join(self.base, key.namespace), self.settings.lock_timeout):
            missing = self._missing(key, names)
            if missing:
                space.check_reserve(self.base, self.settings.minimum_free_bytes, needed=len(data))
            if {ORIGINAL, INFO} & missing:
                self.store.make_folder(self._remote(key, "").rstrip("/"))
            self._keep(key, {ORIGINAL: (data, source.content_type), INFO: (info, "application/json")},
                       missing)
            self._store_outputs(key, outputs, missing)
        return info

    def _keep(self, key: ImageKey, contents: dict, missing: set) -> None:
        """Put the image's files on local disk, storing first those the store lacks: none of them
        appears locally unless all of them were stored."""
        with ExitStack() as stack:
            for name, (data, content_type) in contents.items():
                path = key.local_file(self.base, name)
                if name not in missing and os.path.exists(path):
                    continue
                temp = stack.enter_context(files.replacing(path))
                with open(temp, "wb") as out:
                    out.write(data)
                if name in missing:
                    self.store.put(temp, self._remote(key, name), content_type)

    def process(self, key: ImageKey, specs: Iterable[OutputSpec]) -> None:
        """Make and store the outputs that the store (or local disk, with no store) lacks, and wait
        until they are stored."""
        specs = list(specs)
        missing = self._missing(key, [spec.name for spec in specs]) if specs else set()
        with self._no_trace_if_unknown(key):
            to_make = [spec for spec in specs if spec.name in missing]
            if to_make:
                original = files.read(self._local_copy(key, ORIGINAL))
                pipeline.check_work(to_make, pipeline.read_header(original, self.limits), self.limits)
            self._store_outputs(key, specs, missing)

    def _store_outputs(self, key: ImageKey, specs: list[OutputSpec], missing: set) -> None:
        for spec in specs:
            if spec.name in missing:
                path = self._local_output(key, spec, from_store=False).path
                self.store.put(path, self._remote(key, spec.name), spec.content_type)

    def _outputs_of_new_image(self, requested: Iterable[OutputSpec]) -> list[OutputSpec]:
        return list(dict.fromkeys([*self.default_outputs, *requested]))

    def missing(self, key: ImageKey, specs: Iterable[OutputSpec]) -> set:
        """The names, among the original, info.json and these outputs, that the store lacks."""
        return self._missing(key, [ORIGINAL, INFO, *(spec.name for spec in specs)])

    # -- reading ------------------------------------------------------------------------------

    def info(self, key: ImageKey) -> bytes:
        with self._no_trace_if_unknown(key):
            return files.read(self._local_copy(key, INFO))

    def original(self, key: ImageKey) -> tuple[str, str]:
        """The local path of the original and its content type."""
        with self._no_trace_if_unknown(key):
            path = self._local_copy(key, ORIGINAL)
        with open(path, "rb") as f:
            coder = pipeline.sniff(f.read(64))
        return path, pipeline.CONTENT_TYPES.get(coder, "application/octet-stream")

    def output(self, key: ImageKey, spec: OutputSpec) -> Output:
        """The output's local path: on disk, else fetched from the store, else made now (once,
        whatever the number of workers asking) and stored before it appears on local disk."""
        with self._no_trace_if_unknown(key):
            return self._local_output(key, spec, from_store=True)

    def _local_output(self, key: ImageKey, spec: OutputSpec, from_store: bool) -> Output:
        """With `from_store` (a GET), an output another server made is copied from the store, and one
        made here is stored; otherwise (uploads, process) the caller stores what the store lacks."""
        path = key.local_file(self.base, spec.name)
        if os.path.exists(path):
            self.metrics.incr("processing.version.noop")
            return Output(path, made=False)
        if not self.store.is_remote:
            # Known image first: a request for an unknown hash must leave nothing behind on disk.
            self._local_copy(key, ORIGINAL)
        with files.exclusive(path, self.settings.lock_timeout) as claim:
            if os.path.exists(path):
                return Output(path, made=False)
            store_answer = self._fetch(key, spec.name, path) if from_store else "absent"
            if store_answer == "fetched":
                return Output(path, made=False, fetched=True)
            space.check_reserve(self.base, self.settings.minimum_free_bytes)
            data = files.read(self._local_copy(key, ORIGINAL))
            quality = spec.quality or self.settings.default_quality
            with self.metrics.timer(f"processing.time.{spec.ext}"):
                rendered = pipeline.render(data, spec, quality, self.limits)
            if from_store and self.store.is_remote:
                stored = self._keep_and_store(key, spec, path, rendered, store_answer != "down")
            else:
                claim.write(rendered)
                stored = True
        self.metrics.incr("image_request")
        self.metrics.incr(f"image_request.{spec.ext}")
        return Output(path, made=True, pending=not stored)

    def _keep_and_store(self, key: ImageKey, spec: OutputSpec, path: str, rendered: bytes,
                        try_now: bool) -> bool:
        """Store a new output, then put it in place on local disk; False when the store did not
        take it (or was found down a moment ago): the output is kept all the same, for the render
        succeeded, and the upload is written down first, to be tried again until it is done.

        Stored before it appears, a crash in between leaves no local copy the store lacks."""
        remote = self._remote(key, spec.name)
        with files.replacing(path) as temp:
            with open(temp, "wb") as out:
                out.write(rendered)
            failure = (self._store_now(temp, remote, spec.content_type) if try_now
                       else "the store could not be reached a moment ago")
            if failure:
                self.metrics.incr("remote_upload_failed")
                log.warning("upload of %s failed; served all the same, and stored once the store "
                            "takes it (tried again every %g s): %s", remote,
                            self.settings.upload_retry_seconds, failure)
                self.uploads.write_down(path, remote, spec.content_type)
        return not failure

    def _store_now(self, local_path: str, remote_path: str, content_type: str) -> str:
        """Why the store did not take the file; empty when it did."""
        try:
            self.store.put(local_path, remote_path, content_type)
        except (StoreError, Unavailable) as error:
            return error.message
        return ""

    # -- helpers ------------------------------------------------------------------------------

    @contextmanager
    def _no_trace_if_unknown(self, key: ImageKey):
        """With a store, looking an image up makes its local folder (for the locks) before the store
        answers; when the store has no such image, the folder goes again."""
        try:
            yield
        except NotFound:
            if self.store.is_remote:
                files.remove_empty_folders(key.local_folder(self.base),
                                           stop=os.path.join(self.base, key.namespace))
            raise

    def _remote(self, key: ImageKey, name: str) -> str:
        return key.remote_file(self.settings.remote_base_path, name)

    def _missing(self, key: ImageKey, names: list[str]) -> set:
        if not self.store.is_remote:
            return {name for name in names if not os.path.exists(key.local_file(self.base, name))}
        return set(names) - set(self.store.list(self._remote(key, "").rstrip("/")))

    def _fetch(self, key: ImageKey, name: str, path: str) -> str:
        """Copy an output another server made from the store: "fetched"; "absent" when it has none;
        "down" when it failed (the output is then made here, and stored once the store is back)."""
        if not self.store.is_remote:
            return "absent"
        try:
            self.store.get(self._remote(key, name), path)
        except NotFound:
            return "absent"
        except (StoreError, Unavailable) as error:
            log.warning("making %s here: %s", name, error.message)
            return "down"
        return "fetched"

    def _local_copy(self, key: ImageKey, name: str) -> str:
        """The local path of an image's file, fetched from the store first if only it has it."""
        path = key.local_file(self.base, name)
        if os.path.exists(path):
            return path
        try:
            if not self.store.is_remote:
                raise NotFound(f"no image {key.hash} in namespace {key.namespace}")
            with files.exclusive(path, self.settings.lock_timeout):
                if not os.path.exists(path):
                    try:
                        self.store.get(self._remote(key, name), path)
                    except NotFound:
                        raise NotFound(f"no image {key.hash} in namespace {key.namespace}") from None
                    self.metrics.incr("original_downloaded")
        except NotFound:
            if name == ORIGINAL:
                self.metrics.incr("original_unavailable")
            raise
        return path

    def _counting_post(self):
        return _Counting(self.posting, self.metrics)


class _Counting:
    """Counts an upload in progress, and its failure."""

    def __init__(self, counts: counters.PostingCounts, metrics):
        self.counts, self.metrics = counts, metrics

    def __enter__(self):
        self.counts.add("current")
        self.counts.add("total_count")
        self.metrics.incr("new_image.request")

    def __exit__(self, kind, error, trace):
        self.counts.add("current", -1)
        if error is not None:
            self.counts.add("failed_count")
            self.metrics.incr("new_image.request_failed")


def info_json(key: ImageKey, source: pipeline.SourceInfo) -> bytes:
    """The info document, keys in the original server's order."""
    info = {"hash": key.hash, "height": source.height, "width": source.width,
            "content_type": source.content_type}
    return pretty(info)
