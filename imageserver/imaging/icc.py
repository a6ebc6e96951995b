"""ICC profiles read as numbers: whether an embedded profile is sRGB, so that the pipeline can leave
its pixels as they are instead of running a colour transform that changes nothing (LittleCMS's
sRGB-to-sRGB transform was over half the CPU of a small render of such a JPEG; see bench/README.md).

Judged by what the profile does, not by what it is called: an RGB matrix/shaper profile whose
primaries are sRGB's and whose three tone curves follow sRGB's curve, within what 8 bits show.
Anything else (another gamut, a linear or gamma-2.2 curve, a LUT-based profile, a damaged one) is
"not sRGB", and is converted as before.
"""
from __future__ import annotations

import functools
import hashlib
import struct
import threading

# sRGB's primaries as ICC profiles give them: adapted to the D50 connection space (rXYZ, gXYZ, bXYZ
# of the IEC 61966-2.1 profiles; every maker's agrees to 1/1000).
SRGB_COLORANTS = {b"rXYZ": (0.4361, 0.2225, 0.0139), b"gXYZ": (0.3851, 0.7169, 0.0971),
                  b"bXYZ": (0.1431, 0.0606, 0.7141)}
COLORANT_TOLERANCE = 0.003
# A tone curve is sRGB's when it nowhere strays from it by more than this much of an 8-bit step of
# the encoded value: every 8-bit value then maps to itself.
CURVE_TOLERANCE = 0.5 / 255
CURVE_SAMPLES = 64
TONE_CURVES = (b"rTRC", b"gTRC", b"bTRC")
# Tags that make a colour engine use lookup tables instead of the matrix and curves checked here
# (LittleCMS reads the D2Bx/B2Dx floating-point ones first, for any transform).
LUT_TAGS = (b"A2B0", b"A2B1", b"A2B2", b"B2A0", b"B2A1", b"B2A2", b"D2B0", b"D2B1", b"D2B2", b"D2B3",
            b"B2D0", b"B2D1", b"B2D2", b"B2D3")
MATRIX_SHAPER_TAGS = (b"rXYZ", b"gXYZ", b"bXYZ") + (b"rTRC", b"gTRC", b"bTRC")
# The profile classes that describe a device's colours (not a device link, an abstract profile or a
# list of named colours, which a colour engine chains otherwise).
DEVICE_CLASSES = (b"mntr", b"scnr", b"prtr", b"spac")
HEADER_BYTES = 128


def srgb_curve(value: float) -> float:
    """sRGB's tone curve (IEC 61966-2.1): encoded value 0..1 to linear light 0..1."""
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def is_srgb(profile: bytes) -> bool:
    """True when `profile` (an ICC profile's bytes) maps colours as sRGB does. Never raises: a profile
    that cannot be read is not sRGB. The answers are kept by the profile's digest, not its bytes (a
    JPEG's profile may be megabytes: 64 of them kept would be a worker's memory)."""
    digest = hashlib.blake2b(profile, digest_size=16).digest()
    answer = _SRGB_ANSWERS.get(digest)
    if answer is None:
        answer = _reads_as_srgb(profile)
        with _lock:    # `images server` may run threads in a worker
            _SRGB_ANSWERS[digest] = answer
            if len(_SRGB_ANSWERS) > KEPT_ANSWERS:
                del _SRGB_ANSWERS[next(iter(_SRGB_ANSWERS))]    # the oldest
    return answer


KEPT_ANSWERS = 64
_SRGB_ANSWERS: dict[bytes, bool] = {}
_lock = threading.Lock()


def _reads_as_srgb(profile: bytes) -> bool:
    try:
        tags = _rgb_tags_without_tables(profile)
        return (tags is not None
                and all(_colorant_is_srgb(tags.get(tag), expected)
                        for tag, expected in SRGB_COLORANTS.items())
                and all(_curve_is_srgb(tags.get(tag)) for tag in TONE_CURVES))
    except (struct.error, ValueError, IndexError, ZeroDivisionError, OverflowError):
        return False


