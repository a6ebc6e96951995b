"""The use cases: create an image (from bytes or a source URL), read its info, make its outputs.

No HTTP here, and no knowledge of where files are kept: that is `self.disk` (cache.py: local disk
alone, or in front of the remote store), and a source URL asked for at once is downloaded once by
`self.sources` (sources.py).
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from imageserver.core import files, shared
from imageserver.core.errors import ImageServerError
from imageserver.core.json_text import pretty
from imageserver.core.metrics import Metrics
from imageserver.core.names import AUTO_FORMATS, OutputSpec, choose_format, is_allowed, parse_output_list
from imageserver.core.paths import INFO, ORIGINAL, ImageKey, check_namespace
from imageserver.core.settings import Settings
from imageserver.images import cache, purge, space
from imageserver.images.setup import WorkerSetUp
from imageserver.images.variants import RECORD, Failures, VariantBudget
from imageserver.imaging import formats, originals, pipeline, plan
from imageserver.imaging.decoded import DECODED
from imageserver.imaging.source import Limits, SourceInfo
from imageserver.sources.downloads import SourceDownloads
from imageserver.storage.base import Store
from imageserver.storage.pending import NoPendingUploads, Uploads


@dataclass(frozen=True)
class Output:
    """An output on local disk, and how this request came by it."""
    path: str
    cache: str              # for the X-Image-Cache header: "hit" (on local disk), "fetched" (from
                            # the store, made by another server) or "made" (here, now)
    pending: bool = False   # made and kept, but not yet in the store (it is retried)


class Images:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics, uploads: Uploads | None = None,
                 set_up: WorkerSetUp | None = None):
        self.settings = settings
        self.store = store
        self.uploads = uploads or NoPendingUploads()
        self.metrics = metrics
        self.base = settings.base_path
        self.durable = not settings.no_fsync     # files flushed to disk before they count as written
        self.disk = cache.local_disk(settings, store, metrics, self.uploads)
        self.sources = SourceDownloads(settings, metrics)
        self.limits = Limits.from_settings(settings)
        # The formats this process's ImageMagick reads and writes: a server builds its app before it
        # sets its worker up, and hands the set-up in on each request (web.app, `runs_in`).
        self.formats = set_up.formats if set_up else formats.ASSUMED_FORMATS
        self.posting = shared.POSTING
        # --outputs: made for every new image, besides those a request asks for.
        self.default_outputs = parse_output_list(",".join(settings.outputs), settings)
        self.budget = VariantBudget(settings, exempt={   # (a .auto one: every format it may be)
            spec.file for default in self.default_outputs
            for spec in ([default.as_format(ext) for ext in AUTO_FORMATS] if default.is_auto else [default])})
        self.failures = Failures(settings, self.limits)
        self.purges = purge.Purges(settings, store, metrics)

    def runs_in(self, set_up: WorkerSetUp) -> None:
        """Use what the set-up of this process found (before each request: see web.app)."""
        self.formats = set_up.formats

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
            return self.sources.once(namespace, url,
                                     create=lambda data: self._create(namespace, data, outputs),
                                     reuse=lambda key: self._created_already(key, outputs))

    def _created_already(self, key: ImageKey, outputs: Iterable[OutputSpec]) -> bytes:
        """The same URL's image, made a moment ago by a request this one waited for: only the
        outputs this request adds are left to make."""
        self.process(key, self._outputs_of_new_image(outputs))
        return self.info(key)

    def _create(self, namespace: str, data: bytes, outputs: Iterable[OutputSpec]) -> bytes:
        outputs = self.concrete(self._outputs_of_new_image(outputs),
                                lambda: formats.has_transparency(data[:formats.TRANSPARENCY_HEAD_BYTES]))
        # The whole request priced from the header, before its check decodes a pixel.
        source = originals.read_header(data, self.limits, self.formats)
        plan.check_work(outputs, source, self.limits, self.settings.default_quality, upload=True,
                        formats=self.formats)
        originals.check_whole(data, source, self.limits)
        key = ImageKey(namespace, hashlib.md5(data).hexdigest())
        info = info_json(key, source)
        names = [ORIGINAL, INFO, *(spec.file for spec in outputs)]
        # A client told that its upload failed (a full disk, a store down) finds no half of it.
        with files.whole_or_not_at_all(key.local_folder(self.base), [*names, RECORD],
                                       os.path.join(self.base, key.namespace), self.settings.lock_timeout,
                                       durable=self.durable):
            missing = self.disk.missing(key, names)
            if missing:
                space.check_reserve(self.base, self.settings.minimum_free_bytes, needed=len(data))
            if ORIGINAL in missing:   # new, or purged: uploaded again, it is a new image
                self.purges.lift(key)
            self.budget.admit(key, [spec.file for spec in outputs if spec.file in missing])
            self.disk.keep(key, {ORIGINAL: (data, source.content_type), INFO: (info, "application/json")},
                           missing)
            self._store_outputs(key, outputs, missing)
        return info

    def process(self, key: ImageKey, specs: Iterable[OutputSpec]) -> None:
        """Make and store the outputs that the store (or local disk, with no store) lacks, and wait
        until they are stored."""
        specs = self.concrete(specs, lambda: self.transparent(key))
        missing = self.disk.missing(key, [spec.file for spec in specs]) if specs else set()
        with self.disk.forgetting_unknown(key):
            to_make = [spec for spec in specs if spec.file in missing]
            if to_make:
                original = files.read(self.disk.local_copy(key, ORIGINAL))
                plan.check_work(to_make, originals.read_header(original, self.limits, self.formats),
                                self.limits, self.settings.default_quality, formats=self.formats)
                self.budget.admit(key, [spec.file for spec in to_make])
            self._store_outputs(key, specs, missing)

    def _store_outputs(self, key: ImageKey, specs: list[OutputSpec], missing: set) -> None:
        """Make the outputs the store lacks (it was just asked: no need to fetch) and store them; a
        store that fails fails the whole request."""
        for spec in specs:
            if spec.file in missing:
                output = self._once(key, spec, self._make)
                self.disk.store_output(key, spec, output.path)

    def _outputs_of_new_image(self, requested: Iterable[OutputSpec]) -> list[OutputSpec]:
        return list(dict.fromkeys([*self.default_outputs, *requested]))

    def missing(self, key: ImageKey, specs: Iterable[OutputSpec]) -> set:
        """The names, among the original, info.json and these outputs, that the store lacks."""
        specs = self.concrete(specs, lambda: self._transparent_if_known(key))
        return self.disk.missing(key, [ORIGINAL, INFO, *(spec.file for spec in specs)])

    # -- .auto: the format chosen by the request's Accept -------------------------------------

    def auto_formats(self, spec: OutputSpec) -> list[str]:
        """The formats a `.auto` output stands for here: those this server offers (--extensions),
        its ImageMagick writes, and --allowed_outputs allows for this output."""
        return [ext for ext in AUTO_FORMATS if ext in self.settings.extensions and self.formats.can_write(ext)
                and is_allowed(spec.as_format(ext), self.settings)]

    def choose_format(self, key: ImageKey, spec: OutputSpec, accept: str) -> OutputSpec:
        """The output a `.auto` request gets, by its Accept header (names.choose_format); the
        original is read (its first bytes) only when JPEG and PNG are to be chosen between."""
        ext = choose_format(accept, self.auto_formats(spec), lambda: self.transparent(key))
        return spec.as_format(ext)

    def concrete(self, specs: Iterable[OutputSpec], transparent: Callable[[], bool]) -> list[OutputSpec]:
        """The outputs, each `.auto` one as every format it may stand for: AVIF and WebP (as
        offered), and JPEG, or PNG for a source with transparency."""
        found: list[OutputSpec] = []
        transparent = functools.cache(transparent)    # the original read once, and only if needed
        for spec in specs:
            if not spec.is_auto:
                found.append(spec)
                continue
            offered = self.auto_formats(spec)
            fallback = choose_format("", offered, transparent) if offered else None
            found += [spec.as_format(ext) for ext in offered if ext in ("avif", "webp", fallback)]
        return list(dict.fromkeys(found))

    def transparent(self, key: ImageKey) -> bool:
        """Whether the image's original has transparency, from its first bytes."""
        with self.disk.forgetting_unknown(key):
            path = self.disk.local_copy(key, ORIGINAL)
        with open(path, "rb") as f:
            return formats.has_transparency(f.read(formats.TRANSPARENCY_HEAD_BYTES))

    def _transparent_if_known(self, key: ImageKey) -> bool:
        """As `transparent`, for an image that may not be stored yet (it is then all missing)."""
        try:
            return self.transparent(key)
        except ImageServerError:
            return False

    def purge(self, key: ImageKey) -> dict:
        """Remove the image everywhere: store, local disk, and (through the store) other servers."""
        return self.purges.purge(key)

    # -- reading ------------------------------------------------------------------------------

    def info(self, key: ImageKey) -> bytes:
        with self.disk.forgetting_unknown(key):
            return files.read(self.disk.local_copy(key, INFO))

    def original(self, key: ImageKey) -> tuple[str, str]:
        """The local path of the original and its content type."""
        with self.disk.forgetting_unknown(key):
            path = self.disk.local_copy(key, ORIGINAL)
        with open(path, "rb") as f:
            coder = formats.sniff(f.read(64))
        return path, formats.CONTENT_TYPES[coder] if coder else "application/octet-stream"

    def output(self, key: ImageKey, spec: OutputSpec) -> Output:
        """The output's local path: on disk, else fetched from the store, else made now (once,
        whatever the number of workers asking) and stored before it appears on local disk."""
        with self.disk.forgetting_unknown(key):
            return self._once(key, spec, self._fetch_or_make)

    # -- making an output ---------------------------------------------------------------------

    def _once(self, key: ImageKey, spec: OutputSpec,
              get: Callable[[ImageKey, OutputSpec, files.Claim], Output]) -> Output:
        """The output from local disk, else from `get`, run by one request at a time (holding the
        claim on the output, which `get` fills): the others wait, then find it on disk."""
        path = key.local_file(self.base, spec.file)
        if os.path.exists(path):
            self.metrics.incr("processing.version.noop")
            return Output(path, "hit")
        self.disk.check_known(key)
        with files.exclusive(path, self.settings.lock_timeout, durable=self.durable) as claim:
            if os.path.exists(path):
                return Output(path, "hit")
            self.failures.check(key, spec.file)
            output = get(key, spec, claim)
        if output.cache == "made":
            self.metrics.incr("image_request")
            self.metrics.incr(f"image_request.{spec.ext}")
        return output

    def _fetch_or_make(self, key: ImageKey, spec: OutputSpec, claim: files.Claim) -> Output:
        """For a GET: copied from the store if another server made it; else made here, and stored
        before it appears on local disk."""
        store_answer = self.disk.fetch(key, spec.file, claim.path)
        if store_answer == cache.FETCHED:
            return Output(claim.path, "fetched")
        self.disk.local_copy(key, ORIGINAL)   # an unknown image is refused before its budget is kept
        self.budget.admit(key, [spec.file])
        try:
            rendered = self._render(key, spec)
        except ImageServerError as error:   # asked again, a bomb fails at once (variants.py)
            self.failures.remember(key, spec.file, error)
            raise
        stored = self.disk.keep_made(key, spec, claim, rendered, store_answer)
        return Output(claim.path, "made", pending=not stored)

    def _make(self, key: ImageKey, spec: OutputSpec, claim: files.Claim) -> Output:
        """For an upload or a process request, which store the output themselves."""
        claim.write(self._render(key, spec))
        return Output(claim.path, "made")

    def _render(self, key: ImageKey, spec: OutputSpec) -> bytes:
        space.check_reserve(self.base, self.settings.minimum_free_bytes)
        data = files.read(self.disk.local_copy(key, ORIGINAL))
        quality = spec.quality or self.settings.default_quality
        reused = DECODED.reused
        with self.metrics.timer(f"processing.time.{spec.ext}"):
            output = pipeline.render(data, spec, quality, self.limits, self.formats,
                                     reuse=f"{key.namespace}/{key.hash}")
        if DECODED.reused > reused:
            self.metrics.incr("processing.decoded_reused")
        return output

    def _counting_post(self):
        return _Counting(self.posting, self.metrics)


class _Counting:
    """Counts an upload in progress, and its failure."""

    def __init__(self, counts: shared.PostingCounts, metrics: Metrics):
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


def info_json(key: ImageKey, source: SourceInfo) -> bytes:
    """The info document, keys in the original server's order."""
    info = {"hash": key.hash, "height": source.height, "width": source.width,
            "content_type": source.content_type}
    return pretty(info)
