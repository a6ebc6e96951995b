"""The cost model and its backstop, on real ImageMagick: a JPEG's scans counted as a decoder reads
them, prices that grow with what drives the work, and work stopped once it runs far past its price."""
import os

import pytest
from wand.api import library
from wand.image import Image

from imageserver.core.errors import PayloadTooLarge
from imageserver.core.names import parse_output
from imageserver.core.settings import Settings
from imageserver.imaging import cost, decoded, formats, magick, originals, pipeline, plan
from imageserver.imaging.source import SourceInfo
from tests import hostile, pictures

SETTINGS = Settings()
# An ICC profile with wider primaries than sRGB's (Adobe RGB's): converted to sRGB by LittleCMS.
WIDE_GAMUT = pictures.icc_profile(colorants=((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609),
                                             (0.1492, 0.0632, 0.7446)))
# Curves and a matrix, with a lookup table beside them that a colour engine uses instead: converted
# by ImageMagick, per row, under the backstop (pipeline._lcms_converts).
WITH_TABLES = pictures.icc_profile(extra_tags=((b"A2B0", pictures.lut8_identity()),))


def progressive_jpeg(width: int, height: int) -> bytes:
    with Image(blob=pictures.halves(width, height, "red", "blue")) as image:
        image.format = "jpeg"
        library.MagickSetInterlaceScheme(image.wand, 3)   # plane: Wand's property sets the image's only
        return image.make_blob("jpeg")


def test_scans_are_counted_from_the_markers():
    assert originals.jpeg_markers(pictures.photo(64, 48, "jpeg")).scans == 1
    assert originals.jpeg_markers(progressive_jpeg(64, 48)) == originals.JpegMarkers(10, 3, True)
    assert originals.jpeg_markers(hostile.jpeg_many_scans(64, 64, 700)) == originals.JpegMarkers(700, 1, True)
    # An EXIF thumbnail's scans are inside APP1: skipped with it.
    thumbnail = progressive_jpeg(16, 16)
    app1 = b"Exif\x00\x00" + thumbnail
    with_thumbnail = (b"\xff\xd8\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
                      + pictures.photo(64, 48, "jpeg")[2:])
    assert originals.jpeg_markers(with_thumbnail).scans == 1


def test_prices_grow_with_what_drives_the_work():
    still = SourceInfo("gif", 577, 577)
    animated = SourceInfo("gif", 577, 577, frames=300)
    x300 = parse_output("x300.gif", SETTINGS)
    gif = [plan.price(x300, source, 75).milliseconds for source in (still, animated)]
    assert gif[1] > 100 * gif[0]
    # As a still picture, an animation costs its first frame (and reading past the others).
    x300_jpg = parse_output("x300.jpg", SETTINGS)
    jpeg_of_animation = plan.price(x300_jpg, animated, 75).milliseconds
    assert jpeg_of_animation < 2 * plan.price(x300_jpg, still, 75).milliseconds + 50
    photo = SourceInfo("jpeg", 4000, 3000)
    scanned = SourceInfo("jpeg", 4000, 3000, scans=90)
    w400 = parse_output("w400.jpg", SETTINGS)
    assert plan.price(w400, scanned, 75).milliseconds > 5 * plan.price(w400, photo, 75).milliseconds
    # The encoder's effort: WebP at 100 costs more than at 75; PNG's price is the same at any -q.
    webp = [plan.price(parse_output(f"w1000-q{q}.webp", SETTINGS), photo, q).milliseconds
            for q in (75, 100)]
    assert webp[1] > 2 * webp[0]
    png = [plan.price(parse_output(f"w1000-q{q}.png", SETTINGS), photo, q).milliseconds
           for q in (75, 100)]
    assert png[0] == png[1]


def test_png_quality_keeps_its_meaning_under_zlib_default_level():
    assert [formats.png_compression_level(q) for q in (1, 10, 45, 60, 75, 100)] == [0, 1, 4, 6, 6, 6]


@pytest.mark.slow
def test_a_render_that_runs_far_past_its_price_is_stopped(monkeypatch):
    """The backstop: with the price taken as nothing and the grace at 20 ms, a render that takes far
    longer is stopped inside ImageMagick, a 413 that says so; nothing of it stays behind, and the
    next render in this process is whole."""
    data = pictures.photo(2000, 1500)
    spec = parse_output("1000x1000.png", SETTINGS)
    monkeypatch.setattr(cost, "STOP_FACTOR", 0)
    monkeypatch.setattr(cost, "STOP_GRACE_MS", 20)
    with pytest.raises(PayloadTooLarge, match="stopped after .* ms of CPU"):
        pipeline.render(data, spec, 75)
    assert os.listdir(magick._in_force.temporary_folder) == []
    monkeypatch.setattr(cost, "STOP_GRACE_MS", 60_000)
    output = pictures.decode(pipeline.render(data, spec, 75))
    assert (output.width, output.height) == (1000, 1000)


