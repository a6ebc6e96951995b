"""The image pipeline, on Wand (ImageMagick) in process: sniff, describe, decode, orient, crop and
resize, convert colour, encode. It knows nothing of HTTP, files or settings objects beyond numbers.

ImageMagick decodes a great many formats, some of them dangerous (MVG, SVG, MSL, PS, URL, ...). It is
only ever given bytes whose first bytes we recognised, with that coder named explicitly ("jpeg:"), so
its own format guessing never runs on client data.
"""
from __future__ import annotations

import ctypes
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

from .errors import NotConfigured, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from .names import OutputSpec

try:
    from wand.api import library
    from wand.color import Color
    from wand.exceptions import WandException, ResourceLimitError, WandWarning
    from wand.image import FILTER_TYPES, Image
    import wand.resource
    import wand.version
    LANCZOS = FILTER_TYPES.index("lanczos")
    WAND_IMPORT_ERROR = None
except ImportError as error:  # the app still starts, and /status_check says what is missing
    WAND_IMPORT_ERROR = str(error)

# Coders we read, by the content type we answer with.
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
                 "heic": "image/heic", "avif": "image/avif"}
# Coders we write, by output extension.
WRITERS = {"jpg": "jpeg", "png": "png", "gif": "gif", "webp": "webp"}
ALPHA_WRITERS = {"png", "webp", "gif"}
REQUIRED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
SRGB_PROFILE_PATHS = ("/usr/share/color/icc/sRGB.icc", "/usr/share/color/icc/colord/sRGB.icc",
                      "/opt/homebrew/share/color/icc/sRGB.icc", "/usr/local/share/color/icc/sRGB.icc")
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
# EXIF orientations 5..8 store the picture turned by 90 degrees.
TRANSPOSED_ORIENTATIONS = {"left_top", "right_top", "right_bottom", "left_bottom"}
WHITE = "white"
# Decode JPEGs at no less than this many times the output size (see _jpeg_size_hint).
SHRINK_ON_LOAD_MARGIN = 1.5
# (denominator ImageMagick passes to libjpeg, the scale libjpeg-turbo then decodes at), smallest first.
JPEG_SCALES = ((8, 1 / 8), (4, 2 / 8), (3, 3 / 8), (2, 4 / 8))
# Box-average first a source this many times larger than the output (see _preshrink).
PRESHRINK_FROM = 3


@dataclass(frozen=True)
class SourceInfo:
    """What an original is, as displayed (after EXIF orientation)."""
    coder: str
    width: int
    height: int
    frames: int = 1

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.coder]


@dataclass(frozen=True)
class Limits:
    """Bounds on what is decoded, from the settings."""
    maximum_pixels: int = 50_000_000
    maximum_side: int = 30_000
    maximum_frames: int = 300


_readable: set = set()


