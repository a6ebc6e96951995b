"""The image pipeline, on Wand (ImageMagick) in process: sniff, describe, decode, orient, crop and
resize, convert colour, encode. It knows nothing of HTTP, files or settings objects beyond numbers.

ImageMagick decodes a great many formats, some of them dangerous (MVG, SVG, MSL, PS, URL, ...). It is
only ever given bytes whose first bytes we recognised, with that coder named explicitly ("jpeg:"), so
its own format guessing never runs on client data. Behind that, `init_worker` loads our policy.xml
(magick/), which refuses every other coder inside ImageMagick itself. Sizes are checked on the header
(a ping) before any pixel is decoded.
"""
from __future__ import annotations

import functools
import os
import re
import struct
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from imageserver.core.errors import (
    NotConfigured,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from imageserver.core.names import OutputSpec
from imageserver.imaging import cost, icc, magick
from imageserver.imaging.decoded import DECODED
from imageserver.imaging.magick import Color, Image, WandException, WandWarning
from imageserver.core.settings import Settings

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
SRGB_PROFILE_PATHS = ("/usr/share/color/icc/sRGB.icc", "/usr/share/color/icc/colord/sRGB.icc",
                      "/opt/homebrew/share/color/icc/sRGB.icc", "/usr/local/share/color/icc/sRGB.icc")
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
# EXIF orientations 5..8 store the picture turned by 90 degrees.
TRANSPOSED_ORIENTATIONS = {"left_top", "right_top", "right_bottom", "left_bottom"}
WHITE = "white"
# Lanczos's reach, in source pixels each side (scaled by the shrink): its own is 3 lobes. At 2.5
# the last half lobe (under 1% of the filter's weight) is left out: 8-10% less CPU on an 800x600
# source's renders, SSIM the same to 0.0002 (bench/README.md, python -m bench.levers).
LANCZOS_SUPPORT: Optional[float] = 2.5
# Decode JPEGs at no less than this many times the output size (see _jpeg_size_hint).
SHRINK_ON_LOAD_MARGIN = 1.5
# (denominator ImageMagick passes to libjpeg, the scale libjpeg-turbo then decodes at), smallest first.
JPEG_SCALES = ((8, 1 / 8), (4, 2 / 8), (3, 3 / 8), (2, 4 / 8))
# Box-average first a source this many times larger than the output (see _preshrink).
PRESHRINK_FROM = 3
# A still GIF's 256 colours are chosen here, undithered, as Pillow (thumbor) chooses them. Left to
# itself, ImageMagick 6's GIF writer dithers (Riemersma), and its ditherer first fills a 128 MB colour
# cache: 70-85 ms of a 300x225 GIF's 120 ms (bench/README.md).
GIF_DITHER = False
# zlib's default level: the most effort a PNG output gets (see png_compression_level).
PNG_MAXIMUM_COMPRESSION_LEVEL = 6


@dataclass(frozen=True)
class SourceInfo:
    """What an original is, as displayed (after EXIF orientation)."""
    coder: str
    width: int
    height: int
    frames: int = 1
    scans: int = 1         # a progressive JPEG's scans, each read over the whole picture
    components: int = 3    # a JPEG's colour components (1: grey)
    transposed: bool = False   # stored turned by 90 degrees (EXIF orientation 5..8)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.coder]


@dataclass(frozen=True)
class Limits:
    """Bounds on what is decoded and made, from the settings."""
    maximum_pixels: int = 50_000_000
    maximum_side: int = 16_000
    maximum_frames: int = 300
    maximum_full_size_pixels: int = 25_000_000
    maximum_request_ms: int = 4_000
    maximum_scans: int = 100
    decoded_cache_pixels: int = 4_000_000    # see decoded.py

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(settings.maximum_source_pixels, settings.maximum_source_side,
                   settings.maximum_frames, settings.maximum_full_size_pixels,
                   settings.maximum_request_ms, settings.maximum_scans, settings.decoded_cache_pixels)

    @property
    def maximum_animation_pixels(self) -> int:
        """All the frames of an animation together: each frame is decoded at once."""
        return ANIMATION_FACTOR * self.maximum_pixels


# An animation may hold this many times the pixels of the largest still image, in all its frames:
# every frame is decoded at once (8 bytes a pixel), so at 1 an animation needs no more memory than
# the largest still (at 2, 300 frames of 577x577 took a worker to 876 MiB).
ANIMATION_FACTOR = 1
# Compressed PNG metadata (zTXt, iTXt, iCCP) may inflate to this many bytes in all: far more than any
# real profile or text, far less than a worker's memory.
MAXIMUM_PNG_METADATA_BYTES = 8 * 2**20
PNG_COMPRESSED_CHUNKS = {b"zTXt", b"iTXt", b"iCCP"}

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


def init_worker(limits: Limits = Limits(), on_leak: Optional[Callable[[], None]] = None) -> Formats:
    """Put ImageMagick's policy and limits in force in this process, and say which coders it reads
    and writes here. Once per worker, after the fork (see magick.init_worker)."""
    magick.init_worker(limits, on_leak=on_leak)
    readable = {coder for coder in CONTENT_TYPES if magick.reads(coder)}
    # HEIC and AVIF are read by one coder (libheif's): only where it reads the colours right.
    if not magick.reads_faithfully("avif"):
        readable -= {"heic", "avif"}
    writable = {coder for coder in WRITERS.values() if magick.writes(coder)}
    return Formats(frozenset(readable), frozenset(writable))


def _check_writable(spec: OutputSpec, formats: Formats) -> None:
    if not formats.can_write(spec.ext):
        raise NotFound(f"{spec.name!r}: this server's ImageMagick cannot write {spec.ext.upper()} "
                       "(its encoder is not installed)")


def problems() -> list[str]:
    """What stops the pipeline from working here; empty when all is well."""
    return magick.problems(REQUIRED_FORMATS)


def sniff(head: bytes) -> Optional[str]:
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


def _check_available() -> None:
    if magick.IMPORT_ERROR:
        raise NotConfigured(f"ImageMagick is not available: {magick.IMPORT_ERROR}")


@contextmanager
def _decoding(what: str, work: Optional[cost.Work] = None):
    """Turn ImageMagick's errors, and its warnings of a cut-short file, into our errors: 413 only for
    a resource run out (see magick.exhausted), 422 for the rest. With the `work`'s price, ImageMagick
    is stopped once it has spent far more CPU than the price (the backstop behind the cost model:
    magick.Stopwatch), a 413 too."""
    limit_ms = cost.stop_after_ms(work.milliseconds) if work else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            try:
                with magick.Stopwatch(limit_ms):
                    yield
            except magick.Stopped as stopped:
                raise PayloadTooLarge(
                    f"{what}: stopped after {stopped.milliseconds:,.0f} ms of CPU, well past the "
                    f"{work.milliseconds:,.0f} ms it was priced at: the image costs more work than its "
                    "header says") from None
            except (WandException, MemoryError, RuntimeError) as error:
                if magick.exhausted(error):
                    raise PayloadTooLarge(f"{what}: the image needs more than a worker's resource "
                                          f"limits ({_short(error) or 'out of memory'})") from None
                raise Unprocessable(f"{what}: the image cannot be decoded ({_short(error)})") from None
        except BaseException:
            DECODED.clear()    # nothing kept that after_failure could take for a failed image's
            magick.after_failure()
            raise
    for warning in caught:
        if issubclass(warning.category, WandWarning) and _is_truncation(str(warning.message)):
            raise Unprocessable(f"{what}: the image is cut short ({_short(warning.message)})")


def _is_truncation(message: str) -> bool:
    message = message.lower()
    return any(sign in message for sign in ("premature end", "truncat", "insufficient image data",
                                             "unexpected end", "corrupt image", "read error"))


def _short(error) -> str:
    text = str(error)
    if text.startswith("MagickReadImage returns false"):    # Wand's words when the coder gave up
        return "no picture in it"
    return text.split(" @ ")[0].replace("`buffer' ", "").replace(" `buffer'", "").strip()


def _open(data: bytes, coder: str, first_frame_only: bool = False, size_hint: str = "",
          ping: bool = False):
    """Decode `data` with the named coder only; refuse it when the decoder warned that it is cut short
    (ImageMagick still gives the part it read), or failed on it and gave pixels all the same
    (ImageMagick 6 gives the picture of a GIF with an invalid colour index, then fails every output
    made of it; 7 fails at the read)."""
    image = magick.open_blob(data, coder, first_frame_only, size_hint, ping)
    try:
        severity, problem = (0, "") if ping else magick.decoder_problem(image)
        if problem and _is_truncation(problem):
            raise Unprocessable(f"the image is cut short ({_short(problem)})")
        if severity >= magick.ERROR:
            raise Unprocessable(f"the image cannot be decoded ({_short(problem)})")
        if not magick.frame_count(image):
            raise Unprocessable("the image cannot be decoded: its header is corrupt, or its size is "
                                "over ImageMagick's limits")
    except BaseException:
        image.close()
        raise
    return image


def _check_complete(data: bytes, coder: str) -> None:
    """Refuse a JPEG or GIF cut short, before any decoding: its blocks are walked as a decoder walks
    them, up to its end marker (what follows the marker is ignored, as decoders ignore it: cameras
    and phones append data to JPEGs, some GIF writers pad or tag theirs). GIF decoders say nothing of
    a missing end; for JPEG, _open catches the rest (corrupt data in the middle) once decoded. PNG and
    WebP decoders fail by themselves. Linear in the bytes, and nothing is decoded."""
    if coder == "jpeg":
        complete = jpeg_markers(data).whole
    elif coder == "gif":
        complete = _gif_reaches_its_end(data)
    else:
        complete = True
    if not complete:
        raise Unprocessable("the image is cut short (no end marker)")


# A JPEG marker: FF, then a code. Entropy-coded data stuffs every FF byte it holds as FF 00, and a
# marker may be preceded by any number of FF fill bytes (the last FF of a run is the marker's).
# TEM and RST0..RST7 (within entropy-coded data) stand alone and say nothing of the end: not sought.
JPEG_MARKER = re.compile(rb"\xff[^\x00\xff\x01\xd0-\xd7]")
JPEG_EOI = 0xD9
# The walks stop past this many segments or blocks (0.1 to 0.25 s of walking; a real JPEG has
# tens of segments, a real GIF of 50 MB some 200,000 sub-blocks of 255 bytes): a file of tiny
# segments or blocks would otherwise cost seconds to walk.
MAXIMUM_JPEG_SEGMENTS = 100_000
MAXIMUM_GIF_BLOCKS = 500_000


# Start-of-frame markers (C0..CF but DHT C4, JPG C8, DAC CC), whose segment names the components.
JPEG_START_OF_FRAME = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_START_OF_SCAN = 0xDA


@dataclass(frozen=True)
class JpegMarkers:
    """What a JPEG's markers say, read as a decoder reads them (see jpeg_markers)."""
    scans: int          # each read by libjpeg over the whole picture: their number prices the decode
    components: int     # colour components (1: grey)
    whole: bool         # the walk reached the end-of-image marker


def jpeg_markers(data: bytes) -> JpegMarkers:
    """Walk the JPEG's segments from its start to its end-of-image marker, each skipped by its length
    (an EXIF thumbnail's scans and end marker, inside APP1, are not the image's); after a start of
    scan, the entropy-coded data runs to the next marker. Linear in the bytes, nothing decoded."""
    scans, components, position = 0, 3, 2
    for _ in range(MAXIMUM_JPEG_SEGMENTS):
        marker = JPEG_MARKER.search(data, position)
        if marker is None:
            return JpegMarkers(max(scans, 1), components, False)
        code, position = data[marker.start() + 1], marker.end()
        if code == JPEG_EOI:
            return JpegMarkers(max(scans, 1), components, True)
        if code in JPEG_START_OF_FRAME and position + 7 < len(data):
            components = data[position + 7] or components  # length 2, precision 1, height 2, width 2
        scans += code == JPEG_START_OF_SCAN
        position += int.from_bytes(data[position:position + 2], "big")  # its length counts itself
    raise PayloadTooLarge(f"the JPEG has over {MAXIMUM_JPEG_SEGMENTS} segments")


GIF_EXTENSION, GIF_IMAGE = 0x21, 0x2C


def _gif_reaches_its_end(data: bytes) -> bool:
    """True when the GIF's blocks, from its header, lead to its trailer: after the logical screen
    descriptor and its colour table, extensions and images, each followed by its chain of sub-blocks.
    The trailer (3B) ends it; so does any other byte that starts no block, as it does in browsers
    (giflib calls it an error, ImageMagick skips it): the decoder then reads what there is."""
    blocks = MAXIMUM_GIF_BLOCKS
    try:
        position = 13 + _gif_colour_table_bytes(data[10])  # header (6), logical screen (7), table
        while blocks > 0:
            block = data[position]
            if block == GIF_EXTENSION:  # introducer, label, sub-blocks
                position, blocks = _after_sub_blocks(data, position + 2, blocks - 1)
            elif block == GIF_IMAGE:    # separator, descriptor (9), table, LZW code size, sub-blocks
                table = _gif_colour_table_bytes(data[position + 9])
                position, blocks = _after_sub_blocks(data, position + 11 + table, blocks - 1)
            else:
                return True
    except IndexError:  # the data ended first
        return False
    raise PayloadTooLarge(f"the GIF is made of over {MAXIMUM_GIF_BLOCKS} blocks")


def _gif_colour_table_bytes(flags: int) -> int:
    """The size of the colour table that a logical screen's or an image's flags announce."""
    return 3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0


def _after_sub_blocks(data: bytes, position: int, blocks: int) -> tuple:
    """(the position after a chain of GIF sub-blocks, the blocks left to walk). A sub-block is a
    size byte and that many bytes; a size of 0 ends the chain. IndexError when the data ends first;
    the chain stops (blocks left <= 0) when the walk has no blocks left."""
    while blocks > 0 and (size := data[position]):
        position += size + 1
        blocks -= 1
    return position + 1, blocks


def describe(data: bytes, limits: Limits = Limits(), formats: Formats = ASSUMED_FORMATS) -> SourceInfo:
    """Check that `data` is a whole image we accept, within the limits, and say what it is: its
    header first, then (once the decoding is priced within the budget) every pixel of it."""
    source = read_header(data, limits, formats)
    check_whole(data, source, limits)
    return source


def check_whole(data: bytes, source: SourceInfo, limits: Limits = Limits()) -> None:
    """`describe`'s decode of every pixel, for a `source` read from `data`'s header already."""
    _check_complete(data, source.coder)
    work = _upload_check(source)
    _check_budget(work, limits, "checking this upload", source)
    with _decoding("upload", work):
        # A full decode (shrunk on load for JPEG) finds files that are cut short or corrupt.
        hint = "64x64" if source.coder == "jpeg" else ""
        with _open(data, source.coder, size_hint=hint) as image:
            if image.width == 0 or image.height == 0:
                raise Unprocessable("upload: the image has no pixels")


def read_header(data: bytes, limits: Limits = Limits(), formats: Formats = ASSUMED_FORMATS) -> SourceInfo:
    """What an image is, from its header alone (no pixel decoded), or an error if it is over the
    limits: for the checks made before any of its pixels are decoded."""
    _check_available()
    coder = coder_for(data, formats)
    with _decoding("original"):
        return _checked_header(data, coder, limits)


def _checked_header(data: bytes, coder: str, limits: Limits) -> SourceInfo:
    """What the image is (as displayed), from the header alone (a ping decodes no pixel), or an
    error if any frame is over the limits. Every frame is measured, and the canvas it is drawn on
    (a GIF's logical screen): the first frame may be small and the next huge, and an animation is
    made of whole canvases once its frames are composed (coalesced). A JPEG's scans are counted from
    its markers."""
    scans, components = 1, 3
    if coder == "png":
        # Its size from IHDR first: ImageMagick reads nothing of a PNG over its own limits, and
        # would leave only "cannot be decoded" to say.
        if data[12:16] == b"IHDR" and len(data) >= 24:
            _check_limits(*struct.unpack(">II", data[16:24]), limits)
        _check_png_metadata(data)
    elif coder == "jpeg":
        markers = jpeg_markers(data)
        scans, components = markers.scans, markers.components
        if scans > limits.maximum_scans:
            raise PayloadTooLarge(f"the JPEG has {scans} scans, over the limit of "
                                  f"{limits.maximum_scans} (--maximum_scans)")
    with _open(data, coder, ping=True) as header:
        frames = len(header.sequence)
        if frames > limits.maximum_frames:
            raise PayloadTooLarge(f"the image has {frames} frames, over the limit of "
                                  f"{limits.maximum_frames}")
        images = header.sequence if frames > 1 else [header]
        sizes = [(image.width, image.height) for image in images]
        canvases = [_canvas(image) for image in images] if frames > 1 else sizes
        transposed = header.orientation in TRANSPOSED_ORIENTATIONS
    for width, height in sizes + canvases:
        _check_limits(width, height, limits)
    if sum(width * height for width, height in canvases) > limits.maximum_animation_pixels:
        width, height = canvases[0]
        raise PayloadTooLarge(f"the animation has {frames} frames on a {width}x{height} canvas: "
                              f"over {limits.maximum_animation_pixels} pixels in all")
    width, height = sizes[0][1::-1] if transposed else sizes[0]
    return SourceInfo(coder, width, height, frames, scans, components, transposed)


def _canvas(frame) -> tuple:
    """The size of the canvas a frame is drawn on: its page (logical screen), and at least the frame
    where it is placed."""
    page_w, page_h, left, top = frame.page
    return max(page_w, frame.width + max(0, left)), max(page_h, frame.height + max(0, top))


def _check_png_metadata(data: bytes) -> None:
    """Refuse a PNG whose compressed metadata chunks inflate to more than MAXIMUM_PNG_METADATA_BYTES
    (a zTXt of 1 MB can inflate to 1 GiB in the decoder, whatever the pixels). Inflated here up to
    the limit only, before ImageMagick sees the file."""
    budget = MAXIMUM_PNG_METADATA_BYTES
    position = 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IDAT" or kind == b"IEND":
            continue
        if kind in PNG_COMPRESSED_CHUNKS:
            budget -= _inflated_size(_compressed_part(kind, body), budget + 1)
            if budget < 0:
                raise PayloadTooLarge(f"the PNG's metadata ({kind.decode()}) inflates to over "
                                      f"{MAXIMUM_PNG_METADATA_BYTES} bytes")


def _compressed_part(kind: bytes, body: bytes) -> bytes:
    """The zlib stream of a zTXt/iCCP (name, NUL, method, data) or compressed iTXt chunk."""
    name_end = body.find(b"\x00")
    if name_end < 0:
        return b""
    if kind != b"iTXt":
        return body[name_end + 2:]
    if body[name_end + 1:name_end + 2] != b"\x01":  # not compressed
        return b""
    rest = body[name_end + 3:]  # flag, method; then language tag and translated keyword
    for _ in range(2):
        end = rest.find(b"\x00")
        if end < 0:
            return b""
        rest = rest[end + 1:]
    return rest


def _inflated_size(stream: bytes, most: int) -> int:
    """How many bytes `stream` inflates to, counting no further than `most`."""
    inflater = zlib.decompressobj()
    total = 0
    try:
        while stream and total < most:
            total += len(inflater.decompress(stream, min(most - total, 2**20)))
            stream = inflater.unconsumed_tail
    except zlib.error:
        pass  # a broken stream: the decoder says so
    return total


def _check_limits(width: int, height: int, limits: Limits) -> None:
    if width <= 0 or height <= 0:
        raise Unprocessable("the image has a zero width or height")
    if width > limits.maximum_side or height > limits.maximum_side:
        raise PayloadTooLarge(f"the image is {width}x{height}; the largest side accepted is "
                              f"{limits.maximum_side}")
    if width * height > limits.maximum_pixels:
        raise PayloadTooLarge(f"the image is {width}x{height}, over the limit of "
                              f"{limits.maximum_pixels} pixels")


@dataclass(frozen=True)
class Plan:
    """How to make one output from a source of a given displayed size."""
    width: int                     # output size
    height: int
    crop: tuple                    # (left, top, width, height) of the source, in displayed pixels
    scale: float                   # output pixels per source pixel


def plan(spec: OutputSpec, source_width: int, source_height: int) -> Plan:
    """The crop box and output size for `spec`: crops are centred and fill the box exactly."""
    whole = (0.0, 0.0, float(source_width), float(source_height))
    if spec.kind == "full":
        return Plan(source_width, source_height, whole, 1.0)
    if spec.kind == "width":
        scale = spec.width / source_width
        return Plan(spec.width, max(1, round(source_height * scale)), whole, scale)
    scale = max(spec.width / source_width, spec.height / source_height)
    crop_w, crop_h = spec.width / scale, spec.height / scale
    left, top = (source_width - crop_w) / 2, (source_height - crop_h) / 2
    return Plan(spec.width, spec.height, (left, top, crop_w, crop_h), scale)


def render(data: bytes, spec: OutputSpec, quality: int, limits: Limits = Limits(),
           formats: Formats = ASSUMED_FORMATS, reuse: str = "") -> bytes:
    """Make the output `spec` from the original `data`, and return its encoded bytes: priced from
    the header first, and refused (413) when over the budget, before any pixel is decoded.

    `reuse`: the original's name (namespace/hash), when a decode of it kept in this worker may serve
    (decoded.py), and this render's decode may be kept for the next outputs of it."""
    _check_available()
    _check_writable(spec, formats)
    source = read_header(data, limits, formats)
    _check_full_size(spec, source.width, source.height, limits)
    work = price(spec, source, quality)
    _check_budget(work, limits, spec.name, source)
    animated_gif = _animated(spec, source)
    layout = plan(spec, source.width, source.height)
    hint = _jpeg_size_hint(source.coder, layout, source.width, source.height, source.transposed)
    identity = (f"{reuse}:{len(data)}:{zlib.crc32(data)}"
                if reuse and limits.decoded_cache_pixels and not animated_gif else "")
    kept = None
    decoded_pixels = _decoded_pixels(layout, source)
    try:
        image, decoded = (DECODED.clone(identity, _cheaper_decode(spec, source, quality, hint, work))
                          if identity else (None, None))
        if decoded:
            work = price(spec, source, quality, decoded)
        with _decoding("render", work):
            if image is None:
                image = _open(data, source.coder, first_frame_only=not animated_gif, size_hint=hint)
            with image:
                if _priced_by_size_from_here(image, decoded_pixels, animated_gif):
                    magick.unwatch(image)
                if not decoded:
                    image.auto_orient()
                    if identity and image.width * image.height <= limits.decoded_cache_pixels:
                        kept = image.clone()
                blob = _finish(image, spec, quality, layout, source, animated_gif)
    except BaseException:
        if kept is not None:
            kept.close()
        raise
    if kept is not None:   # only once the render succeeded: a JPEG cut short warns after its decode
        DECODED.keep(identity, kept, limits.decoded_cache_pixels)
    return blob


def _cheaper_decode(spec: OutputSpec, source: SourceInfo, quality: int, hint: str, fresh: cost.Work):
    """Picks, among the sizes of a source's kept decodes, the very decode this render would make (the
    one `hint` asks for, the whole source without one), if the cost model prices the render from it
    lower than from a fresh decode (`fresh`): the output is then the same, byte for byte. A bigger
    decode would serve as well, but its output differs (SSIM 0.975-0.985 against the fresh one on
    the bench's photograph, better or worse against the reference by size: bench/reuse.py), and
    resizing its extra pixels costs most of what it saves."""
    needed = _hint_width(hint, source) if hint else source.width

    def choose(sizes: list) -> Optional[tuple]:
        # libjpeg rounds a scaled width up, the hint names it rounded down: at most 1 apart.
        same = [size for size in sizes if needed <= size[0] <= needed + 1]
        if same and price(spec, source, quality, same[0]).milliseconds < fresh.milliseconds:
            return same[0]
        return None
    return choose


def _hint_width(hint: str, source: SourceInfo) -> int:
    """The displayed width of a JPEG decoded at the size hint (given in stored orientation)."""
    width, height = (int(side) for side in hint.split("x"))
    return height if source.transposed else width


def _finish(image: "Image", spec: OutputSpec, quality: int, layout: Plan, source: SourceInfo,
            animated_gif: bool) -> bytes:
    """Crop and resize the decoded, upright `image`, convert it to 8-bit sRGB and encode it."""
    _crop_and_resize(image, layout, source.width, animated_gif,
                     preshrink=source.coder != "jpeg" and not animated_gif)
    _to_srgb(image)
    if not _keeps_alpha(spec.ext) and image.alpha_channel:
        image.background_color = Color(WHITE)
        image.alpha_channel = "remove"
    image.strip()
    # 8 bits out. Only when not already so: ImageMagick 7 rewrites every pixel here (4% of a
    # small render) even when nothing changes, and rounds down where 6 leaves them be.
    if image.depth != 8:
        image.depth = 8
    image.compression_quality = avif_quality(quality) if spec.ext == "avif" else quality
    if spec.ext == "avif":
        image.options["heic:speed"] = AVIF_SPEED
    if spec.ext == "png":
        image.options["png:compression-level"] = str(png_compression_level(quality))
    if animated_gif:
        image.optimize_layers()
    elif spec.ext == "gif":
        magick.to_palette(image, GIF_DITHER)
    return image.make_blob(WRITERS[spec.ext])


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


def _keeps_alpha(ext: str) -> bool:
    return ext in ALPHA_WRITERS and magick.writes_alpha(WRITERS[ext])


def _check_full_size(spec: OutputSpec, width: int, height: int, limits: Limits) -> None:
    if spec.kind == "full" and width * height > limits.maximum_full_size_pixels:
        raise PayloadTooLarge(f"{spec.name} of a {width}x{height} image is over the limit of "
                              f"{limits.maximum_full_size_pixels} pixels for full_size; ask for a size")


def price(spec: OutputSpec, source: SourceInfo, quality: int,
          decoded_already: Optional[tuple] = None) -> cost.Work:
    """What making `spec` of `source` will cost (cost.py), from the header's facts alone; from a
    decode of it kept in memory, of size `decoded_already` (width, height), no decode at all."""
    layout = plan(spec, source.width, source.height)
    if decoded_already:
        return cost.render(source, decoded_already[0] * decoded_already[1], layout.width, layout.height,
                           spec.ext, quality, _animated(spec, source), spec.name, decoded_already=True)
    return cost.render(source, _decoded_pixels(layout, source), layout.width, layout.height, spec.ext,
                       quality, _animated(spec, source), spec.name)


def _decoded_pixels(layout: Plan, source: SourceInfo) -> int:
    """The pixels of a frame decoded for `layout`: a JPEG's at the scale it is shrunk to on load."""
    decoded = source.width * source.height
    if source.coder == "jpeg":
        hint = _jpeg_size_hint("jpeg", layout, source.width, source.height, False)
        if hint:
            decoded = int(decoded * (int(hint.split("x")[0]) / source.width) ** 2)
    return decoded


# A decoded picture may have this many more pixels than priced (a DCT scale rounds its size up)
# and still be taken as the one priced.
DECODED_SLACK = 1.1


def _priced_by_size_from_here(image: "Image", priced_pixels: int, animated: bool) -> bool:
    """Whether the work left on a decoded `image` is driven by sizes alone, all priced (cost.py):
    then the backstop (magick.Stopwatch) has nothing left to catch, and is taken off (its callback
    on every row was 8-10% of a small render). The backstop is there for what a file's content
    drives and the header cannot tell: the decode itself, the frames of an animation, a colour
    transform (LittleCMS, through a profile of the file's; the model has no price for it). What
    follows a decode of the priced size is orient, crop and resize (linear in the pixels decoded
    and written) and an encoder (linear in the pixels written, at a bounded effort: zlib at level 6
    at most, WebP's and AVIF's fixed methods, GIF's one quantization)."""
    return (not animated and image.width * image.height <= DECODED_SLACK * priced_pixels
            and not _needs_colour_transform(image))


def _upload_check(source: SourceInfo) -> cost.Work:
    """What `describe`'s full decode costs: every frame, a JPEG at 1/8 scale."""
    decoded = source.width * source.height
    if source.coder == "jpeg":
        decoded //= 64
    return cost.check(source, decoded)


def _animated(spec: OutputSpec, source: SourceInfo) -> bool:
    return source.coder == "gif" and spec.ext == "gif" and source.frames > 1


def check_work(specs: Iterable[OutputSpec], source: SourceInfo, limits: Limits = Limits(),
               default_quality: int = 75, upload: bool = False, formats: Formats = ASSUMED_FORMATS) -> None:
    """Refuse, before any of it is done, a request whose work is priced over the budget: an
    upload's own check (`upload`), then each output it makes."""
    specs = list(specs)
    parts = [_upload_check(source)] if upload else []
    for spec in specs:
        _check_writable(spec, formats)
        _check_full_size(spec, source.width, source.height, limits)
        parts.append(price(spec, source, spec.quality or default_quality))
    if parts:
        total = functools.reduce(lambda a, b: a + b, parts)
        what = (f"this upload and its {len(specs)} outputs" if upload and specs
                else "this upload" if upload else f"these {len(specs)} outputs")
        _check_budget(total, limits, what, source, len(parts))


def _check_budget(work: cost.Work, limits: Limits, what: str, source: SourceInfo,
                  parts: int = 1) -> None:
    """413 when `work` is priced over --maximum_request_ms, naming the bound and what drives it."""
    if work.milliseconds > limits.maximum_request_ms:
        detail = f" ({work.what})" if parts <= 3 else ""
        raise PayloadTooLarge(f"{what} of a {_shown(source)} would take about "
                              f"{work.milliseconds:,.0f} ms of work{detail}, over the limit of "
                              f"{limits.maximum_request_ms:,} ms per request (--maximum_request_ms)")


def _shown(source: SourceInfo) -> str:
    """'577x577 GIF of 300 frames', for messages."""
    text = f"{source.width}x{source.height} {source.coder.upper()}"
    if source.frames > 1:
        text += f" of {source.frames} frames"
    if source.scans > 1:
        text += f" of {source.scans} scans"
    return text


def _jpeg_size_hint(coder: str, layout: Plan, shown_w: int, shown_h: int, transposed: bool) -> str:
    """Ask libjpeg to decode at the smallest DCT scale (1/8, 2/8, 3/8, 4/8) that leaves at least
    SHRINK_ON_LOAD_MARGIN source pixels per output pixel: DCT scaling costs almost nothing and skips
    most of the pixel work, and the margin leaves the final Lanczos resize enough pixels to filter
    without aliasing (at 1, a crop of fine detail decoded at 1/8 strays 4x further from a Lanczos
    resize of the full picture; see bench/README.md)."""
    if coder != "jpeg":
        return ""
    needed = layout.scale * SHRINK_ON_LOAD_MARGIN  # the fraction of the source's width needed
    for denominator, scale in JPEG_SCALES:
        if scale >= needed and min(shown_w, shown_h) >= 8 * denominator:
            # ImageMagick asks libjpeg for 1/int(size / hint): name that denominator exactly.
            want_w, want_h = shown_w // denominator, shown_h // denominator
            if transposed:
                want_w, want_h = want_h, want_w
            return f"{want_w}x{want_h}"
    return ""


def _crop_and_resize(image: "Image", layout: Plan, shown_w: int, animated: bool,
                     preshrink: bool = False) -> None:
    """Crop (in the decoded image's pixels, which shrink-on-load may have made smaller), then resize.
    `preshrink`: for sources decoded whole (all but JPEG), see _preshrink."""
    if preshrink:
        _preshrink(image, layout, shown_w)
    factor = image.width / shown_w
    left, top, width, height = (value * factor for value in layout.crop)
    shrunk = factor < 1    # decoded at a DCT scale
    box_l, box_w = _span(image.width, left, width, shrunk)
    box_t, box_h = _span(image.height, top, height, shrunk)
    if (box_l, box_t, box_w, box_h) != (0, 0, image.width, image.height):
        if animated:  # Wand's crop coalesces and crops every frame
            image.crop(box_l, box_t, width=box_w, height=box_h)
        else:
            magick.crop(image, box_l, box_t, box_w, box_h)
    if (image.width, image.height) != (layout.width, layout.height):
        if animated:
            image.resize(layout.width, layout.height, filter="lanczos")
        else:
            magick.resize_lanczos(image, layout.width, layout.height, LANCZOS_SUPPORT)
    image.page = (layout.width, layout.height, 0, 0)


def _span(size: int, start: float, length: float, shrunk: bool) -> tuple:
    """(start, length) in whole pixels of the span [start, start + length) of `size` pixels. In a
    picture `shrunk` on load, a centred span (the plan's crops are) stays exactly centred: its length
    takes the parity of `size`, at most one pixel more (a stretch of 0.3% on a 375-pixel crop).
    Rounded as it comes, it sat half a pixel off centre, and half a pixel of a picture decoded at 1/8
    is 4 pixels of the source: x100.jpg of a 12 MP JPEG scored SSIM 0.918 against 0.925 centred
    (bench/README.md). At full size, rounding is half a source pixel at most, as every other
    renderer crops, and a pixel more would stretch the output instead."""
    box = max(1, min(size, round(length)))
    if shrunk and abs(start + length / 2 - size / 2) < 0.01:
        box += (size - box) % 2    # odd leftover: one more pixel (there is room for it)
        return (size - box) // 2, box
    return min(max(0, round(start)), size - box), box


def _preshrink(image: "Image", layout: Plan, shown_w: int) -> None:
    """Box-average a picture still over PRESHRINK_FROM times the output's scale (no JPEG
    shrink-on-load: PNG, WebP, GIF) to twice that scale, before the crop: a fraction of the cost of
    a Lanczos pass over all its pixels, it leaves Lanczos two pixels per output pixel, and the crop
    then copies a small picture (a 50 MP PNG cropped first would need a second 270 MB copy). Never
    for a JPEG: decoded at a DCT scale it is already small, and a box average of it on top cost
    tiny outputs SSIM and saved no CPU (x100.jpg and 50x100.jpg of a 12 MP JPEG: 0.919 against
    0.925 without; bench/README.md)."""
    scale = layout.scale * shown_w / image.width  # output pixels per decoded pixel
    if scale * PRESHRINK_FROM > 1:
        return
    width = max(1, round(image.width * scale * 2))
    height = max(1, round(image.height * scale * 2))
    magick.box_shrink(image, width, height)


def _to_srgb(image: "Image") -> None:
    """8-bit sRGB out: through the embedded ICC profile where it can be applied, else by formula. A
    profile that does not fit the pixels, or that cannot be read, is ignored, as browsers ignore it;
    one that is sRGB itself (what most cameras and editors write) is left alone: the transform would
    change nothing but cost more than the rest of a small render (bench/README.md)."""
    if not _needs_colour_transform(image):
        return
    profile = _profile_to_apply(image)
    srgb = _srgb_profile()
    if profile is not None and srgb and magick.convert_profile(image, srgb):
        return
    if image.colorspace not in ("srgb", "gray"):
        image.transform_colorspace("srgb")


def _profile_to_apply(image: "Image") -> Optional[bytes]:
    """The embedded ICC profile that the pixels are converted through, or None (see _to_srgb)."""
    # Wand's profiles mapping answers None for a missing key, so `in` would always be true.
    profile = image.profiles["icc"]
    if profile is not None and (not profile_fits(profile, image.colorspace) or icc.is_srgb(profile)):
        return None
    return profile


def _needs_colour_transform(image: "Image") -> bool:
    return image.colorspace not in ("srgb", "rgb", "gray") or _profile_to_apply(image) is not None


# The data colour spaces of the ICC profiles that fit pixels of a colour space, as Chromium's JPEG
# decoder judges them: grey pixels may be described as RGB ones. Any other pixels: an RGB profile.
ICC_SPACES = {"gray": (b"GRAY", b"RGB "), "cmyk": (b"CMYK",)}


def profile_fits(icc: bytes, colorspace: str) -> bool:
    """Whether the ICC profile `icc` can describe pixels in ImageMagick's `colorspace`: it is one (a
    128-byte header signed "acsp") and its data colour space (header bytes 16-19) is theirs. A CMYK
    profile on RGB pixels would turn red into cyan."""
    if len(icc) < 128 or icc[36:40] != b"acsp":
        return False
    return icc[16:20] in ICC_SPACES.get(colorspace, (b"RGB ",))


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> Optional[bytes]:
    """The sRGB ICC profile (Debian's icc-profiles-free), or None where there is none."""
    for path in SRGB_PROFILE_PATHS:
        if os.path.exists(path):
            with open(path, "rb") as f:
                return f.read()
    return None


def format_support(formats: Formats) -> dict:
    """Which of our formats this process reads (for doctor and status)."""
    _check_available()
    return {coder: coder in formats.readable for coder in CONTENT_TYPES}


def check_formats(formats: Formats) -> dict:
    """For doctor: {coder: (reads, writes)}, as init_worker found them (each output format written
    and read back for real; the others can only be read, when ImageMagick has their coder)."""
    _check_available()
    return {coder: (coder in formats.readable, coder in formats.writable) for coder in CONTENT_TYPES}


def writable_extensions(formats: Formats) -> list[str]:
    """The output extensions this ImageMagick writes (for status)."""
    return [ext for ext in WRITERS if formats.can_write(ext)]
