"""A corpus of hostile files, made by the tests: ImageTragick-style payloads, bombs, broken images.

Payloads that would reach out call `hit_url` (a test HTTP server that counts requests) or touch
`victim` (a file that must survive), so that a test can see that none of them ever ran.
"""
from __future__ import annotations

import struct
import zlib

from tests import pictures


def mvg_payload(hit_url: str, victim: str) -> bytes:
    """ImageTragick (CVE-2016-3714 and friends): fetch a URL, delete a file, read a file."""
    return (b"push graphic-context\nviewbox 0 0 640 480\n"
            + f"fill 'url({hit_url}/mvg-url)'\n".encode()
            + f"image over 0,0 0,0 'ephemeral:{victim}'\n".encode()
            + b"image over 0,0 0,0 'text:/etc/passwd'\n"
            + b"pop graphic-context\n")


def svg_payload(hit_url: str, victim: str) -> bytes:
    return (b'<?xml version="1.0" standalone="no"?>\n'
            b'<svg width="640" height="480" xmlns="http://www.w3.org/2000/svg" '
            b'xmlns:xlink="http://www.w3.org/1999/xlink">\n'
            + f'<image xlink:href="{hit_url}/svg-href" x="0" y="0" height="10" width="10"/>\n'.encode()
            + f'<image xlink:href="ephemeral:{victim}" x="0" y="0" height="10" width="10"/>\n'.encode()
            + b"</svg>\n")


def msl_payload(hit_url: str, victim: str) -> bytes:
    """An MSL script that reads a URL and writes over the victim file."""
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<image>\n'
            + f'<read filename="{hit_url}/msl-read"/>\n'.encode()
            + f'<write filename="{victim}"/>\n'.encode()
            + b"</image>\n")


def postscript_payload(hit_url: str, victim: str) -> bytes:
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
            + f"({victim}) deletefile\n".encode() + b"showpage\n")


def text_payload(hit_url: str, victim: str) -> bytes:
    """What the TXT/TEXT coders would draw: a file of the server, as an image."""
    return b"@/etc/passwd\n"


# Each maker takes (hit_url, victim) and returns the bytes, sent with a .jpg name.
DISGUISED = {"mvg": mvg_payload, "svg": svg_payload, "msl": msl_payload, "ps": postscript_payload,
             "txt": text_payload}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int, rows: int = 16) -> bytes:
    """A tiny grey PNG that claims `width` x `height`, with only the first `rows` rows of data:
    a decompression bomb to anyone who believes the header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows_data = zlib.compress(b"\x00" * (1 + width) * rows, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows_data)
            + _chunk(b"IEND", b""))


def png_bomb(width: int, height: int) -> bytes:
    """A complete PNG of zeros: kilobytes on disk, width x height pixels once decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data)
            + _chunk(b"IEND", b""))


def png_zero_width() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 0, 10, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + _chunk(b"IEND", b""))


def gif_frames(count: int, width: int = 1, height: int = 1) -> bytes:
    """A GIF of `count` frames, each `width` x `height` of one colour, written by hand (fast)."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0)     # global table of 2 colours
    palette = b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = (b"\x21\xf9\x04\x00\x0a\x00\x00\x00"                    # 0.1 s per frame
             + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
             + _lzw_one_colour(width * height))
    return b"GIF89a" + screen + palette + loop + frame * count + b"\x3b"


def _lzw_one_colour(pixels: int) -> bytes:
    """GIF LZW data (minimum code size 2) of `pixels` pixels of colour 0: a clear code before each
    pixel keeps the code size at 3 bits, which makes the stream trivial to write."""
    bits, nbits, out = 0, 0, bytearray()
    for code in [4, 0] * pixels + [5]:
        bits |= code << nbits
        nbits += 3
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        out.append(bits & 0xFF)
    blocks = b"".join(bytes([len(out[i:i + 255])]) + bytes(out[i:i + 255])
                      for i in range(0, len(out), 255))
    return b"\x02" + blocks + b"\x00"


def gif_small_then_huge(side: int) -> bytes:
    """An animation whose first frame is 1x1 and whose second claims `side` x `side`."""
    huge = b"\x2c" + struct.pack("<HHHHB", 0, 0, side, side, 0) + _lzw_one_colour(1)
    return gif_frames(1)[:-1] + huge + b"\x3b"


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[:max(16, int(len(data) * keep))]


def truncated_images() -> dict:
    """Real JPEG, PNG, WebP and GIF pictures cut in half."""
    return {fmt: truncated(pictures.photo(300, 200, fmt)) for fmt in ("jpeg", "png", "webp", "gif")}


def polyglot_jpeg_mvg(hit_url: str, victim: str) -> bytes:
    """A real JPEG with an MVG script after its end: the JPEG coder, and only it, may run."""
    return pictures.photo(64, 48, "jpeg") + b"\n" + mvg_payload(hit_url, victim)


def polyglot_png_svg(hit_url: str, victim: str) -> bytes:
    """PNG's magic bytes, then an SVG document."""
    return b"\x89PNG\r\n\x1a\n" + svg_payload(hit_url, victim)