def init_worker(memory_bytes: int = 512 * 2**20) -> None:
    """Set ImageMagick's limits in this process. Called once per gunicorn worker, after the fork.

    One thread per worker: the workers already fill the cores, and ImageMagick's OpenMP threads are
    not fork-safe (the master never loads ImageMagick at all).
    """
    os.environ.setdefault("MAGICK_THREAD_LIMIT", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if WAND_IMPORT_ERROR:
        return
    limits = wand.resource.limits
    limits["thread"] = 1
    limits["memory"] = memory_bytes
    limits["map"] = 2 * memory_bytes
    limits["disk"] = 4 * memory_bytes
    # No "time" limit: ImageMagick counts it from the start of the process, not per image, and ends
    # the whole worker (exit 1, fatal) once it is over. gunicorn's timeout bounds a request instead.
    _readable.clear()
    _readable.update(coder for coder in CONTENT_TYPES if wand.version.formats(coder.upper()))


def problems() -> list[str]:
    """What stops the pipeline from working here; empty when all is well."""
    if WAND_IMPORT_ERROR:
        return [f"ImageMagick (MagickWand) cannot be loaded: {WAND_IMPORT_ERROR}"]
    missing = [name for name in REQUIRED_FORMATS if not wand.version.formats(name)]
    return [f"ImageMagick lacks the {name} format" for name in missing]


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


def coder_for(data: bytes) -> str:
    """The coder for an upload, or UnsupportedMediaType."""
    if not data:
        raise UnsupportedMediaType("the image is empty")
    coder = sniff(data[:64])
    readable = _readable or set(CONTENT_TYPES)
    if coder is None or coder not in readable:
        raise UnsupportedMediaType("not an image of an accepted kind (JPEG, PNG, GIF, WebP"
                                   + (", HEIC, AVIF" if {"heic", "avif"} & readable else "") + ")")
    return coder


def _check_available() -> None:
    if WAND_IMPORT_ERROR:
        raise NotConfigured(f"ImageMagick is not available: {WAND_IMPORT_ERROR}")


@contextmanager
def _decoding(what: str):
    """Turn ImageMagick's errors, and its warnings of a cut-short file, into our errors."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except ResourceLimitError as error:
            raise PayloadTooLarge(f"{what}: the image is over the resource limits ({error})") from None
        except WandException as error:
            raise Unprocessable(f"{what}: the image cannot be decoded ({_short(error)})") from None
    for warning in caught:
        if issubclass(warning.category, WandWarning) and _is_truncation(str(warning.message)):
            raise Unprocessable(f"{what}: the image is cut short ({_short(warning.message)})")


def _is_truncation(message: str) -> bool:
    message = message.lower()
    return any(sign in message for sign in ("premature end", "truncat", "insufficient image data",
                                             "unexpected end", "corrupt image", "read error"))


def _short(error) -> str:
    return str(error).split(" @ ")[0].replace("`buffer' ", "").strip()


def _open(data: bytes, coder: str, first_frame_only: bool = False, size_hint: str = "",
          ping: bool = False) -> "Image":
    """Decode `data` with the named coder only: the "jpeg:" prefix stops ImageMagick's own guess."""
    image = Image()
    try:
        if size_hint:
            image.options["jpeg:size"] = size_hint
        filename = f"{coder}:buffer" + ("[0]" if first_frame_only else "")
        library.MagickSetFilename(image.wand, filename.encode())
        if ping:
            library.MagickPingImageBlob(image.wand, data, len(data)) or image.raise_exception()
        else:
            image.read(blob=data)
    except BaseException:
        image.close()
        raise
    return image


def describe(data: bytes, limits: Limits = Limits()) -> SourceInfo:
    """Check that `data` is a whole image we accept, within the limits, and say what it is."""
    _check_available()
    coder = coder_for(data)
    with _decoding("upload"):
        with _open(data, coder, ping=True) as header:
            width, height = header.width, header.height
            frames = len(header.sequence)
            transposed = header.orientation in TRANSPOSED_ORIENTATIONS
        _check_limits(width, height, frames, limits)
        # A full decode (shrunk on load for JPEG) finds files that are cut short or corrupt.
        hint = "64x64" if coder == "jpeg" else ""
        with _open(data, coder, size_hint=hint) as image:
            if image.width == 0 or image.height == 0:
                raise Unprocessable("upload: the image has no pixels")
    if transposed:
        width, height = height, width
    return SourceInfo(coder, width, height, frames)


def _check_limits(width: int, height: int, frames: int, limits: Limits) -> None:
    if width <= 0 or height <= 0:
        raise Unprocessable("the image has a zero width or height")
    if width > limits.maximum_side or height > limits.maximum_side:
        raise PayloadTooLarge(f"the image is {width}x{height}; the largest side accepted is "
                              f"{limits.maximum_side}")
    if width * height > limits.maximum_pixels:
        raise PayloadTooLarge(f"the image is {width}x{height}, over the limit of "
                              f"{limits.maximum_pixels} pixels")
    if frames > limits.maximum_frames:
        raise PayloadTooLarge(f"the image has {frames} frames, over the limit of {limits.maximum_frames}")
    if width * height * frames > limits.maximum_pixels * 4:
        raise PayloadTooLarge(f"the animation has {frames} frames of {width}x{height}: too many pixels")


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


def render(data: bytes, spec: OutputSpec, quality: int, limits: Limits = Limits()) -> bytes:
    """Make the output `spec` from the original `data`, and return its encoded bytes."""
    _check_available()
    coder = coder_for(data)
    animated_gif = coder == "gif" and spec.ext == "gif"
    with _decoding("render"):
        with _open(data, coder, ping=True) as header:
            stored_w, stored_h = header.width, header.height
            transposed = header.orientation in TRANSPOSED_ORIENTATIONS
            frames = len(header.sequence) if animated_gif else 1
        _check_limits(stored_w, stored_h, frames, limits)
        shown_w, shown_h = (stored_h, stored_w) if transposed else (stored_w, stored_h)
        layout = plan(spec, shown_w, shown_h)
        hint = _jpeg_size_hint(coder, layout, shown_w, shown_h, transposed)
        with _open(data, coder, first_frame_only=not animated_gif, size_hint=hint) as image:
            image.auto_orient()
            _crop_and_resize(image, layout, shown_w, animated_gif)
            _to_srgb(image)
            if spec.ext not in ALPHA_WRITERS and image.alpha_channel:
                image.background_color = Color(WHITE)
                image.alpha_channel = "remove"
            image.strip()
            image.depth = 8
            image.compression_quality = quality
            if animated_gif:
                image.optimize_layers()
            return image.make_blob(WRITERS[spec.ext])


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


def _crop_and_resize(image: "Image", layout: Plan, shown_w: int, animated: bool) -> None:
    """Crop (in the decoded image's pixels, which shrink-on-load may have made smaller), then resize."""
    if not animated:
        _preshrink(image, layout, shown_w)
    factor = image.width / shown_w
    left, top, width, height = (value * factor for value in layout.crop)
    box_w = max(1, min(image.width, round(width)))
    box_h = max(1, min(image.height, round(height)))
    box_l = min(max(0, round(left)), image.width - box_w)
    box_t = min(max(0, round(top)), image.height - box_h)
    if (box_l, box_t, box_w, box_h) != (0, 0, image.width, image.height):
        if animated:  # Wand's crop coalesces and crops every frame
            image.crop(box_l, box_t, width=box_w, height=box_h)
        else:  # straight to MagickWand: Wand asks ImageMagick for the MIME type on every call (~1 ms)
            library.MagickCropImage(image.wand, box_w, box_h, box_l, box_t) or image.raise_exception()
    if (image.width, image.height) != (layout.width, layout.height):
        if animated:
            image.resize(layout.width, layout.height, filter="lanczos")
        else:
            library.MagickResizeImage(image.wand, layout.width, layout.height, LANCZOS,
                                      ctypes.c_double(1.0)) or image.raise_exception()
    image.page = (layout.width, layout.height, 0, 0)


def _preshrink(image: "Image", layout: Plan, shown_w: int) -> None:
    """Box-average a picture still over PRESHRINK_FROM times the output's scale (no JPEG
    shrink-on-load: PNG, WebP, GIF) to twice that scale, before the crop: a fraction of the cost of
    a Lanczos pass over all its pixels, it leaves Lanczos two pixels per output pixel, and the crop
    then copies a small picture (a 50 MP PNG cropped first would need a second 270 MB copy)."""
    scale = layout.scale * shown_w / image.width  # output pixels per decoded pixel
    if scale * PRESHRINK_FROM > 1:
        return
    width = max(1, round(image.width * scale * 2))
    height = max(1, round(image.height * scale * 2))
    library.MagickScaleImage(image.wand, width, height) or image.raise_exception()


def _to_srgb(image: "Image") -> None:
    """8-bit sRGB out: through the embedded ICC profile where there is one, else by formula."""
    if image.colorspace in ("srgb", "rgb", "gray") and "icc" not in image.profiles:
        return
    srgb = _srgb_profile()
    if "icc" in image.profiles and srgb:
        image.profiles["icc"] = srgb
    elif image.colorspace not in ("srgb", "gray"):
        image.transform_colorspace("srgb")


_SRGB: list = []


def _srgb_profile() -> Optional[bytes]:
    if not _SRGB:
        found = next((path for path in SRGB_PROFILE_PATHS if os.path.exists(path)), None)
        _SRGB.append(open(found, "rb").read() if found else None)
    return _SRGB[0]


def format_support() -> dict:
    """Which of our formats ImageMagick reads here (for doctor and status)."""
    _check_available()
    return {coder: bool(wand.version.formats(coder.upper())) for coder in CONTENT_TYPES}

