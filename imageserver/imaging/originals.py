"""Checking an original before its pixels are decoded: its format, every frame's size, its
animation's pixels, a PNG's compressed metadata, a JPEG's scans, and that it is whole (a walk of its
blocks to the end marker); then, for an upload, one decode of every pixel (`check_whole`)."""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from imageserver.core.errors import (
    PayloadTooLarge,
    Unprocessable,
)
from imageserver.imaging.decoding import decoding, open_image
from imageserver.imaging.formats import ASSUMED_FORMATS, Formats, check_available, coder_for
from imageserver.imaging.plan import check_budget, upload_check
from imageserver.imaging.source import Limits, SourceInfo

# EXIF orientations 5..8 store the picture turned by 90 degrees.
TRANSPOSED_ORIENTATIONS = {"left_top", "right_top", "right_bottom", "left_bottom"}

# Compressed PNG metadata (zTXt, iTXt, iCCP) may inflate to this many bytes in all: far more than any
# real profile or text, far less than a worker's memory.
MAXIMUM_PNG_METADATA_BYTES = 8 * 2**20
PNG_COMPRESSED_CHUNKS = {b"zTXt", b"iTXt", b"iCCP"}


def check_complete(data: bytes, coder: str) -> None:
    """Refuse a JPEG or GIF cut short, before any decoding: its blocks are walked as a decoder walks
    them, up to its end marker (what follows the marker is ignored, as decoders ignore it: cameras
    and phones append data to JPEGs, some GIF writers pad or tag theirs). GIF decoders say nothing of
    a missing end; for JPEG, open_image catches the rest (corrupt data in the middle) once decoded. PNG and
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
    check_complete(data, source.coder)
    work = upload_check(source)
    check_budget(work, limits, "checking this upload", source)
    with decoding("upload", work):
        # A full decode (shrunk on load for JPEG) finds files that are cut short or corrupt.
        hint = "64x64" if source.coder == "jpeg" else ""
        with open_image(data, source.coder, size_hint=hint) as image:
            if image.width == 0 or image.height == 0:
                raise Unprocessable("upload: the image has no pixels")


def read_header(data: bytes, limits: Limits = Limits(), formats: Formats = ASSUMED_FORMATS) -> SourceInfo:
    """What an image is, from its header alone (no pixel decoded), or an error if it is over the
    limits: for the checks made before any of its pixels are decoded."""
    check_available()
    coder = coder_for(data, formats)
    with decoding("original"):
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
            width, height = struct.unpack(">II", data[16:24])
            check_limits(width, height, limits)
        _check_png_metadata(data)
    elif coder == "jpeg":
        markers = jpeg_markers(data)
        scans, components = markers.scans, markers.components
        if scans > limits.maximum_scans:
            raise PayloadTooLarge(f"the JPEG has {scans} scans, over the limit of "
                                  f"{limits.maximum_scans} (--maximum_scans)")
    with open_image(data, coder, ping=True) as header:
        frames = len(header.sequence)
        if frames > limits.maximum_frames:
            raise PayloadTooLarge(f"the image has {frames} frames, over the limit of "
                                  f"{limits.maximum_frames}")
        images = header.sequence if frames > 1 else [header]
        sizes = [(image.width, image.height) for image in images]
        canvases = [_canvas(image) for image in images] if frames > 1 else sizes
        transposed = header.orientation in TRANSPOSED_ORIENTATIONS
    for width, height in sizes + canvases:
        check_limits(width, height, limits)
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


def check_limits(width: int, height: int, limits: Limits) -> None:
    if width <= 0 or height <= 0:
        raise Unprocessable("the image has a zero width or height")
    if width > limits.maximum_side or height > limits.maximum_side:
        raise PayloadTooLarge(f"the image is {width}x{height}; the largest side accepted is "
                              f"{limits.maximum_side}")
    if width * height > limits.maximum_pixels:
        raise PayloadTooLarge(f"the image is {width}x{height}, over the limit of "
                              f"{limits.maximum_pixels} pixels")
