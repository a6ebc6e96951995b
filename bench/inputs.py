"""The bench's source images, made once under bench/work/: photographic-looking detail (a plasma
fractal for colour and shape, Gaussian grain, a few sharp edges), never flat colour. The 800x600
picture is what a web picture is: a camera-sized one, downscaled."""
from __future__ import annotations

import os

from wand.color import Color
from wand.drawing import Drawing
from wand.image import Image

# (name, width, height, format, alpha): 800x600 and 12 MP sources, and the largest source allowed.
SOURCES = {
    "web-800x600.jpg": (800, 600, "jpeg", False),
    "photo-12mp.jpg": (4000, 3000, "jpeg", False),
    "photo-12mp-alpha.png": (4000, 3000, "png", True),
    "photo-50mp.jpg": (8660, 5773, "jpeg", False),
}
# The same pictures as users' cameras and editors send them: tagged with an ICC profile. (name: the
# untagged source it is made from, the profile, and whether its pixels are converted into that
# profile (a wide-gamut picture) or the profile only attached (an sRGB one: the same pixels).
# The sRGB profile is colord's (colord-data), not the one the server converts to (icc-profiles-free):
# ImageMagick skips the transform when both profiles are the same bytes, and a camera's are not.
ICC_FOLDER = "/usr/share/color/icc"
SRGB_PROFILE = f"{ICC_FOLDER}/sRGB.icc"
CAMERA_SRGB_PROFILE = f"{ICC_FOLDER}/colord/sRGB.icc"
TAGGED = {
    "web-800x600-srgb.jpg": ("web-800x600.jpg", CAMERA_SRGB_PROFILE, False),
    "photo-12mp-srgb.jpg": ("photo-12mp.jpg", CAMERA_SRGB_PROFILE, False),
    "web-800x600-adobergb.jpg": ("web-800x600.jpg", f"{ICC_FOLDER}/compatibleWithAdobeRGB1998.icc", True),
}
JPEG_QUALITY = 88
GRAIN = 30
SMOOTH = 4
# Pictures under this many pixels are made this many times larger, then downscaled (Lanczos): as a
# camera's picture becomes a web picture. Grain made at 800x600 directly is noise no downscaled photo
# has, and JPEG at quality 75 loses so much of it that no pipeline could reach the 0.94 SSIM floor
# (the reference itself, encoded, scored 0.939).
WEB_SIZE = 1_000_000
WEB_DOWNSCALE = 5


def in_one_process(name: str) -> bytes:
    """For a bench run in this process (bench.levers, bench.reuse): the bytes of source `name` (made
    in bench/work/ when missing), with ImageMagick held to one thread as in a worker (not the worker's
    policy, which refuses the raw coders that scoring reads pixels through). Call it before the first
    use of ImageMagick: the thread limit is read when it starts."""
    with open(make_all(os.path.join(os.path.dirname(os.path.abspath(__file__)), "work"))[name], "rb") as f:
        data = f.read()
    os.environ["MAGICK_THREAD_LIMIT"] = os.environ["OMP_NUM_THREADS"] = "1"
    import wand.resource
    wand.resource.limits["thread"] = 1
    return data


def make_all(folder: str) -> dict:
    """The path of each source, made when missing."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for name, (width, height, fmt, alpha) in SOURCES.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            data = photo(width, height, fmt, alpha)
            with open(path + ".tmp", "wb") as out:
                out.write(data)
            os.replace(path + ".tmp", path)
        paths[name] = path
    for name, (untagged, profile, convert) in TAGGED.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            with open(paths[untagged], "rb") as f, open(profile, "rb") as p:
                data = tagged(f.read(), p.read(), convert)
            with open(path + ".tmp", "wb") as out:
                out.write(data)
            os.replace(path + ".tmp", path)
        paths[name] = path
    return paths


def tagged(jpeg: bytes, profile: bytes, convert: bool) -> bytes:
    """The JPEG with `profile` embedded. With `convert`, its pixels are first converted from sRGB into
    the profile's colours and encoded again (ImageMagick embeds the profile), so that it looks the same
    to a colour-managed viewer; else only an APP2 ICC_PROFILE segment is added after the start marker,
    the rest of its bytes untouched."""
    if convert:
        from imageserver.imaging import magick
        with Image(blob=jpeg) as image, open(SRGB_PROFILE, "rb") as srgb:
            image.profiles["icc"] = srgb.read()
            magick.convert_profile(image, profile)
            image.compression_quality = JPEG_QUALITY
            return image.make_blob("jpeg")
    body = b"ICC_PROFILE\x00\x01\x01" + profile
    return jpeg[:2] + b"\xff\xe2" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def photo(width: int, height: int, fmt: str, alpha: bool) -> bytes:
    shot = WEB_DOWNSCALE if width * height < WEB_SIZE else 1
    with _camera_picture(width * shot, height * shot) as image:
        if shot > 1:
            image.resize(width, height, filter="lanczos")
        if alpha:
            _vignette_alpha(image)
        image.depth = 8
        image.compression_quality = JPEG_QUALITY
        return image.make_blob(fmt)


def _camera_picture(width: int, height: int) -> Image:
    """Broad shapes from a small fractal, enlarged (skies and walls), then fine grain and hard edges."""
    image = Image(width=width // SMOOTH, height=height // SMOOTH, pseudo="plasma:fractal")
    image.blur(0, 1.5)
    image.resize(width, height, filter="catrom")
    if width * height <= 20_000_000:  # grain needs a second copy: too much at 50 MP
        _grain(image)
    _edges(image)
    return image


def _grain(image: Image) -> None:
    """Sensor grain: a little of a noisy copy blended back in (ImageMagick 6 ignores attenuate)."""
    with image.clone() as noisy:
        noisy.noise("gaussian")
        image.composite(noisy, 0, 0, operator="blend", arguments=f"{GRAIN},{100 - GRAIN}")


def _edges(image: Image) -> None:
    """Hard edges and thin lines, as buildings and branches give a photograph."""
    w, h = image.width, image.height
    with Drawing() as draw:
        draw.stroke_width = max(1, w // 800)
        for i in range(12):
            draw.stroke_color = Color("#202020" if i % 2 else "#f0f0e0")
            draw.fill_color = Color("none")
            x, y = w * (i + 1) // 14, h * ((i * 5) % 11 + 1) // 13
            draw.circle((x, y), (x + w // 25, y))
            draw.line((x, 0), (x + w // 10, h))
        draw.fill_color = Color("#10101080")
        draw.rectangle(left=w // 3, top=h // 3, width=w // 5, height=h // 4)
        draw(image)


def _vignette_alpha(image: Image) -> None:
    """Opaque in the middle, fading to transparent at the corners."""
    with Image(width=image.width, height=image.height, pseudo="radial-gradient:white-black") as mask:
        mask.level(0.0, 0.7)
        image.alpha_channel = "set"
        image.composite(mask, 0, 0, operator="copy_opacity")
