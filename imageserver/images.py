"""The use cases: create an image (from bytes or a source URL), read its info, make its outputs.

No HTTP here. Local disk under --local_base_path is the working copy, laid out as the URLs are; the
Store is where images are kept for good when one is configured.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Iterable

from . import fetch, files, pipeline
from .errors import ImageServerError, NotFound
from .names import OutputSpec
from .paths import INFO, ORIGINAL, ImageKey, check_namespace

# A source URL downloaded this recently is not downloaded again by requests that waited for it.
SOURCE_REUSE_SECONDS = 60
STATE_FOLDER = ".imageserver"


@dataclass
class PostingCounts:
    """Uploads seen by this worker, for /status_check."""
    current: int = 0
    total_count: int = 0
    failed_count: int = 0


@dataclass(frozen=True)
class Output:
    path: str
    made: bool          # False when it was already on local disk


class Images:
    def __init__(self, settings, store, metrics):
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.base = settings.base_path
        self.limits = pipeline.Limits.from_settings(settings)
        self.source_rules = fetch.SourceRules.from_settings(settings)
        self.posting = PostingCounts()

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
            record = os.path.join(self.base, STATE_FOLDER, "sources", digest)
            with files.exclusive(record, self.settings.lock_timeout):
                key = self._recent_download(namespace, record)
                if key is None:
                    data = fetch.download(url, self.source_rules)
                    self.metrics.incr("original_downloaded")
                    info = self._create(namespace, data, ())
                    files.write_atomically(record, json.loads(info)["hash"].encode())
                    key = ImageKey(namespace, json.loads(info)["hash"])
            self.make_outputs(key, outputs)
            return self.info(key)

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
        original = key.local_file(self.base, ORIGINAL)
        info_path = key.local_file(self.base, INFO)
        if not os.path.exists(original):
            files.write_atomically(original, data)
        if not os.path.exists(info_path):
            files.write_atomically(info_path, info)
        self.store.make_folder(key.remote_file(self.settings.remote_base_path, "").rstrip("/"))
        self.store.put(original, self._remote(key, ORIGINAL), source.content_type)
        self.store.put(info_path, self._remote(key, INFO), "application/json")
        self.make_outputs(key, outputs)
        return info

    # -- reading ------------------------------------------------------------------------------

    def info(self, key: ImageKey) -> bytes:
        return files.read(self._local_copy(key, INFO))

    def original(self, key: ImageKey) -> tuple[str, str]:
        """The local path of the original and its content type."""
        path = self._local_copy(key, ORIGINAL)
        with open(path, "rb") as f:
            coder = pipeline.sniff(f.read(64))
        return path, pipeline.CONTENT_TYPES.get(coder, "application/octet-stream")

    def output(self, key: ImageKey, spec: OutputSpec) -> Output:
        """The output's local path, made now (once, whatever the number of workers asking) if needed."""
        path = key.local_file(self.base, spec.name)
        if os.path.exists(path):
            self.metrics.incr("processing.version.noop")
            return Output(path, made=False)
        with files.exclusive(path, self.settings.lock_timeout):
            if os.path.exists(path):
                return Output(path, made=False)
            data = files.read(self._local_copy(key, ORIGINAL))
            quality = spec.quality or self.settings.default_quality
            with self.metrics.timer(f"processing.time.{spec.ext}"):
                rendered = pipeline.render(data, spec, quality, self.limits)
            files.write_atomically(path, rendered)
            self.store.put(path, self._remote(key, spec.name), spec.content_type)
        self.metrics.incr("image_request")
        self.metrics.incr(f"image_request.{spec.ext}")
        return Output(path, made=True)

    def make_outputs(self, key: ImageKey, specs: Iterable[OutputSpec]) -> None:
        """Make those outputs that do not exist yet."""
        for spec in specs:
            self.output(key, spec)

    # -- helpers ------------------------------------------------------------------------------

    def _remote(self, key: ImageKey, name: str) -> str:
        return key.remote_file(self.settings.remote_base_path, name)

    def _local_copy(self, key: ImageKey, name: str) -> str:
        """The local path of an image's file, fetched from the store first if only it has it."""
        path = key.local_file(self.base, name)
        if os.path.exists(path):
            return path
        if not self.store.is_remote:
            raise NotFound(f"no image {key.hash} in namespace {key.namespace}")
        with files.exclusive(path, self.settings.lock_timeout):
            if not os.path.exists(path):
                try:
                    self.store.get(self._remote(key, name), path)
                except NotFound:
                    self.metrics.incr("original_unavailable")
                    raise NotFound(f"no image {key.hash} in namespace {key.namespace}") from None
                self.metrics.incr("original_downloaded")
        return path

    def _counting_post(self):
        return _Counting(self.posting, self.metrics)


class _Counting:
    """Counts an upload in progress, and its failure."""

    def __init__(self, counts: PostingCounts, metrics):
        self.counts, self.metrics = counts, metrics

    def __enter__(self):
        self.counts.current += 1
        self.counts.total_count += 1
        self.metrics.incr("new_image.request")

    def __exit__(self, kind, error, trace):
        self.counts.current -= 1
        if error is not None:
            self.counts.failed_count += 1
            self.metrics.incr("new_image.request_failed")


def info_json(key: ImageKey, source: pipeline.SourceInfo) -> bytes:
    """The info document, keys in the original server's order."""
    info = {"hash": key.hash, "height": source.height, "width": source.width,
            "content_type": source.content_type}
    return (json.dumps(info, indent=2) + "\n").encode()
