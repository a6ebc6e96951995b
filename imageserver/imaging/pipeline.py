"""The image pipeline, on Wand (ImageMagick) in process: an output made from an original's bytes
(checked and priced first: originals.py, plan.py), decoded, oriented, cropped and resized, converted
to sRGB, encoded. It knows nothing of HTTP or files.

ImageMagick decodes a great many formats, some of them dangerous (MVG, SVG, MSL, PS, URL, ...). It is
only ever given bytes whose first bytes we recognised, with that coder named explicitly ("jpeg:"), so
its own format guessing never runs on client data. Behind that, `init_worker` loads our policy.xml
(magick/), which refuses every other coder inside ImageMagick itself. Sizes are checked on the header
(a ping) before any pixel is decoded.
"""
from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Callable

from imageserver.core.names import OutputSpec
from imageserver.imaging import cost, icc, lcms, magick
from imageserver.imaging.decoded import DECODED
from imageserver.imaging.decoding import decoding, open_image
from imageserver.imaging.formats import (
    ASSUMED_FORMATS,
    AVIF_SPEED,
    WRITERS,
    Formats,
    avif_quality,
    check_available,
    check_writable,
    find_formats,
    keeps_alpha,
    png_compression_level,
)
from imageserver.imaging.magick import Color, Image
from imageserver.imaging.originals import read_header
from imageserver.imaging.plan import (
    Plan,
    animated,
    check_budget,
    check_full_size,
    decoded_pixels,
    jpeg_size_hint,
    plan,
    price,
)
from imageserver.imaging.source import Limits, SourceInfo

SRGB_PROFILE_PATHS = ("/usr/share/color/icc/sRGB.icc", "/usr/share/color/icc/colord/sRGB.icc",
                      "/opt/homebrew/share/color/icc/sRGB.icc", "/usr/local/share/color/icc/sRGB.icc")
WHITE = "white"

# Lanczos's reach, in source pixels each side (scaled by the shrink): its own is 3 lobes. At 2.5
# the last half lobe (under 1% of the filter's weight) is left out: 8-10% less CPU on an 800x600
# source's renders, SSIM the same to 0.0002 (bench/README.md, python -m bench.levers).
LANCZOS_SUPPORT: float | None = 2.5

# Box-average first a source this many times larger than the output, to this many times (see
# _preshrink).
PRESHRINK_FROM = 3
PRESHRINK_TO = 2

# A still GIF's 256 colours are chosen here, undithered, as Pillow (thumbor) chooses them. Left to
# itself, ImageMagick 6's GIF writer dithers (Riemersma), and its ditherer first fills a 128 MB colour
# cache: 70-85 ms of a 300x225 GIF's 120 ms (bench/README.md).
GIF_DITHER = False


def init_worker(limits: Limits = Limits(), on_leak: Callable[[], None] | None = None) -> Formats:
    """Put ImageMagick's policy and limits in force in this process, and say which coders it reads
    and writes here. Once per worker, after the fork (see magick.init_worker)."""
    magick.init_worker(limits, on_leak=on_leak)
    return find_formats()


def render(data: bytes, spec: OutputSpec, quality: int, limits: Limits = Limits(),
           formats: Formats = ASSUMED_FORMATS, reuse: str = "") -> bytes:
    """Make the output `spec` from the original `data`, and return its encoded bytes: priced from
    the header first, and refused (413) when over the budget, before any pixel is decoded.

    `reuse`: the original's name (namespace/hash), when a decode of it kept in this worker may serve
    (decoded.py), and this render's decode may be kept for the next outputs of it."""
    check_available()
    check_writable(spec, formats)
    source = read_header(data, limits, formats)
    check_full_size(spec, source.width, source.height, limits)
    work = price(spec, source, quality)
    check_budget(work, limits, spec.name, source)
    animated_gif = animated(spec, source)
    layout = plan(spec, source.width, source.height)
    hint = jpeg_size_hint(source.coder, layout, source.width, source.height, source.transposed)
    identity = (f"{reuse}:{len(data)}:{zlib.crc32(data)}"
                if reuse and limits.decoded_cache_pixels and not animated_gif else "")
    kept = None
    priced_pixels = decoded_pixels(layout, source)
    try:
        image, decoded = (DECODED.clone(identity, _cheaper_decode(spec, source, quality, hint, work))
                          if identity else (None, None))
        if decoded:
            work = price(spec, source, quality, decoded)
        with decoding("render", work):
            if image is None:
                image = open_image(data, source.coder, first_frame_only=not animated_gif, size_hint=hint)
            with image:
                profile = _profile_to_apply(image)    # read once: the render keeps it as it is
                if _priced_by_size_from_here(image, priced_pixels, animated_gif, profile):
                    magick.unwatch(image)
                if not decoded:
                    image.auto_orient()
                    if identity and image.width * image.height <= limits.decoded_cache_pixels:
                        kept = image.clone()
                blob = _finish(image, spec, quality, layout, source, animated_gif, profile)
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

    def choose(sizes: list) -> tuple | None:
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


