"""The cost model: how many milliseconds of CPU a piece of image work will take, known from the
headers alone, before any pixel is decoded or written.

Every request that decodes or encodes (an upload and the outputs it asks for, POST .../process, the
GET of an output not made yet) is priced here first, and refused with a 413 when its price is over
`--maximum_request_ms`. The price counts what drives the cost, each at what it costs on a reference
machine (2 cores of a 2020s x86 server, ImageMagick 6 Q16, one thread; `python -m bench.cost_model`
measures them again and shows the model beside the real time):

- pixels decoded, at the scale a JPEG is shrunk to on load, for every frame that is decoded;
- for a progressive JPEG, every scan: libjpeg reads each scan over the whole picture, whatever the
  scale it then decodes at (700 scans of a 7000x7000 grey picture are 160 KB and 6 s of CPU);
- the resize, by the pixels it reads and writes;
- the encoder, by the pixels it writes, at its effort for that format and quality.

The model is arithmetic on numbers (no ImageMagick, no HTTP), so that pipeline.py can price a render
before it starts and a whole request can be priced before any of it is done. What it misses is
caught by the backstop (magick.Stopwatch): work that runs past `stop_after_ms` of its price is
stopped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Nanoseconds of CPU per pixel (per 8x8 block for scans), measured on the reference machine and
# rounded up a little: the model errs towards refusing, the backstop towards letting finish.
DECODE_NS = {"jpeg": 12, "png": 40, "gif": 30, "webp": 60, "heic": 150, "avif": 150}
# libjpeg reads every coefficient of every scan at full size, whatever the scale it decodes at.
JPEG_ENTROPY_NS = 3
JPEG_SCAN_NS_PER_BLOCK = 12
# A Lanczos resize reads every decoded pixel (a box pre-shrink first, for big shrinks) and writes each
# output pixel from a few dozen taps.
RESIZE_NS_PER_SOURCE = 15
RESIZE_NS_PER_OUTPUT = 30
# Encoders, per pixel written. PNG's zlib level is capped (formats.png_compression_level) so that
# -q never buys zlib's slowest levels; WebP's effort climbs steeply past quality 90; GIF quantizes
# every frame to 256 colours.
ENCODE_NS = {"jpg": 40, "png": 800, "gif": 1800, "webp": 200, "avif": 800}
WEBP_NS_PER_QUALITY_OVER_90 = 100
# GIF's quantization has a cost of its own per frame, whatever its size.
GIF_FRAME_MS = 40
# Reading a frame of an animation (its header, its place), even one that is skipped.
DECODE_FRAME_MS = 0.15
# Comparing the frames of an animation to keep only what changes (optimize_layers).
OPTIMIZE_NS_PER_OUTPUT = 40
# What any piece of work costs besides its pixels: opening a blob, the Python around it.
FIXED_MS = 1.0
# The backstop stops work at this many times its price, plus a grace: the model's worst error on
# real pictures is about 2.5x (bench/cost_model.py; WebP at -q100 of a dithered GIF).
STOP_FACTOR = 3
STOP_GRACE_MS = 1000


class Decode(Protocol):
    """What decoding a source costs depends on: its coder, displayed size, frames and (JPEG) scans
    and colour components (SourceInfo has them, read from the header). Read-only, as a
    frozen dataclass's fields are."""
    @property
    def coder(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def frames(self) -> int: ...
    @property
    def scans(self) -> int: ...
    @property
    def components(self) -> int: ...


@dataclass(frozen=True)
class Work:
    """A price, and what it is made of (for the 413's message)."""
    milliseconds: float
    what: str

    def __add__(self, other: Work) -> Work:
        return Work(self.milliseconds + other.milliseconds, f"{self.what}; {other.what}")


def decode_ms(source: Decode, decoded_pixels: int, frames: int = 1) -> float:
    """Decoding `frames` frames of `source` at `decoded_pixels` each (a JPEG shrunk on load decodes
    fewer pixels than it has, but reads all its coefficients, in every scan)."""
    full = source.width * source.height
    total = frames * decoded_pixels * DECODE_NS[source.coder] + source.frames * DECODE_FRAME_MS * 1e6
    if source.coder == "jpeg":
        blocks = full / 64 * source.components
        total += full * JPEG_ENTROPY_NS + max(0, source.scans - 1) * blocks * JPEG_SCAN_NS_PER_BLOCK
    return total / 1e6


def encode_ns(ext: str, quality: int) -> float:
    """The encoder's cost per pixel written, at `quality`."""
    ns = ENCODE_NS[ext]
    if ext == "webp":
        ns += max(0, quality - 90) * WEBP_NS_PER_QUALITY_OVER_90
    return ns


def render(source: Decode, decoded_pixels: int, output_width: int, output_height: int, ext: str,
           quality: int, animated: bool = False, name: str = "", decoded_already: bool = False) -> Work:
    """Making one output: decode, resize, encode (every frame, for an animation that stays one).
    `decoded_already`: from a decode kept in memory (decoded.py), whose clone costs nothing until
    written: no decode."""
    frames = source.frames if animated else 1
    written = output_width * output_height
    resized = (decoded_pixels * RESIZE_NS_PER_SOURCE + written * RESIZE_NS_PER_OUTPUT
               if decoded_pixels != written else 0)
    decoding = 0 if decoded_already else decode_ms(source, decoded_pixels, frames)
    milliseconds = (FIXED_MS + decoding
                    + frames * (resized + written * encode_ns(ext, quality)) / 1e6)
    if ext == "gif":
        milliseconds += frames * GIF_FRAME_MS
    if animated:
        milliseconds += frames * written * OPTIMIZE_NS_PER_OUTPUT / 1e6
    frames_text = f"{frames} frames of " if frames > 1 else ""
    what = f"{name or ext}: {frames_text}{output_width}x{output_height} written as {ext.upper()}"
    if source.scans > 1:
        what += f" from a JPEG of {source.scans} scans"
    return Work(milliseconds, what)


def check(source: Decode, decoded_pixels: int) -> Work:
    """Checking an upload: every frame decoded once (a JPEG at a small scale, but every scan read)."""
    milliseconds = FIXED_MS + decode_ms(source, decoded_pixels, source.frames)
    frames_text = f"{source.frames} frames of " if source.frames > 1 else ""
    return Work(milliseconds, f"decoding {frames_text}{source.width}x{source.height}")


def stop_after_ms(estimate_ms: float) -> float:
    """When the backstop stops work priced at `estimate_ms`: well past the estimate, so that the
    model's ordinary error (and a noisy neighbour) never stops a render it let start, and soon
    enough that a file which lied to the model costs a fraction of a second, not a worker."""
    return STOP_FACTOR * estimate_ms + STOP_GRACE_MS