@pytest.mark.slow
def test_an_upload_check_that_runs_far_past_its_price_is_stopped(monkeypatch):
    monkeypatch.setattr(cost, "STOP_FACTOR", 0)
    monkeypatch.setattr(cost, "STOP_GRACE_MS", 5)
    with pytest.raises(PayloadTooLarge, match="upload: stopped after"):
        originals.describe(pictures.photo(3000, 2000, "png"))


def test_the_stopwatch_is_per_thread_and_off_outside_it():
    with magick.Stopwatch(None):
        pass
    data = pictures.photo(300, 200)
    assert pictures.decode(pipeline.render(data, parse_output("w100.jpg", SETTINGS), 75)).width == 100


def test_a_render_from_a_kept_decode_is_priced_without_the_decode():
    """A source decoded by an earlier output is not decoded again (decoded.py): its price leaves the
    decode out (every coefficient of a 12 MP JPEG read: most of a small output's price)."""
    source = SourceInfo("jpeg", 4000, 3000)
    spec = parse_output("x100.jpg", SETTINGS)
    fresh = plan.price(spec, source, 75).milliseconds
    kept = plan.price(spec, source, 75, (500, 375)).milliseconds
    assert kept < fresh - cost.decode_ms(source, 500 * 375) + 0.01


@pytest.mark.slow
def test_a_render_from_a_kept_decode_that_runs_far_past_its_price_is_stopped(monkeypatch):
    """The backstop covers a render from a kept decode as it covers a fresh one (where the content
    drives the work: here ImageMagick's colour transform through the file's profile with lookup
    tables), and a failure lets every kept decode go."""
    data = pictures.tagged_jpeg(2000, 1500, "rgb(30,60,90)", WITH_TABLES)
    spec = parse_output("1000x1000.png", SETTINGS)
    first = pictures.decode(pipeline.render(data, spec, 75, reuse="p/kept"))
    assert decoded.DECODED.pixels() == 2000 * 1500
    monkeypatch.setattr(cost, "STOP_FACTOR", 0)
    monkeypatch.setattr(cost, "STOP_GRACE_MS", 20)
    with pytest.raises(PayloadTooLarge, match="stopped after .* ms of CPU"):
        pipeline.render(data, spec, 75, reuse="p/kept")
    assert decoded.DECODED.pixels() == 0
    monkeypatch.setattr(cost, "STOP_GRACE_MS", 60_000)
    output = pictures.decode(pipeline.render(data, spec, 75, reuse="p/kept"))
    assert (output.width, output.height) == (first.width, first.height) == (1000, 1000)


def monitor_calls(monkeypatch, data: bytes, name: str) -> int:
    """How many times ImageMagick called the backstop's monitor while rendering `name` of `data`."""
    calls = []

    class Counted(magick.Stopwatch):
        def __exit__(self, *raised):
            calls.append(magick._watch.state.calls)
            return super().__exit__(*raised)
    monkeypatch.setattr(magick, "Stopwatch", Counted)
    pictures.decode(pipeline.render(data, parse_output(name, SETTINGS), 75))
    return calls[-1]


def test_the_backstop_watches_what_the_content_drives_not_the_resize_and_encode(monkeypatch):
    """The monitor (a ctypes callback on every row) watches the decode, where a file's content
    drives the work, and a colour transform of ImageMagick's through a profile of the file's (one
    with lookup tables); it is taken off for the resize and the encode, which the sizes alone price,
    and for LittleCMS's kept transform of a matrix/shaper profile (linear in the output's pixels). An
    800x600 JPEG is decoded whole (600 rows) for 480x300.jpg."""
    untagged = monitor_calls(monkeypatch, pictures.photo(800, 600), "480x300.jpg")
    wide = monitor_calls(monkeypatch, pictures.tagged_jpeg(800, 600, "rgb(30,60,90)", WIDE_GAMUT),
                         "480x300.jpg")
    tables = monitor_calls(monkeypatch, pictures.tagged_jpeg(800, 600, "rgb(30,60,90)", WITH_TABLES),
                           "480x300.jpg")
    print(f"monitor calls: untagged {untagged}, wide-gamut {wide}, profile with tables {tables}")
    assert 600 <= untagged <= 700
    assert 600 <= wide <= 700
    assert tables > 1000