def _finish(image: Image, spec: OutputSpec, quality: int, layout: Plan, source: SourceInfo,
            animated_gif: bool, profile: bytes | None) -> bytes:
    """Crop and resize the decoded, upright `image`, convert it to 8-bit sRGB (through `profile`, its
    _profile_to_apply) and encode it."""
    _crop_and_resize(image, layout, source.width, animated_gif,
                     preshrink=source.coder != "jpeg" and not animated_gif)
    _to_srgb(image, profile)
    if not keeps_alpha(spec.ext) and image.alpha_channel:
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


# A decoded picture may have this many more pixels than priced (a DCT scale rounds its size up)
# and still be taken as the one priced.
DECODED_SLACK = 1.1


def _priced_by_size_from_here(image: Image, priced_pixels: int, animated: bool,
                              profile: bytes | None) -> bool:
    """Whether the work left on a decoded `image` is driven by sizes alone, all priced (cost.py):
    then the backstop (magick.Stopwatch) has nothing left to catch, and is taken off (its callback
    on every row was 8-10% of a small render). The backstop is there for what a file's content
    drives and the header cannot tell: the decode itself, the frames of an animation, a colour
    transform (LittleCMS, through a profile of the file's; the model has no price for it). What
    follows a decode of the priced size is orient, crop and resize (linear in the pixels decoded
    and written) and an encoder (linear in the pixels written, at a bounded effort: zlib at level 6
    at most, WebP's and AVIF's fixed methods, GIF's one quantization)."""
    return (not animated and image.width * image.height <= DECODED_SLACK * priced_pixels
            and (not _needs_colour_transform(image, profile) or _lcms_converts(image, profile)))


def _crop_and_resize(image: Image, layout: Plan, shown_w: int, animated: bool,
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


def _preshrink(image: Image, layout: Plan, shown_w: int) -> None:
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
    width = max(1, round(image.width * scale * PRESHRINK_TO))
    height = max(1, round(image.height * scale * PRESHRINK_TO))
    magick.box_shrink(image, width, height)


def _to_srgb(image: Image, profile: bytes | None) -> None:
    """8-bit sRGB out: through `profile`, the embedded ICC profile where it can be applied
    (_profile_to_apply), else by formula. A profile that does not fit the pixels, or that cannot be
    read, is ignored, as browsers ignore it; one that is sRGB itself (what most cameras and editors
    write) is left alone: the transform would change nothing but cost more than the rest of a small
    render (bench/README.md)."""
    if not _needs_colour_transform(image, profile):
        return
    srgb = _srgb_profile()
    if profile is not None and srgb and (_converted_by_lcms(image, profile, srgb)
                                         or magick.convert_profile(image, srgb)):
        return
    if image.colorspace not in ("srgb", "gray"):
        image.transform_colorspace("srgb")


def _converted_by_lcms(image: Image, profile: bytes, srgb: bytes) -> bool:
    """Convert RGB pixels through an RGB matrix/shaper profile (Adobe RGB, Display P3, ProPhoto: the
    wide-gamut pictures of cameras and phones) with LittleCMS's 8-bit transform, kept for the next
    pictures of the profile (lcms.py): half the CPU of an 800x600 Adobe RGB source's outputs (16 ms
    against 32, bench/README.md), where ImageMagick makes a new transform each time and runs it in
    double precision. False, nothing done, for anything else (a LUT profile, CMYK or grey pixels, an
    animation, no liblcms2 found), which ImageMagick converts as before.

    It runs outside ImageMagick's progress monitor (the Stopwatch backstop), and needs none: the
    transform is made from the profile's curves and matrix alone (bounded by the profile's bytes,
    once per profile in a worker), then costs about 8 ns per output pixel, linear in the output's
    pixels, which the cost model prices (70 ns each at least, for resizing and encoding a JPEG)."""
    if not _lcms_converts(image, profile):
        return False
    transform = lcms.transform(profile, srgb, image.rendering_intent)
    if transform is None:
        return False
    magick.map_rgb(image, transform)
    magick.mark_srgb(image)
    return True


def _lcms_converts(image: Image, profile: bytes | None) -> bool:
    """Whether _converted_by_lcms takes the image's colours through `profile` (_profile_to_apply)."""
    if image.colorspace not in ("srgb", "rgb") or magick.frame_count(image) != 1:
        return False
    srgb = _srgb_profile()
    return (profile is not None and srgb is not None and icc.is_matrix_shaper(profile)
            and icc.is_matrix_shaper(srgb) and lcms.available())


def _profile_to_apply(image: Image) -> bytes | None:
    """The embedded ICC profile that the pixels are converted through, or None (see _to_srgb)."""
    # Wand's profiles mapping answers None for a missing key, so `in` would always be true.
    profile = image.profiles["icc"]
    if profile is not None and (not profile_fits(profile, image.colorspace) or icc.is_srgb(profile)):
        return None
    return profile


def _needs_colour_transform(image: Image, profile: bytes | None) -> bool:
    return image.colorspace not in ("srgb", "rgb", "gray") or profile is not None


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
def _srgb_profile() -> bytes | None:
    """The sRGB ICC profile (Debian's icc-profiles-free), or None where there is none."""
    for path in SRGB_PROFILE_PATHS:
        if os.path.exists(path):
            with open(path, "rb") as f:
                return f.read()
    return None