def garbage_after_magic() -> dict:
    """The first bytes of each accepted format, then noise."""
    noise = bytes(range(256)) * 8
    return {"jpeg": b"\xff\xd8\xff\xe0" + noise, "png": b"\x89PNG\r\n\x1a\n" + noise,
            "gif": b"GIF89a" + noise, "webp": b"RIFF\x00\x10\x00\x00WEBPVP8 " + noise}


def png_text_bomb(inflated: int = 2**30) -> bytes:
    """A 1x1 PNG with a zTXt chunk that inflates to `inflated` bytes (about a thousandth of that on
    disk): a memory bomb to a decoder that reads its metadata."""
    packer = zlib.compressobj(9)
    block = b"\x00" * 2**20
    text = b"".join(packer.compress(block) for _ in range(inflated // len(block))) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"zTXt", b"Comment\x00\x00" + text)
            + _chunk(b"IDAT", zlib.compress(b"\x00\x00")) + _chunk(b"IEND", b""))


def gif_big_screen(frames: int = 300, side: int = 7000) -> bytes:
    """`frames` frames of 1x1 on a `side` x `side` logical screen: a few kilobytes, and each frame a
    full screen of pixels once an animation is coalesced."""
    small = gif_frames(frames)
    return small[:6] + struct.pack("<HH", side, side) + small[10:]


def png_rgba_bomb(side: int = 7071) -> bytes:
    """A complete RGBA PNG of zeros, `side` x `side` (50 megapixels at 7071): a few kilobytes."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    row = b"\x00" * (1 + 4 * side)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data)
            + _chunk(b"IEND", b""))


def jpeg_many_scans(width: int, height: int, scans: int) -> bytes:
    """A grey progressive JPEG of `scans` scans, written by hand: a DC scan, then the same AC scan
    again and again, each a few dozen bytes (end-of-band runs over every block). libjpeg reads each
    scan over the whole picture: 700 scans of 7000x7000 are 160 KB and seconds of CPU."""
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    quantization = _jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)
    frame = _jpeg_segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    # DC table: one code, difference 0. AC table: the end-of-band runs EOBr (r << 4), 4-bit codes.
    dc_table = _jpeg_segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    ac_table = _jpeg_segment(0xC4, b"\x10" + bytes([0, 0, 0, 15] + [0] * 12)
                             + bytes(r << 4 for r in range(15)))
    dc = _Bits()
    for _ in range(blocks):
        dc.put(0, 1)
    ac = _Bits()
    left = blocks
    while left:
        run = min(left, 32767)
        bits = run.bit_length() - 1
        ac.put(bits, 4)
        ac.put(run - (1 << bits), bits)
        left -= run
    dc_scan = _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x00\x00") + dc.done()
    ac_scan = _jpeg_segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + ac.done()
    return (b"\xff\xd8" + quantization + frame + dc_table + ac_table + dc_scan
            + ac_scan * (scans - 1) + b"\xff\xd9")


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(body) + 2) + body


class _Bits:
    """Entropy-coded bits, most significant first, with JPEG's byte stuffing (FF -> FF 00)."""

    def __init__(self):
        self.out, self.value, self.count = bytearray(), 0, 0

    def put(self, value: int, count: int) -> None:
        self.value, self.count = (self.value << count) | value, self.count + count
        while self.count >= 8:
            self.count -= 8
            byte = (self.value >> self.count) & 0xFF
            self.out += b"\xff\x00" if byte == 0xFF else bytes([byte])
        self.value &= (1 << self.count) - 1

    def done(self) -> bytes:
        if self.count:
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)   # padded with ones
        return bytes(self.out)


