"""A worker's most recently decoded sources, kept in memory so that the next outputs of the same
original start from a copy of its pixels instead of decoding it again.

A page asks for several sizes of a new picture at once (bench workload "7 burst"; an upload with
`outputs=` makes several too): decoding a 12 MP JPEG reads all its coefficients whatever the scale it
decodes at, most of a small output's CPU. Each entry is a source as decoded (at the scale
shrink-on-load chose for the output that decoded it) and turned upright, never cropped or resized:
pipeline.render picks an entry only where it is the very decode it would make (so the output is the
same, byte for byte), and where the cost model prices the render from it lower than from a fresh
decode.

Bounded by pixels (--decoded_cache_pixels; ImageMagick Q16 holds 8 bytes a pixel): the least recently
used entries go first, and a decode bigger than the bound is never kept. A render from an entry runs
on a clone (ImageMagick shares the clone's pixels until they are written: cropping and resizing read
them and make new images), so that the entry stays as decoded. Entries are kept only after their
render succeeded (a JPEG cut short warns after its decode), dropped at any failure of ImageMagick
(see decoding.decoding), and at the process's exit.
"""
from __future__ import annotations

import atexit
import threading
from collections import OrderedDict
from collections.abc import Callable


class DecodedSources:
    """{(identity, width, height): image}, least recently used first, at most `maximum_pixels` in all
    (given at each call: the limits of the render that asks)."""

    def __init__(self):
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        # Renders started from a kept decode, in this process (statsd's processing.decoded_reused).
        self.reused = 0

    def clone(self, identity: str, choose: Callable[[list], tuple | None]):
        """A clone of the entry of `identity` whose size `choose` picks among those kept (None: none
        fits, or none is kept), and that size; (None, None) when there is none."""
        with self._lock:
            sizes = [(width, height) for (kept, width, height) in self._entries if kept == identity]
            size = choose(sizes) if sizes else None
            if size is None:
                return None, None
            entry = (identity, *size)
            self._entries.move_to_end(entry)
            self.reused += 1
            return self._entries[entry].clone(), size

    def keep(self, identity: str, image, maximum_pixels: int) -> None:
        """Keep `image` (a copy the caller made for this and gives up) as a decode of `identity`,
        dropping the least recently used entries until all fit under `maximum_pixels`; closed at
        once when it cannot fit or an entry of that size is kept already."""
        entry = (identity, image.width, image.height)
        with self._lock:
            if image.width * image.height > maximum_pixels or entry in self._entries:
                image.close()
                return
            self._entries[entry] = image
            while self.pixels() > maximum_pixels:
                _, oldest = self._entries.popitem(last=False)
                oldest.close()

    def pixels(self) -> int:
        return sum(width * height for (_, width, height) in self._entries)

    def clear(self) -> None:
        with self._lock:
            while self._entries:
                _, image = self._entries.popitem()
                image.close()


DECODED = DecodedSources()
# A worker's exit (gunicorn retires one after max_requests, or after a leak) lets the pixels go
# through ImageMagick, which removes any pixel cache it had to put on disk.
atexit.register(DECODED.clear)
