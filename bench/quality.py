"""The quality column: SSIM (on grey values) of an output against a Lanczos downscale of the same
crop, made from the full-resolution source with no shortcut (no shrink-on-load, one resize). Colour
managed: a source or output with an embedded ICC profile is seen as a colour-managed viewer (a
browser) sees it, converted to sRGB through LittleCMS; the colour column (mean CIE76 delta E of
8x8-pixel block means against the reference) says how far its colours are, and for an output that
carries a profile, how far they are too where a viewer ignores it."""
from __future__ import annotations

import numpy as np
from wand.color import Color
from wand.image import Image

from imageserver.core.names import OutputSpec
from imageserver.imaging import formats, magick, plan

SRGB_PROFILE = "/usr/share/color/icc/sRGB.icc"
BLOCK = 8

# Wang, Bovik, Sheikh & Simoncelli (2004): an 11-tap Gaussian window of sigma 1.5, K1 0.01, K2 0.03.
_TAPS = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
_TAPS /= _TAPS.sum()
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def grey(image: Image) -> np.ndarray:
    """The image as 8-bit grey values (flattened on white first when it has alpha)."""
    data, height, width = _eight_bit(image, "gray")
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width).astype(np.float64)


def _eight_bit(image: Image, layout: str) -> tuple:
    """(raw 8-bit pixels in `layout` ("gray", "rgb"), height, width), flattened on white first."""
    with image.clone() as copy:
        if copy.alpha_channel:
            copy.background_color = Color("white")
            copy.alpha_channel = "remove"
        copy.depth = 8
        return copy.make_blob(layout), copy.height, copy.width


def _blur(values: np.ndarray) -> np.ndarray:
    """The Gaussian window, applied separably; the result is the 'valid' part only."""
    rows = sum(tap * values[:, i:values.shape[1] - 10 + i] for i, tap in enumerate(_TAPS))
    return sum(tap * rows[i:rows.shape[0] - 10 + i, :] for i, tap in enumerate(_TAPS))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two grey images of the same size (at least 11x11)."""
    mu_a, mu_b = _blur(a), _blur(b)
    var_a = _blur(a * a) - mu_a ** 2
    var_b = _blur(b * b) - mu_b ** 2
    cov = _blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a ** 2 + mu_b ** 2 + _C1) * (var_a + var_b + _C2))
    return float(index.mean())


def reference(source: bytes, spec: OutputSpec) -> Image:
    """What the output should look like: the exact crop of the full-resolution source, one Lanczos
    resize (the caller closes the image)."""
    image = Image(blob=source)
    as_shown(image)
    image.auto_orient()
    layout = plan.plan(spec, image.width, image.height)
    left, top, width, height = (round(value) for value in layout.crop)
    if (width, height) != (image.width, image.height):
        image.crop(left, top, width=width, height=height)
    image.resize(layout.width, layout.height, filter="lanczos")
    return image


def as_shown(image: Image) -> bool:
    """Convert an image with an embedded ICC profile to sRGB, as a colour-managed viewer shows it
    (always through LittleCMS, even from an sRGB profile); True when it had one."""
    if image.profiles["icc"] is None:
        return False
    with open(SRGB_PROFILE, "rb") as f:
        magick.convert_profile(image, f.read())
    image.strip()
    return True


def score(source: bytes, spec: OutputSpec, output: bytes, quality: int = 75) -> tuple:
    """(SSIM of the output, SSIM of the reference itself once encoded in the output's format and
    quality, colour differences): the second is the most any pipeline can score, the encoder's share
    of the loss; the third {"managed": delta E as a colour-managed viewer shows the output, and
    "unmanaged": as a viewer that ignores its profile does, when it carries one}."""
    with reference(source, spec) as image:
        expected, expected_rgb = grey(image), rgb(image)
        image.strip()
        image.compression_quality = quality
        with Image(blob=image.make_blob(formats.WRITERS[spec.ext])) as encoded:
            ceiling = aligned_ssim(grey(encoded), expected)
    colour = {}
    with Image(blob=output) as image:
        with image.clone() as unmanaged:
            if as_shown(image):
                colour["unmanaged"] = delta_e(rgb(unmanaged), expected_rgb)
        got = grey(image)
        colour["managed"] = delta_e(rgb(image), expected_rgb)
    return aligned_ssim(got, expected), ceiling, colour


def rgb(image: Image) -> np.ndarray:
    """The image as 8-bit sRGB values, height x width x 3 (flattened on white)."""
    data, height, width = _eight_bit(image, "rgb")
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3).astype(np.float64)


def delta_e(got: np.ndarray, expected: np.ndarray) -> float:
    """Mean CIE76 colour difference of BLOCK x BLOCK block means (the colours, not the detail that
    SSIM scores); the images cut to their common part."""
    height, width = (min(a, b) // BLOCK * BLOCK for a, b in zip(got.shape[:2], expected.shape[:2]))
    if not height or not width:
        return float("nan")
    means = [values[:height, :width].reshape(height // BLOCK, BLOCK, width // BLOCK, BLOCK, 3)
             .mean(axis=(1, 3)) for values in (got, expected)]
    return float(np.sqrt(((lab(means[0]) - lab(means[1])) ** 2).sum(axis=-1)).mean())


def lab(values: np.ndarray) -> np.ndarray:
    """8-bit sRGB to CIE L*a*b* (D65)."""
    c = values / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                             [0.0193, 0.1192, 0.9505]]).T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def aligned_ssim(got: np.ndarray, expected: np.ndarray) -> float:
    """SSIM of an output against its reference, aligned within one pixel: a centred crop of 263.5
    pixels starts at pixel 268 or 269, and such a shift (which nobody sees) costs more SSIM on fine
    detail than any resize filter. A height one pixel off (convert rounds 151.5 down, we round it
    to even) is compared on the common part; 0 when the output is not of the expected size."""
    if any(abs(a - b) > 1 for a, b in zip(got.shape, expected.shape)):
        return 0.0
    height, width = min(got.shape[0], expected.shape[0]), min(got.shape[1], expected.shape[1])
    got, expected = got[:height, :width], expected[:height, :width]
    return max(ssim(_shifted(got, dx, dy), _shifted(expected, -dx, -dy))
               for dx in (-1, 0, 1) for dy in (-1, 0, 1))


def _shifted(values: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The part of `values` that overlaps the other image once one is moved by (dx, dy)."""
    height, width = values.shape
    return values[max(0, dy):height + min(0, dy), max(0, dx):width + min(0, dx)]
