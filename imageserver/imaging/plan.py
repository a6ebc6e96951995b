"""Planning an output (the crop and the size it is made at, the scale a JPEG is decoded at) and
pricing it (cost.py) from the header's facts alone, before any pixel is decoded: over the budget, a
413 that names the bound."""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

from imageserver.core.errors import (
    PayloadTooLarge,
)
from imageserver.core.names import OutputSpec
from imageserver.imaging import cost
from imageserver.imaging.formats import ASSUMED_FORMATS, Formats, check_writable
from imageserver.imaging.source import Limits, SourceInfo

# How many pixels a JPEG is decoded at per output pixel, at least (see jpeg_size_hint): for a crop,
# and for the whole picture (as Pillow's draft decodes it for thumbor: no fewer than the output's).
CROP_MARGIN = 1.5
WHOLE_MARGIN = 1.0

# (denominator ImageMagick passes to libjpeg, the scale libjpeg-turbo then decodes at, the margin it
# needs over the ones above), smallest first. 1/8 is each 8x8 block's mean (a box filter), harmless
# only with a far bigger margin; 3/8's 3-point IDCT is never used (its outputs were blurrier and
# aliased more than from 4/8, for 2 to 8 times the size of 2/8: bench/README.md).
JPEG_SCALES = ((8, 1 / 8, 4.0), (4, 2 / 8, 1.0), (2, 4 / 8, 1.0))


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
    assert spec.width is not None, spec      # every kind but "full" names a width
    if spec.kind == "width":
        scale = spec.width / source_width
        return Plan(spec.width, max(1, round(source_height * scale)), whole, scale)
    assert spec.height is not None, spec     # and the crops a height
    scale = max(spec.width / source_width, spec.height / source_height)
    crop_w, crop_h = spec.width / scale, spec.height / scale
    left, top = (source_width - crop_w) / 2, (source_height - crop_h) / 2
    return Plan(spec.width, spec.height, (left, top, crop_w, crop_h), scale)


def check_full_size(spec: OutputSpec, width: int, height: int, limits: Limits) -> None:
    if spec.kind == "full" and width * height > limits.maximum_full_size_pixels:
        raise PayloadTooLarge(f"{spec.name} of a {width}x{height} image is over the limit of "
                              f"{limits.maximum_full_size_pixels} pixels for full_size; ask for a size")


def price(spec: OutputSpec, source: SourceInfo, quality: int,
          decoded_already: tuple | None = None) -> cost.Work:
    """What making `spec` of `source` will cost (cost.py), from the header's facts alone; from a
    decode of it kept in memory, of size `decoded_already` (width, height), no decode at all."""
    layout = plan(spec, source.width, source.height)
    if decoded_already:
        return cost.render(source, decoded_already[0] * decoded_already[1], layout.width, layout.height,
                           spec.ext, quality, animated(spec, source), spec.name, decoded_already=True)
    return cost.render(source, decoded_pixels(layout, source), layout.width, layout.height, spec.ext,
                       quality, animated(spec, source), spec.name)


def decoded_pixels(layout: Plan, source: SourceInfo) -> int:
    """The pixels of a frame decoded for `layout`: a JPEG's at the scale it is shrunk to on load."""
    decoded = source.width * source.height
    if source.coder == "jpeg":
        hint = jpeg_size_hint("jpeg", layout, source.width, source.height, False)
        if hint:
            decoded = int(decoded * (int(hint.split("x")[0]) / source.width) ** 2)
    return decoded


def upload_check(source: SourceInfo) -> cost.Work:
    """What `describe`'s full decode costs: every frame, a JPEG at 1/8 scale."""
    decoded = source.width * source.height
    if source.coder == "jpeg":
        decoded //= 64
    return cost.check(source, decoded)


def animated(spec: OutputSpec, source: SourceInfo) -> bool:
    return source.coder == "gif" and spec.ext == "gif" and source.frames > 1


