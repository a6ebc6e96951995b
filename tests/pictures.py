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
    with Image(width=width, height=height, background=Color("gray")) as image:
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