def is_matrix_shaper(profile: bytes) -> bool:
    """True when `profile` is an RGB device profile that a colour engine applies through its three
    tone curves and 3x3 matrix alone (what cameras, phones and editors write: Adobe RGB, Display
    P3, ProPhoto), not through lookup tables. Never raises: a profile that cannot be read is not."""
    try:
        tags = _rgb_tags_without_tables(profile)
    except (struct.error, ValueError):
        return False
    return (tags is not None and profile[12:16] in DEVICE_CLASSES
            and all(tag in tags for tag in MATRIX_SHAPER_TAGS))


def _rgb_tags_without_tables(profile: bytes) -> dict | None:
    """The tags of an ICC profile of RGB data with an XYZ connection space and no lookup tables (which
    a colour engine would use instead of a matrix and curves); None for any other profile."""
    tags = _tags(profile)
    if profile[36:40] != b"acsp" or profile[16:20] != b"RGB " or profile[20:24] != b"XYZ ":
        return None
    if any(tag in tags for tag in LUT_TAGS):
        return None
    return tags


def _tags(profile: bytes) -> dict:
    """Tag signature -> the tag's bytes, from the tag table after the 128-byte header."""
    count = struct.unpack_from(">I", profile, HEADER_BYTES)[0]
    if count > 1000:
        raise ValueError("not a tag table")
    tags = {}
    for i in range(count):
        signature, offset, size = struct.unpack_from(">4sII", profile, HEADER_BYTES + 4 + 12 * i)
        data = profile[offset:offset + size]
        if len(data) != size:
            raise ValueError("a tag past the end")
        tags[signature] = data
    return tags


def _fixed(data: bytes, offset: int) -> float:
    """An s15Fixed16Number."""
    return struct.unpack_from(">i", data, offset)[0] / 65536


def _colorant_is_srgb(tag, expected: tuple) -> bool:
    if not tag or tag[:4] != b"XYZ ":
        return False
    xyz = [_fixed(tag, 8 + 4 * i) for i in range(3)]
    return all(abs(got - want) <= COLORANT_TOLERANCE for got, want in zip(xyz, expected))


def srgb_slope(value: float) -> float:
    """The slope of srgb_curve at `value`: linear light per unit of encoded value."""
    return 1 / 12.92 if value <= 0.04045 else 2.4 / 1.055 * ((value + 0.055) / 1.055) ** 1.4


# (encoded value, sRGB's linear light there, how far a curve may stray there), made once.
_SAMPLES = tuple((x, srgb_curve(x), CURVE_TOLERANCE * srgb_slope(x))
                 for x in (i / (CURVE_SAMPLES - 1) for i in range(CURVE_SAMPLES)))


def _curve_is_srgb(tag) -> bool:
    curve = _curve(tag) if tag else None
    if curve is None:
        return False
    return all(abs(curve(x) - linear) <= slack for x, linear, slack in _SAMPLES)


def _curve(tag: bytes):
    """The tone curve of a 'curv' or 'para' tag as a function on 0..1, or None for another type."""
    if tag[:4] == b"curv":
        count = struct.unpack_from(">I", tag, 8)[0]
        if count < 2:  # identity or a pure gamma: not sRGB's curve
            return None
        table = struct.unpack_from(f">{count}H", tag, 12)
        return functools.partial(_interpolated, table)
    if tag[:4] == b"para":
        kind = struct.unpack_from(">H", tag, 8)[0]
        wanted = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(kind)
        if wanted is None:
            return None
        parameters = [_fixed(tag, 12 + 4 * i) for i in range(wanted)]
        return functools.partial(_parametric, kind, parameters)
    return None


def _interpolated(table: tuple, value: float) -> float:
    position = value * (len(table) - 1)
    low = min(int(position), len(table) - 2)
    fraction = position - low
    return (table[low] * (1 - fraction) + table[low + 1] * fraction) / 65535


def _parametric(kind: int, p: list, x: float) -> float:
    """ICC's parametric curve types 0..4 (ICC.1:2010, 10.18)."""
    g = p[0]
    if kind == 0:
        return x ** g
    if kind == 1:
        a, b = p[1:3]
        return (a * x + b) ** g if x >= -b / a else 0.0
    if kind == 2:
        a, b, c = p[1:4]
        return (a * x + b) ** g + c if x >= -b / a else c
    if kind == 3:
        a, b, c, d = p[1:5]
        return (a * x + b) ** g if x >= d else c * x
    a, b, c, d, e, f = p[1:7]
    return (a * x + b) ** g + e if x >= d else c * x + f