def gif_flat_frames(count: int, width: int, height: int) -> bytes:
    """A GIF of `count` frames of `width` x `height`, each of one colour, LZW-coded as an encoder
    codes them (a frame of 577x577 is a few kilobytes): small files that are a great many pixels
    once decoded, and a great many more once made bigger."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0)     # global table of 2 colours
    palette = b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frames = []
    for colour in range(2):
        frames.append(b"\x21\xf9\x04\x00\x0a\x00\x00\x00"
                      + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
                      + _lzw(bytes([colour]) * (width * height)))
    return b"GIF89a" + screen + palette + loop + b"".join(frames[i % 2] for i in range(count)) + b"\x3b"


def _lzw(pixels: bytes, minimum_size: int = 2) -> bytes:
    """GIF's LZW (variable code size up to 12 bits, a clear code when the table is full), in
    sub-blocks of up to 255 bytes."""
    clear, end = 1 << minimum_size, (1 << minimum_size) + 1
    out, bits, nbits = bytearray(), 0, 0
    size, table, following = minimum_size + 1, {}, end + 1

    def emit(code: int) -> None:
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += size
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8

    emit(clear)
    prefix = pixels[0]
    for pixel in pixels[1:]:
        known = table.get((prefix, pixel))
        if known is not None:
            prefix = known
            continue
        emit(prefix)
        if following < 4096:
            table[(prefix, pixel)] = following
            following += 1
            if following > (1 << size) and size < 12:
                size += 1
        else:
            emit(clear)
            size, table, following = minimum_size + 1, {}, end + 1
        prefix = pixel
    emit(prefix)
    emit(end)
    if nbits:
        out.append(bits & 0xFF)
    blocks = b"".join(bytes([len(out[i:i + 255])]) + bytes(out[i:i + 255])
                      for i in range(0, len(out), 255))
    return bytes([minimum_size]) + blocks + b"\x00"


def gif_with_bytes_after_trailer() -> bytes:
    """A whole animation, then bytes after its trailer (3B) that end in no trailer: what some writers
    and uploaders pad or tag GIFs with. Decoders stop at the trailer."""
    return pictures.animated_gif(30, 20) + b"\x00\x00tagged by an uploader\r\n"


def jpeg_with_data_after_end() -> bytes:
    """A whole JPEG, then what phones append after its end marker (a motion photo's video): bytes
    that hold a start-of-scan marker (FF DA) and no end marker after it."""
    video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\x00\x01\x00\x00mdat"
    return pictures.photo(64, 48, "jpeg") + video + b"\x12\x34\xff\xda\x56\x78" * 100


ICC_FOLDER = "/usr/share/color/icc"   # Debian's icc-profiles-free


def icc_profile(name: str) -> bytes:
    with open(f"{ICC_FOLDER}/{name}", "rb") as f:
        return f.read()


def with_icc_profile(jpeg: bytes, icc: bytes) -> bytes:
    """`jpeg` with `icc` embedded as its ICC profile (one APP2 ICC_PROFILE segment after the start
    of image), whatever `icc` holds."""
    body = b"ICC_PROFILE\x00\x01\x01" + icc
    return jpeg[:2] + b"\xff\xe2" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


# Made only when a test asks (`unfitting_icc_profile`): pictures made at collection would have
# ImageMagick read its policy before the tests put ours in force.
UNFITTING_ICC_PROFILES = ("rgb-profile-on-grey", "garbage-profile-on-grey", "truncated-profile-on-grey",
                          "rgb-profile-on-cmyk", "grey-profile-on-rgb", "garbage-profile-on-rgb")


def unfitting_icc_profile(name: str) -> tuple:
    """A JPEG whose embedded ICC profile cannot be applied (one of UNFITTING_ICC_PROFILES), and the
    (r, g, b) that a browser shows, as it ignores that profile."""
    grey, dark_red = (100, 100, 100), (200, 50, 50)
    rgb_jpeg = pictures.solid(40, 40, "rgb(200,50,50)", "jpeg")
    srgb = icc_profile("sRGB.icc")
    picture, profile, colour = {
        "rgb-profile-on-grey": (pictures.grey_jpeg(40, 40, grey[0]), srgb, grey),
        "garbage-profile-on-grey": (pictures.grey_jpeg(40, 40, grey[0]), bytes(range(256)) * 2, grey),
        "truncated-profile-on-grey": (pictures.grey_jpeg(40, 40, grey[0]), srgb[:200], grey),
        "rgb-profile-on-cmyk": (pictures.cmyk_jpeg(40, 40, "red"), srgb, (255, 0, 0)),
        "grey-profile-on-rgb": (rgb_jpeg, icc_profile("Gray.icc"), dark_red),
        "garbage-profile-on-rgb": (rgb_jpeg, b"\x00" * 600, dark_red),
    }[name]
    return with_icc_profile(picture, profile), colour


def gif_of_tiny_sub_blocks(count: int) -> bytes:
    """A 1x1 GIF whose image data is `count` sub-blocks of one byte: costly to walk, block by block."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02"
    return screen + image + b"\x01\x00" * count + b"\x00\x3b"


def jpeg_of_empty_segments(count: int) -> bytes:
    """A JPEG's start, then `count` empty comment segments: costly to walk, segment by segment."""
    return b"\xff\xd8" + b"\xff\xfe\x00\x02" * count + b"\xff\xd9"


def gif_invalid_colour_index() -> bytes:
    """A 1x1 GIF whose one pixel is colour 3 of a table of 2 (as GIF test suites have it): ImageMagick
    6 gives a picture and an error with it."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    codes = 4 | 3 << 3 | 5 << 6                     # clear, colour 3, end; 3 bits each
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02" + struct.pack("<H", codes)
    return screen + image + b"\x00\x3b"
