"""Wide-gamut pictures converted to sRGB by LittleCMS's kept 8-bit transform (imaging/lcms.py): the
same colours as ImageMagick's own conversion (the convert CLI's `-profile`), one transform per
profile in a process, alpha untouched, and everything else converted by ImageMagick as before."""
import os
import subprocess
import threading

import pytest
from wand.color import Color
from wand.image import Image

from imageserver.imaging import lcms
from tests import pictures
from tests.helpers import render
from tests.unit.test_pipeline import converted_by_convert, without_our_policy

ICC = "/usr/share/color/icc"
ADOBE_RGB = f"{ICC}/compatibleWithAdobeRGB1998.icc"
# Display P3 (an iPhone's photos): P3's primaries adapted to D50, sRGB's tone curve.
DISPLAY_P3 = pictures.icc_profile(colorants=((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419),
                                             (0.1571, 0.0666, 0.7841)))

pytestmark = pytest.mark.skipif(not lcms.available(), reason="liblcms2 is not installed")


def profile_bytes(path: str) -> bytes:
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed (make install installs it)")
    with open(path, "rb") as f:
        return f.read()


def tagged(data: bytes, profile: bytes, fmt: str) -> bytes:
    """The picture `data` with `profile` embedded, its numbers as they were (not converted)."""
    with Image(blob=data) as image:
        image.profiles["icc"] = profile
        image.format = fmt
        if fmt == "png":
            image.options["png:format"] = "png64" if image.alpha_channel else "png48"
        return image.make_blob(fmt)