def check_work(specs: Iterable[OutputSpec], source: SourceInfo, limits: Limits = Limits(),
               default_quality: int = 75, upload: bool = False, formats: Formats = ASSUMED_FORMATS) -> None:
    """Refuse, before any of it is done, a request whose work is priced over the budget: an
    upload's own check (`upload`), then each output it makes."""
    specs = list(specs)
    parts = [upload_check(source)] if upload else []
    for spec in specs:
        check_writable(spec, formats)
        check_full_size(spec, source.width, source.height, limits)
        parts.append(price(spec, source, spec.quality or default_quality))
    if parts:
        total = functools.reduce(lambda a, b: a + b, parts)
        what = (f"this upload and its {len(specs)} outputs" if upload and specs
                else "this upload" if upload else f"these {len(specs)} outputs")
        check_budget(total, limits, what, source, len(parts))


def check_budget(work: cost.Work, limits: Limits, what: str, source: SourceInfo,
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


def jpeg_size_hint(coder: str, layout: Plan, shown_w: int, shown_h: int, transposed: bool) -> str:
    """Ask libjpeg to decode at the smallest DCT scale (JPEG_SCALES) that leaves enough source pixels
    per output pixel: DCT scaling costs almost nothing and skips most of the pixel work. The margin
    leaves the final Lanczos resize pixels to filter. A whole picture is decoded as thumbor's Pillow
    decodes it (at no less than the output's size: SSIM as high as from a 1.5x margin on a 12 MP
    photograph, 0.0005 under Pillow's on an 800x600 picture sharp to the pixel, where 1.5 scored 0.011
    more for 70% more CPU); a crop keeps 1.5, since a crop of fine detail decoded at 1x strays
    further from a resize of the full picture (bench/README.md), and takes a scale only where its
    edges fall on the decoded pixels (_crop_lands)."""
    if coder != "jpeg":
        return ""
    whole = _whole(layout, shown_w, shown_h)
    for denominator, scale, margin in JPEG_SCALES:
        needed = layout.scale * margin * (WHOLE_MARGIN if whole else CROP_MARGIN)
        if (scale >= needed and min(shown_w, shown_h) >= 8 * denominator
                and (whole or _crop_lands(layout, shown_w, shown_h, scale))):
            # ImageMagick asks libjpeg for 1/int(size / hint): name that denominator exactly.
            want_w, want_h = shown_w // denominator, shown_h // denominator
            if transposed:
                want_w, want_h = want_h, want_w
            return f"{want_w}x{want_h}"
    return ""


# How far (in output pixels) a crop's edge may move when the crop is rounded to whole decoded pixels.
MAX_CROP_SHIFT = 0.1


def _crop_lands(layout: Plan, shown_w: int, shown_h: int, scale: float) -> bool:
    """Whether a crop's edges, in a picture decoded at `scale` (libjpeg rounds its size up), fall
    within MAX_CROP_SHIFT output pixels of whole decoded pixels. A decoded pixel is 8/M source pixels
    at M/8: rounded there, a crop of a 3000x3000 square out of 4000x3000 (left edge at 62.5 decoded
    pixels at 1/8) sat a third of an output pixel off, and a small square of fine detail scored SSIM
    0.929 against 0.936 from a decode at 2/8, where the edge is whole (bench/README.md)."""
    left, top, width, height = layout.crop
    factor_w = math.ceil(shown_w * scale) / shown_w    # decoded pixels per shown pixel
    factor_h = math.ceil(shown_h * scale) / shown_h
    edges = ((left * factor_w, factor_w), ((left + width) * factor_w, factor_w),
             (top * factor_h, factor_h), ((top + height) * factor_h, factor_h))
    return all(abs(edge - round(edge)) / factor * layout.scale <= MAX_CROP_SHIFT
               for edge, factor in edges)


def _whole(layout: Plan, shown_w: int, shown_h: int) -> bool:
    """Whether the layout keeps the whole picture (a width, or a crop of the picture's own shape, to
    a hundredth of a pixel: 680x510 of 4032x3024 crops 4031.9999999999995 pixels of its width)."""
    return all(abs(got - want) < 0.01 for got, want in zip(layout.crop, (0, 0, shown_w, shown_h)))
