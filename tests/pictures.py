"""Test images made on the fly with Wand: photographic-looking detail, alpha, EXIF orientation,
CMYK, animation. Tests decode what the server sends back with `decode`."""
from __future__ import annotations

import os
import struct
import subprocess
import tempfile

from wand.color import Color
from wand.image import Image


def photo(width: int, height: int, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """A picture with fine, random detail (a colour gradient under noise, softened a little): every
    call makes a new image. Made without ImageMagick's pseudo-image coders, which the server's
    policy refuses once a test has loaded it in this process."""
    # A grey background would make a grey image (ImageMagick keeps its type): the gradient and the
    # JPEG would have no colour.
    with Image(width=width, height=height, background=Color("rgb(128,128,130)")) as image:
        image.type = "truecolor"
        image.sparse_color("bilinear", {Color("orange"): (0, 0), Color("navy"): (width - 1, 0),
                                        Color("crimson"): (0, height - 1),
                                        Color("seagreen"): (width - 1, height - 1)})
        image.noise("gaussian", attenuate=1.0)
        image.blur(radius=0, sigma=0.7)
        image.format = fmt
        image.compression_quality = quality
        return image.make_blob(fmt)


def solid(width: int, height: int, colour: str, fmt: str = "png") -> bytes:
    with Image(width=width, height=height, background=Color(colour)) as image:
        image.format = fmt
        return image.make_blob(fmt)


def halves(width: int, height: int, left: str, right: str, fmt: str = "png") -> bytes:
    """Left half one colour, right half another: shows a crop or a flip."""
    with Image(width=width, height=height, background=Color(left)) as image:
        with Image(width=width // 2, height=height, background=Color(right)) as half:
            image.composite(half, left=width - width // 2, top=0)
        image.format = fmt
        return image.make_blob(fmt)


def transparent_png(width: int, height: int) -> bytes:
    """Fully transparent, with an opaque red square in the middle."""
    with Image(width=width, height=height, background=Color("transparent")) as image:
        with Image(width=width // 2, height=height // 2, background=Color("red")) as square:
            image.composite(square, left=width // 4, top=height // 4)
        image.format = "png"
        image.options["png:format"] = "png32"
        return image.make_blob("png")


def animated_gif(width: int, height: int, colours=("red", "lime", "blue"), loop: int = 0) -> bytes:
    with Image() as animation:
        for colour in colours:
            with Image(width=width, height=height, background=Color(colour)) as frame:
                frame.delay = 10
                animation.sequence.append(frame)
        animation.loop = loop
        animation.format = "gif"
        return animation.make_blob("gif")


ORIENTATIONS = {1: "top_left", 2: "top_right", 3: "bottom_right", 4: "bottom_left", 5: "left_top",
                6: "right_top", 7: "right_bottom", 8: "left_bottom"}


def exif_orientation(value: int) -> bytes:
    """A minimal EXIF block (big-endian TIFF) holding only the Orientation tag."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, value, 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)
    return b"Exif\x00\x00" + tiff


def oriented_jpeg(width: int, height: int, orientation: int, left="red", right="blue") -> bytes:
    """A JPEG stored `width` x `height` with an EXIF orientation tag, left/right halves coloured."""
    with Image(blob=halves(width, height, left, right, "png")) as image:
        image.format = "jpeg"
        image.profiles["exif"] = exif_orientation(orientation)
        # ImageMagick writes its own orientation into the EXIF block it saves.
        image.orientation = ORIENTATIONS[orientation]
        return image.make_blob("jpeg")


def grey_jpeg(width: int, height: int, level: int) -> bytes:
    """A one-channel (greyscale) JPEG, all of grey `level` (0..255)."""
    with Image(width=width, height=height, background=Color(f"rgb({level},{level},{level})")) as image:
        image.type = "grayscale"
        return image.make_blob("jpeg")


def icc_profile(colorants=((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)),
                curve: bytes = b"", extra_tags: tuple = ()) -> bytes:
    """A minimal RGB matrix/shaper ICC profile (v2, monitor class): its primaries as D50 XYZ (sRGB's
    by default) and one tone curve tag for all three channels (sRGB's parametric curve by default);
    `extra_tags`: more (signature, data) tags."""
    curve = curve or parametric_curve(3, 2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    def xyz(values):
        return b"XYZ \x00\x00\x00\x00" + b"".join(struct.pack(">i", round(v * 65536)) for v in values)
    tags = [(b"wtpt", xyz((0.9642, 1.0, 0.8249)))] + [
        (name, xyz(values)) for name, values in zip((b"rXYZ", b"gXYZ", b"bXYZ"), colorants)] + [
        (name, curve) for name in (b"rTRC", b"gTRC", b"bTRC")] + list(extra_tags)
    table_size = 4 + 12 * len(tags)
    offset, entries, body = 128 + table_size, b"", b""
    for name, data in tags:
        data += b"\x00" * (-len(data) % 4)
        entries += struct.pack(">4sII", name, offset + len(body), len(data))
        body += data
    size = 128 + table_size + len(body)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + b"\x00" * 12
              + b"acsp" + b"\x00" * 28 + struct.pack(">iii", 63190, 65536, 54061) + b"\x00" * 48)
    return header + struct.pack(">I", len(tags)) + entries + body


def parametric_curve(kind: int, *parameters: float) -> bytes:
    """An ICC 'para' tone curve tag."""
    return (b"para\x00\x00\x00\x00" + struct.pack(">HH", kind, 0)
            + b"".join(struct.pack(">i", round(p * 65536)) for p in parameters))


def gamma_curve(gamma: float) -> bytes:
    """An ICC 'curv' tag of one entry: a pure power curve (1.0: linear light)."""
    return b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256)) + b"\x00\x00"


def lut8_identity() -> bytes:
    """An ICC 'mft1' (lut8) tag of 3 channels to 3 that gives back what it is given: identity
    matrix, curves and a 2x2x2 table."""
    matrix = b"".join(struct.pack(">i", 65536 if row == column else 0)
                      for row in range(3) for column in range(3))
    curves = bytes(range(256)) * 3
    table = bytes(value for r in (0, 255) for g in (0, 255) for b in (0, 255) for value in (r, g, b))
    return b"mft1\x00\x00\x00\x00" + bytes([3, 3, 2, 0]) + matrix + curves + table + curves


def tagged_jpeg(width: int, height: int, colour: str, profile: bytes) -> bytes:
    """A JPEG of one colour, its numbers as written, with `profile` embedded (not converted to)."""
    with Image(width=width, height=height, background=Color(colour)) as image:
        image.profiles["icc"] = profile
        return image.make_blob("jpeg")


def cmyk_jpeg(width: int, height: int, colour: str = "red") -> bytes:
    with Image(width=width, height=height, background=Color(colour)) as image:
        image.transform_colorspace("cmyk")
        image.format = "jpeg"
        return image.make_blob("jpeg")



class Decoded:
    """What a test needs to know of an image it got back."""

    def __init__(self, data: bytes):
        with Image(blob=data) as image:
            self.format = image.format
            self.width, self.height = image.width, image.height
            self.frames = len(image.sequence)
            self.alpha = bool(image.alpha_channel)
            self.colorspace = image.colorspace
            self.depth = image.depth
            self.profiles = set(image.profiles.keys())
            self.loop = image.loop
            self._pixels = image.clone()

    def pixel(self, x: int, y: int) -> tuple:
        """(r, g, b, a) in 0..255 at (x, y) of the first frame."""
        colour = self._pixels[x, y]
        return (round(colour.red * 255), round(colour.green * 255), round(colour.blue * 255),
                round(colour.alpha * 255))


def decode(data: bytes) -> Decoded:
    return Decoded(data)


def decode_avif(data: bytes) -> Decoded:
    """An AVIF decoded by libheif's own tool, then read as PNG: ImageMagick 6's AVIF reader garbles
    colours and drops transparency, so it cannot judge what we wrote."""
    with tempfile.TemporaryDirectory() as folder:
        source, png = os.path.join(folder, "in.avif"), os.path.join(folder, "out.png")
        with open(source, "wb") as f:
            f.write(data)
        subprocess.run(["heif-convert", source, png], check=True, capture_output=True, timeout=60)
        with open(png, "rb") as f:
            return Decoded(f.read())


def near(actual: tuple, expected: tuple, tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


def ssim(first: bytes, second: bytes, block: int = 8) -> float:
    """The structural similarity of two encoded pictures of one size, on grey values, over
    non-overlapping `block`-pixel squares (1: the same picture; a JPEG at quality 75 of a photograph
    scores about 0.95 against its source)."""
    values = []
    for data in (first, second):
        with Image(blob=data) as image:
            image.transform_colorspace("gray")
            width, height = image.width, image.height
            values.append(image.export_pixels(channel_map="R", storage="char"))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for top in range(0, height - block + 1, block):
        for left in range(0, width - block + 1, block):
            rows = [(top + y) * width + left for y in range(block)]
            a = [v for row in rows for v in values[0][row:row + block]]
            b = [v for row in rows for v in values[1][row:row + block]]
            n = len(a)
            mean_a, mean_b = sum(a) / n, sum(b) / n
            var_a = sum((v - mean_a) ** 2 for v in a) / n
            var_b = sum((v - mean_b) ** 2 for v in b) / n
            cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b)) / n
            scores.append((2 * mean_a * mean_b + c1) * (2 * cov + c2)
                          / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2)))
    return sum(scores) / len(scores)