def colourful(width: int, height: int, fmt: str) -> bytes:
    """A picture of every hue and lightness (red across, green down, blue in stripes), with some
    fine pattern in it: the same every call (pictures.photo is noise over four colours)."""
    values = bytes(value for y in range(height) for x in range(width)
                   for value in (x * 255 // (width - 1), y * 255 // (height - 1), (x * 7 + y * 13) % 256))
    with Image(width=width, height=height) as image:
        image.import_pixels(channel_map="RGB", storage="char", data=values)
        image.format = fmt
        image.compression_quality = 92
        return image.make_blob(fmt)


def by_convert(data: bytes, tmp_path) -> pictures.Decoded:
    """`data` converted to sRGB by ImageMagick's own MagickProfileImage (the convert CLI), 8 bits."""
    source, out = tmp_path / "tagged", tmp_path / "converted.png"
    source.write_bytes(data)
    subprocess.run(["/usr/bin/convert", str(source), "-profile", f"{ICC}/sRGB.icc", "-depth", "8", "-strip",
                    str(out)], check=True, env=without_our_policy())
    return pictures.decode(out.read_bytes())


def differences(made: pictures.Decoded, expected: pictures.Decoded) -> tuple:
    """(mean, largest) difference of the red, green and blue of two decoded pictures of one size."""
    found = [abs(a - b) for x in range(made.width) for y in range(made.height)
             for a, b in zip(made.pixel(x, y)[:3], expected.pixel(x, y)[:3])]
    return sum(found) / len(found), max(found)


@pytest.mark.spawns
def test_an_adobe_rgb_photo_is_converted_as_imagemagick_converts_it_with_one_transform(tmp_path):
    adobe = profile_bytes(ADOBE_RGB)
    lcms.clear()
    made_before = lcms.made
    first = tagged(colourful(96, 72, "jpeg"), adobe, "jpeg")
    out = render(first, "96x72.png")      # the source's own size: no resize, only the colours differ
    mean, largest = differences(out, by_convert(first, tmp_path))
    print(f"Adobe RGB photo against convert -profile: mean {mean:.3f}, largest {largest}")
    assert mean <= 1 and largest <= 3
    assert "icc" not in out.profiles and out.colorspace == "srgb"
    assert lcms.made == made_before + 1
    # Another picture of the same profile: the kept transform, none made.
    second = tagged(colourful(80, 60, "jpeg"), adobe, "jpeg")
    render(second, "40x30.jpg")
    assert lcms.made == made_before + 1


@pytest.mark.spawns
def test_a_display_p3_jpeg_is_converted_to_srgb_by_lcms(tmp_path):
    made_before = lcms.made
    lcms.clear()
    data = pictures.tagged_jpeg(20, 20, "rgb(220,60,40)", DISPLAY_P3)
    expected = converted_by_convert(data, tmp_path)
    out = render(data, "x20.jpg")
    print(f"P3 rgb(220,60,40): convert {expected}, ours {out.pixel(10, 10)}")
    assert pictures.near(out.pixel(10, 10), expected, 2)
    assert not pictures.near(expected, (220, 60, 40, 255), 10)     # P3's red is redder than sRGB's
    assert lcms.made == made_before + 1


@pytest.mark.spawns
def test_transparency_is_kept_through_lcms(tmp_path):
    adobe = profile_bytes(ADOBE_RGB)
    lcms.clear()
    made_before = lcms.made
    with Image(width=64, height=48, background=Color("rgba(60,160,60,0.5)")) as image:
        with Image(width=32, height=24, background=Color("rgba(200,40,90,1.0)")) as square:
            image.composite(square, left=16, top=12)
        with Image(width=16, height=48, background=Color("transparent")) as strip:
            image.composite(strip, left=0, top=0, operator="copy")
        image.format = "png"
        data = tagged(image.make_blob("png"), adobe, "png")
    source = pictures.decode(data)
    out = render(data, "64x48.png")
    expected = by_convert(data, tmp_path)
    assert out.alpha
    transparent, opaque, opaque_too, half = (source.pixel(x, 20)[3] for x in (5, 20, 40, 60))
    assert (transparent, opaque, opaque_too) == (0, 255, 255) and half in (127, 128)
    points = [(x, y) for x in range(0, 64, 3) for y in range(0, 48, 3)]
    assert [out.pixel(*point)[3] for point in points] == [source.pixel(*point)[3] for point in points]
    assert [out.pixel(*point)[3] for point in points] == [expected.pixel(*point)[3] for point in points]
    for point in ((20, 20), (60, 5)):
        assert pictures.near(out.pixel(*point), expected.pixel(*point), 2), (out.pixel(*point),
                                                                             expected.pixel(*point))
    assert lcms.made == made_before + 1


@pytest.mark.spawns
def test_a_cmyk_jpeg_is_still_converted_by_imagemagick(tmp_path):
    made_before = lcms.made
    source, out_path = tmp_path / "cmyk.jpg", tmp_path / "srgb.png"
    source.write_bytes(pictures.cmyk_jpeg(40, 40, "rgb(30,120,200)"))
    subprocess.run(["/usr/bin/convert", str(source), "-colorspace", "sRGB", str(out_path)], check=True,
                   env=without_our_policy())
    out = render(source.read_bytes(), "40x40.png")
    assert out.colorspace == "srgb"
    assert pictures.near(out.pixel(20, 20), pictures.decode(out_path.read_bytes()).pixel(20, 20), 1)
    assert lcms.made == made_before


@pytest.mark.spawns
def test_a_profile_with_lookup_tables_is_still_converted_by_imagemagick(tmp_path):
    # Curves and a matrix, but an A2B0 table beside them, which a colour engine uses instead: for
    # 8 bits, LittleCMS would first run a 49x49x49 grid through it, outside the backstop.
    data = pictures.tagged_jpeg(20, 20, "rgb(220,60,40)",
                                pictures.icc_profile(extra_tags=((b"A2B0", pictures.lut8_identity()),)))
    made_before = lcms.made
    expected = converted_by_convert(data, tmp_path)
    out = render(data, "x20.jpg")
    print(f"LUT profile rgb(220,60,40): convert {expected}, ours {out.pixel(10, 10)}")
    assert pictures.near(out.pixel(10, 10), expected, 2)
    assert lcms.made == made_before


@pytest.mark.spawns
def test_threads_share_kept_transforms_while_others_are_let_go(monkeypatch, tmp_path):
    # `images server` may run threads in a worker: two profiles taking turns in a cache of one, each
    # let go while another thread may still be converting with it.
    monkeypatch.setattr(lcms, "CACHED_TRANSFORMS", 1)
    adobe = profile_bytes(ADOBE_RGB)
    sources = [pictures.tagged_jpeg(64, 64, "rgb(220,60,40)", profile) for profile in (adobe, DISPLAY_P3)]
    expected = [converted_by_convert(data, tmp_path) for data in sources]
    results: list = []
    made_before = lcms.made

    def renders(turn: int) -> None:
        for i in range(12):
            which = (turn + i) % 2
            results.append((which, render(sources[which], "x32.png").pixel(16, 16)))
    threads = [threading.Thread(target=renders, args=(turn,)) for turn in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 48
    assert lcms.made >= made_before + 4     # let go and made again, as the profiles took turns
    assert all(pictures.near(colour, expected[which], 2) for which, colour in results), results
