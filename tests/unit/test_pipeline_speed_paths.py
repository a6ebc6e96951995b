"""The fast paths of the pipeline (shrink-on-load, box pre-shrink, MagickWand crop and resize) keep
what every output promises: its exact size, a centred crop, EXIF orientation, alpha flattened on
white for JPEG, 8-bit sRGB, no metadata."""
import pytest
from wand.image import Image

from imageserver.core.names import parse_output
from imageserver.core.settings import Settings
from imageserver.imaging import pipeline
from tests import pictures
from tests.helpers import render

SETTINGS = Settings()


@pytest.fixture(scope="module")
def wide_halves_png() -> bytes:
    """2400x800, left half red, right half blue: 12 times any square below asks for a pre-shrink."""
    return pictures.halves(2400, 800, "red", "blue", "png")


@pytest.mark.parametrize("name, size", [("x100.png", (100, 100)), ("137x45.jpg", (137, 45)),
                                        ("w333.webp", (333, 111)), ("61x200.png", (61, 200))])
def test_large_png_outputs_have_the_exact_size(wide_halves_png, name, size):
    image = render(wide_halves_png, name)
    assert (image.width, image.height) == size


def test_a_pre_shrunk_crop_is_centred(wide_halves_png):
    image = render(wide_halves_png, "x100.png")  # the middle 800x800: red left, blue right
    assert pictures.near(image.pixel(10, 50), (255, 0, 0, 255))
    assert pictures.near(image.pixel(89, 50), (0, 0, 255, 255))


def test_a_narrow_pre_shrunk_crop_takes_the_middle_column():
    data = pictures.halves(3000, 600, "lime", "blue", "png")
    image = render(data, "20x200.png")  # a 60x600 column in the middle: lime left, blue right
    assert pictures.near(image.pixel(2, 100), (0, 255, 0, 255), 60)
    assert pictures.near(image.pixel(17, 100), (0, 0, 255, 255), 60)


def test_a_large_transparent_png_keeps_alpha_in_webp_and_is_flattened_on_white_in_jpeg():
    data = pictures.transparent_png(2000, 2000)  # red square in the middle, clear around it
    webp = render(data, "x100.webp")
    assert webp.alpha and webp.pixel(2, 2)[3] < 20 and pictures.near(webp.pixel(50, 50), (255, 0, 0, 255))
    jpeg = render(data, "x100.jpg")
    assert not jpeg.alpha
    assert pictures.near(jpeg.pixel(2, 2), (255, 255, 255, 255))
    assert pictures.near(jpeg.pixel(50, 50), (255, 0, 0, 255))


@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_a_jpeg_shrunk_on_load_is_oriented_and_exact(orientation):
    # 6 (right_top) is shown turned right, 1200x2400 with red on top; 8 (left_bottom) is turned
    # left, red at the bottom.
    # Stored 2400x1200, left half red, right half blue.
    image = render(pictures.oriented_jpeg(2400, 1200, orientation), "w101.jpg")
    if orientation == 1:
        assert (image.width, image.height) == (101, 50)
        first, second = image.pixel(10, 25), image.pixel(90, 25)
    else:
        assert (image.width, image.height) == (101, 202)
        first, second = image.pixel(50, 10), image.pixel(50, 190)
        if orientation == 8:
            first, second = second, first
    assert pictures.near(first, (255, 0, 0, 255), 60) and pictures.near(second, (0, 0, 255, 255), 60)


def test_a_jpeg_shrunk_on_load_is_8_bit_srgb_without_metadata():
    image = render(pictures.oriented_jpeg(2400, 1200, 6), "x64.jpg")
    assert (image.width, image.height) == (64, 64)
    assert image.depth == 8 and image.colorspace == "srgb"
    assert not image.profiles


@pytest.fixture(scope="module")
def fine_photo() -> bytes:
    return pictures.photo(2400, 1800, "jpeg", quality=95)


@pytest.mark.parametrize("name, crop", [("w240.png", None), ("w400.png", None),
                                        ("x200.png", (300, 0, 1800, 1800))])
def test_shrink_on_load_looks_like_a_lanczos_downscale_from_full_resolution(fine_photo, name, crop):
    # Decoding at too small a scale shows here: a margin of 1 instead of 1.5 gives 0.011 on x200.
    output = pipeline.render(fine_photo, parse_output(name, SETTINGS), 75)
    with Image(blob=output) as got, Image(blob=fine_photo) as expected:
        if crop:
            expected.crop(crop[0], crop[1], width=crop[2], height=crop[3])
        expected.resize(got.width, got.height, filter="lanczos")
        _, distance = got.compare(expected, metric="root_mean_square")
    assert distance < 0.006
