"""The formats: which we read (recognised by their first bytes, never by ImageMagick's guessing)
and write, what each output format is given (quality, compression, AVIF's speed), and which of them
this process's ImageMagick reads and writes (learnt once, in `init_worker`)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from imageserver.core.errors import (
    NotConfigured,
    NotFound,
    UnsupportedMediaType,
)
from imageserver.core.names import OutputSpec
from imageserver.imaging import magick

# Coders we read, by the content type we answer with.
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
                 "heic": "image/heic", "avif": "image/avif"}


# Coders we write, by output extension.
WRITERS = {"jpg": "jpeg", "png": "png", "gif": "gif", "webp": "webp", "avif": "avif"}
ALPHA_WRITERS = {"png", "webp", "gif", "avif"}

# Output formats that not every ImageMagick writes (AVIF needs libheif's AV1 encoder plugin).
OPTIONAL_WRITERS = {"avif"}

# libheif's AV1 encoder speed (0 slowest .. 9 fastest): 8 costs about what WebP does at these sizes
# and keeps most of AVIF's size advantage (see bench/README.md). ImageMagick 6 has no such option
# and uses libheif's default.
AVIF_SPEED = "8"

# -q<N> of an AVIF is encoded at the libheif quality that gives the SSIM of a JPEG at -q<N> (measured
# on the bench's photograph, see bench/README.md): the same look, 25-40% fewer bytes. Linear between.
AVIF_QUALITY = ((1, 1), (50, 46), (75, 60), (90, 84), (100, 100))
REQUIRED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}

# zlib's default level: the most effort a PNG output gets (see png_compression_level).
PNG_MAXIMUM_COMPRESSION_LEVEL = 6


@dataclass(frozen=True)
class Formats:
    """The coders this process's ImageMagick reads and writes, as init_worker found them."""
    readable: frozenset[str]
    writable: frozenset[str]

    def can_write(self, ext: str) -> bool:
        """True when this ImageMagick writes the output extension `ext`."""
        return WRITERS[ext] in self.writable


# What a process that was not set up (no init_worker) takes for granted: every format read, every
# output format written but those that not every ImageMagick writes.
ASSUMED_FORMATS = Formats(frozenset(CONTENT_TYPES), frozenset(WRITERS.values()) - OPTIONAL_WRITERS)


def find_formats() -> Formats:
    """Which of our formats this process's ImageMagick (set up already) reads and writes."""
    readable = {coder for coder in CONTENT_TYPES if magick.reads(coder)}
    # HEIC and AVIF are read by one coder (libheif's): only where it reads the colours right.
    if not magick.reads_faithfully("avif"):
        readable -= {"heic", "avif"}
    writable = {coder for coder in WRITERS.values() if magick.writes(coder)}
    return Formats(frozenset(readable), frozenset(writable))


def check_writable(spec: OutputSpec, formats: Formats) -> None:
    if not formats.can_write(spec.ext):
        raise NotFound(f"{spec.name!r}: this server's ImageMagick cannot write {spec.ext.upper()} "
                       "(its encoder is not installed)")


def problems() -> list[str]:
    """What stops the pipeline from working here; empty when all is well."""
    return magick.problems(REQUIRED_FORMATS)


def sniff(head: bytes) -> str | None:
    """The coder for these first bytes, or None. Only formats we accept are recognised."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        brands = {head[i:i + 4] for i in range(8, min(len(head), 64), 4)}
        if brands & AVIF_BRANDS:
            return "avif"
        if brands & HEIF_BRANDS:
            return "heic"
    return None


# Bytes of an original read to tell whether it has transparency: its header chunks or boxes, a GIF's
# first graphic control extensions.
TRANSPARENCY_HEAD_BYTES = 65536

_GIF_CONTROL = re.compile(rb"\x21\xf9\x04(.)", re.DOTALL)


def has_transparency(head: bytes) -> bool:
    """Whether the image these first bytes begin may have transparent pixels, from its header alone
    (no pixel decoded): a PNG with an alpha channel or a tRNS chunk, a GIF with a transparent colour,
    a WebP with alpha, an AVIF or HEIC with an alpha plane."""
    coder = sniff(head[:64])
    if coder == "png":
        header_chunks = head.split(b"IDAT", 1)[0]
        return head[25:26] in (b"\x04", b"\x06") or b"tRNS" in header_chunks
    if coder == "gif":
        return any(match.group(1)[0] & 1 for match in _GIF_CONTROL.finditer(head))
    if coder == "webp":
        if head[12:16] == b"VP8X":
            return bool(head[20] & 0x10)
        if head[12:16] == b"VP8L" and len(head) >= 25:
            return bool(int.from_bytes(head[21:25], "little") >> 28 & 1)
        return False
    if coder in ("avif", "heic"):
        return b"auxiliary:alpha" in head or b"auxid:1" in head
    return False


def coder_for(data: bytes, formats: Formats = ASSUMED_FORMATS) -> str:
    """The coder for an upload, or UnsupportedMediaType."""
    if not data:
        raise UnsupportedMediaType("the image is empty")
    coder = sniff(data[:64])
    readable = formats.readable
    if coder is None or coder not in readable:
        raise UnsupportedMediaType("not an image of an accepted kind (JPEG, PNG, GIF, WebP"
                                   + (", HEIC, AVIF" if {"heic", "avif"} & readable else "") + ")")
    return coder


def check_available() -> None:
    if magick.IMPORT_ERROR:
        raise NotConfigured(f"ImageMagick is not available: {magick.IMPORT_ERROR}")


def png_compression_level(quality: int) -> int:
    """zlib's level for a PNG asked for at `quality`: ImageMagick's (the tens digit), but never
    above zlib's default, 6. PNG is lossless: levels 7 to 9 only search harder for the same pixels,
    3 to 4 times the CPU of level 6 on a photograph for 2 to 6% fewer bytes (bench/README.md), so a
    -q of a PNG never buys seconds of a worker."""
    return min(quality // 10, PNG_MAXIMUM_COMPRESSION_LEVEL)


def avif_quality(quality: int) -> int:
    """The libheif quality for an output asked for at `quality` (see AVIF_QUALITY)."""
    for (low_q, low_a), (high_q, high_a) in zip(AVIF_QUALITY, AVIF_QUALITY[1:]):
        if quality <= high_q:
            return round(low_a + (quality - low_q) * (high_a - low_a) / (high_q - low_q))
    return AVIF_QUALITY[-1][1]


def keeps_alpha(ext: str) -> bool:
    return ext in ALPHA_WRITERS and magick.writes_alpha(WRITERS[ext])


def format_support(formats: Formats) -> dict:
    """Which of our formats this process reads (for doctor and status)."""
    check_available()
    return {coder: coder in formats.readable for coder in CONTENT_TYPES}


def check_formats(formats: Formats) -> dict:
    """For doctor: {coder: (reads, writes)}, as init_worker found them (each output format written
    and read back for real; the others can only be read, when ImageMagick has their coder)."""
    check_available()
    return {coder: (coder in formats.readable, coder in formats.writable) for coder in CONTENT_TYPES}


def writable_extensions(formats: Formats) -> list[str]:
    """The output extensions this ImageMagick writes (for status)."""
    return [ext for ext in WRITERS if formats.can_write(ext)]
