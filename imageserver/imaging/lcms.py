"""LittleCMS (liblcms2, the library ImageMagick itself converts colours with), through ctypes: the
8-bit colour transform from an embedded ICC profile to sRGB, made once per profile in a worker and
kept for the next pictures of that profile.

ImageMagick's own call (MagickProfileImage) makes a new transform on every call (about 4.5 ms) and
runs it in double precision (150-200 ns a pixel). LittleCMS, asked for 8 bits in and 8 bits out
from a matrix/shaper profile, builds its fast path instead (three 8-bit curves, a fixed-point
matrix, three output tables): about 8 ns a pixel. Our outputs are 8-bit anyway. pipeline.py chooses
where it applies (RGB pixels, an RGB matrix/shaper profile); everywhere else ImageMagick converts
as before.

Nothing here runs at import but the search for the library's file: it is loaded at the first
transform, in a worker (the gunicorn master never imports imaging/).
"""
from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import os
import threading
import weakref
from collections import OrderedDict

# Where liblcms2 is looked for, as magick/ looks for MagickWand: ctypes.util.find_library runs
# ldconfig (and gcc) in a subprocess.
LIBRARY_FILES = ("/usr/lib/*-linux-gnu/liblcms2.so.2", "/usr/lib64/liblcms2.so.2", "/usr/lib/liblcms2.so.2",
                 "/usr/local/lib/liblcms2.so.2", "/opt/homebrew/lib/liblcms2.2.dylib",
                 "/usr/local/lib/liblcms2.2.dylib")

# lcms2.h: TYPE_RGB_8 = COLORSPACE_SH(PT_RGB) | CHANNELS_SH(3) | BYTES_SH(1).
TYPE_RGB_8 = (4 << 16) | (3 << 3) | 1
# The flags ImageMagick 6 and 7 give for `-profile` (profile.c): a finer grid where LittleCMS
# precalculates one (not on the matrix/shaper path), and no black point compensation (ImageMagick
# adds it only for -black-point-compensation, which nothing here sets).
FLAGS = 0x0400   # cmsFLAGS_HIGHRESPRECALC
# ImageMagick's rendering intents (Wand's names) as LittleCMS numbers them; ImageMagick takes an
# undefined one as perceptual, as here. (A matrix/shaper profile maps all but absolute alike.)
INTENTS = {"perceptual": 0, "relative": 1, "saturation": 2, "absolute": 3}

# Transforms kept per worker, the least recently used let go first: 8 distinct profiles cover a
# site's cameras and phones. Each holds LittleCMS's 8-bit tables: 8 of them added 1.2 MB to a
# worker's memory.
CACHED_TRANSFORMS = 8


class Transform:
    """A LittleCMS transform of 8-bit RGB pixels, made once and shared: cmsDoTransform keeps no
    state in it (its one-pixel cache is copied per call), so threads may use it at once. It is
    deleted once neither the cache nor a caller holds it."""

    def __init__(self, handle: int):
        self.handle = handle
        weakref.finalize(self, _library().cmsDeleteTransform, handle)

    def __call__(self, pixels, count: int) -> None:
        """Convert `count` pixels of 8-bit R, G, B in the writable buffer `pixels`, in place."""
        _library().cmsDoTransform(self.handle, pixels, pixels, count)


_lock = threading.Lock()
_cache: OrderedDict[tuple, Transform | None] = OrderedDict()
# Transforms made in this process (tests read it: a profile seen before makes none).
made = 0


def transform(profile: bytes, target: bytes, intent: str = "perceptual") -> Transform | None:
    """The transform from the ICC profile `profile` to `target` (8-bit RGB both ways), from the cache
    or made now; None where LittleCMS is not installed or refuses the profiles (the answer is kept
    too). The caller has checked that both are RGB matrix/shaper profiles (icc.is_matrix_shaper):
    for those, making one costs LittleCMS a reading of the profile's curves, and no grid of the whole
    colour space (49^3 points through the profile's tables, for a LUT profile, whatever its size)."""
    if _library() is None:
        return None
    key = (hashlib.blake2b(profile, digest_size=16).digest(),
           hashlib.blake2b(target, digest_size=16).digest(), INTENTS.get(intent, 0))
    with _lock:   # held while a transform is made: `images server` may run threads in a worker
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        made_now = _make(profile, target, key[2])
        _cache[key] = made_now
        if len(_cache) > CACHED_TRANSFORMS:
            _cache.popitem(last=False)
        return made_now


def _make(profile: bytes, target: bytes, intent: int) -> Transform | None:
    global made
    library = _library()
    source = library.cmsOpenProfileFromMem(profile, len(profile))
    destination = library.cmsOpenProfileFromMem(target, len(target))
    try:
        if not source or not destination:
            return None
        handle = library.cmsCreateTransform(source, TYPE_RGB_8, destination, TYPE_RGB_8, intent, FLAGS)
    finally:
        for opened in (source, destination):
            if opened:
                library.cmsCloseProfile(opened)
    if not handle:
        return None
    made += 1
    return Transform(handle)


def available() -> bool:
    """Whether liblcms2 is installed here (loaded at the first question)."""
    return _library() is not None


def clear() -> None:
    """Let every kept transform go (tests)."""
    with _lock:
        _cache.clear()


def _found() -> str | None:
    for pattern in LIBRARY_FILES:
        for path in sorted(glob.glob(pattern)):
            if os.path.exists(path):
                return path
    return None


@functools.cache
def _library():
    """liblcms2, typed for the calls made here, or None where it is not installed."""
    path = _found()
    if path is None:
        return None
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    pointer, uint = ctypes.c_void_p, ctypes.c_uint32
    for name, arguments, result in (
            ("cmsOpenProfileFromMem", [ctypes.c_char_p, uint], pointer),
            ("cmsCloseProfile", [pointer], ctypes.c_int),
            ("cmsCreateTransform", [pointer, uint, pointer, uint, uint, uint], pointer),
            ("cmsDeleteTransform", [pointer], None),
            ("cmsDoTransform", [pointer, pointer, pointer, uint], None)):
        function = getattr(library, name)
        function.argtypes, function.restype = arguments, result
    return library
