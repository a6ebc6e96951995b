"""The pipeline, decoded from outside: sizes, crops, orientation, colour, alpha, frames, metadata."""
import os
import subprocess
import sys
import time

import pytest
from wand.color import Color
from wand.image import Image

from imageserver.core.errors import NotFound, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from imageserver.core.names import parse_output
from imageserver.core.settings import Settings
from imageserver.imaging import formats, magick, originals, pipeline, plan
from imageserver.imaging.source import Limits
from tests import hostile, pictures
from tests.helpers import formats_here, render
from tests.pictures import decode, near

SETTINGS = Settings()
RED, BLUE, WHITE = (255, 0, 0, 255), (0, 0, 255, 255), (255, 255, 255, 255)


def without_our_policy() -> dict:
    """The environment for the convert CLI: init_worker points ImageMagick at our strict policy."""
    return {name: value for name, value in os.environ.items() if not name.startswith("MAGICK_")}


def test_sniff():
    assert formats.sniff(pictures.photo(8, 8, "jpeg")[:64]) == "jpeg"
    assert formats.sniff(pictures.solid(8, 8, "red", "png")[:64]) == "png"
    assert formats.sniff(pictures.animated_gif(8, 8)[:64]) == "gif"
    assert formats.sniff(pictures.solid(8, 8, "red", "webp")[:64]) == "webp"
    assert formats.sniff(b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic") == "heic"
    assert formats.sniff(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00mif1miaf") == "avif"
    for other in (b"", b"<svg>", b"push graphic-context", b"%!PS-Adobe", b"BM\x00\x00", b"II*\x00"):
        assert formats.sniff(other) is None


def test_describe():
    info = originals.describe(pictures.photo(80, 60, "jpeg"))
    assert (info.coder, info.width, info.height, info.content_type) == ("jpeg", 80, 60, "image/jpeg")
    gif = originals.describe(pictures.animated_gif(30, 20))
    assert (gif.content_type, gif.width, gif.height, gif.frames) == ("image/gif", 30, 20, 3)


def test_describe_gives_the_displayed_size_of_a_turned_jpeg():
    info = originals.describe(pictures.oriented_jpeg(40, 20, 6))
    assert (info.width, info.height) == (20, 40)


@pytest.mark.parametrize("data, error", [
    (b"", UnsupportedMediaType),
    (b"hello, this is text", UnsupportedMediaType),
    (b'<svg xmlns="http://www.w3.org/2000/svg"/>', UnsupportedMediaType),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, Unprocessable),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, Unprocessable),
])
def test_describe_refuses(data, error):
    with pytest.raises(error):
        originals.describe(data)


def test_describe_refuses_cut_short_files():
    for fmt in ("jpeg", "png"):
        data = pictures.photo(200, 150, fmt)
        with pytest.raises(Unprocessable):
            originals.describe(data[: len(data) * 2 // 3])


def test_the_end_of_a_jpeg_or_gif_is_found_as_decoders_find_it():
    """By walking the blocks to the end marker: what follows it is ignored, and a file whose data
    ends before it is cut short (also when its last bytes look like an end)."""
    assert originals.describe(hostile.gif_with_bytes_after_trailer()).frames == 3
    assert originals.describe(hostile.jpeg_with_data_after_end()).width == 64
    gif = pictures.animated_gif(30, 20)
    within_the_second_frame = gif.index(b"\x2c", gif.index(b"\x2c") + 1) + 16
    for cut_short in (gif[:within_the_second_frame] + b"\x3b", gif[:-1]):
        with pytest.raises(Unprocessable, match="cut short"):
            originals.describe(cut_short)


@pytest.mark.parametrize("make, bound", [
    (lambda: hostile.gif_of_tiny_sub_blocks(10_000_000), "over 500000 blocks"),
    (lambda: hostile.jpeg_of_empty_segments(5_000_000), "over 100000 segments"),
], ids=["gif", "jpeg"])
def test_walking_to_the_end_marker_is_bounded(make, bound):
    """20 MB of one-byte sub-blocks or empty segments would take seconds to walk: refused past a
    bound (well under a second of CPU here: printed, not asserted, the machine is shared)."""
    data = make()
    started = time.process_time()
    with pytest.raises(PayloadTooLarge, match=bound):
        originals.describe(data)
    print(f"{len(data) // 10**6} MB walked and refused in {time.process_time() - started:.2f} s of CPU")


def test_an_image_the_decoder_fails_on_is_refused_at_upload_not_at_every_output():
    """ImageMagick 6 gives the picture of a GIF with a colour index past its table, and an error with
    it that fails every output made of it later: the upload is refused (7 refuses it at the read)."""
    with pytest.raises(Unprocessable, match="invalid colormap index"):
        originals.describe(hostile.gif_invalid_colour_index())


def test_a_png_over_imagemagicks_own_limits_is_refused_for_its_size():
    """ImageMagick reads nothing of it; its IHDR says why, and the answer names the bound."""
    for width, height in ((65_535, 1), (25_200, 33_300)):
        with pytest.raises(PayloadTooLarge, match=f"{width}x{height}; the largest side accepted"):
            originals.describe(hostile.png_header_only(width, height, rows=1))


def test_describe_refuses_too_many_pixels_from_the_header():
    with pytest.raises(PayloadTooLarge):
        originals.describe(pictures.solid(300, 200, "red"), Limits(maximum_pixels=50_000))


@pytest.mark.parametrize("name, size", [
    ("w200.jpg", (200, 150)), ("x200.jpg", (200, 200)), ("300x200.jpg", (300, 200)),
    ("100x300.png", (100, 300)), ("full_size.webp", (800, 600)), ("w1000.jpg", (1000, 750)),
    ("x50.gif", (50, 50)),
])
def test_sizes(name, size):
    image = render(pictures.photo(800, 600), name)
    assert (image.width, image.height) == size
    assert image.format == {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}[name.split(".")[-1]]


def test_square_crop_is_centred():
    # 400x100: red | blue. The centred 100x100 square straddles the middle: red left, blue right.
    image = render(pictures.halves(400, 100, "red", "blue"), "x100.png")
    assert near(image.pixel(10, 50), RED) and near(image.pixel(90, 50), BLUE)
    # 300x100 of a tall 100x400 image keeps its middle: scale 3, the crop is 100x33 around y=200.
    tall = pictures.halves(100, 400, "red", "blue")
    image = render(tall, "300x100.png")
    assert (image.width, image.height) == (300, 100)
    assert near(image.pixel(20, 50), RED) and near(image.pixel(280, 50), BLUE)


@pytest.mark.parametrize("orientation, top_left, bottom_right", [
    (1, RED, BLUE), (3, BLUE, RED), (6, RED, BLUE), (8, BLUE, RED),
])
def test_exif_orientation_is_applied(orientation, top_left, bottom_right):
    # Stored 40x20, left red and right blue. Orientation 6 turns it 90 degrees clockwise.
    image = render(pictures.oriented_jpeg(40, 20, orientation), "full_size.png")
    expected = (40, 20) if orientation in (1, 3) else (20, 40)
    assert (image.width, image.height) == expected
    assert near(image.pixel(2, 2), top_left)
    assert near(image.pixel(image.width - 3, image.height - 3), bottom_right)


def test_metadata_is_stripped():
    image = render(pictures.oriented_jpeg(40, 20, 6), "w20.jpg")
    assert not image.profiles & {"exif", "icc", "xmp", "iptc", "8bim"}
    with Image(blob=pipeline.render(pictures.oriented_jpeg(40, 20, 6),
                                    parse_output("w20.jpg", SETTINGS), 75)) as raw:
        assert raw.orientation in ("undefined", "top_left")


def test_cmyk_becomes_srgb():
    image = render(pictures.cmyk_jpeg(60, 60, "red"), "x40.jpg")
    assert image.colorspace == "srgb"
    assert near(image.pixel(20, 20), RED)


@pytest.mark.spawns
def test_embedded_icc_profile_is_used(tmp_path):
    # Mid green tagged as Adobe RGB is a more saturated green than the same numbers in sRGB.
    adobe = "/usr/share/color/icc/compatibleWithAdobeRGB1998.icc"
    with Image(width=20, height=20, background=Color("rgb(60,160,60)")) as image:
        with open(adobe, "rb") as f:
            image.profiles["icc"] = f.read()
        data = image.make_blob("png")
    expected = converted_by_convert(data, tmp_path)     # one colour: any pixel will do
    out = render(data, "x10.png")
    assert "icc" not in out.profiles
    assert near(out.pixel(5, 5), expected, 3)
    assert not near(out.pixel(5, 5), (60, 160, 60, 255), 10)


@pytest.mark.parametrize("name", ["x60.png", "x90.png", "x100.png", "120x60.png"])
def test_a_small_crop_of_a_big_jpeg_is_centred_exactly(name):
    # Decoded at 1/8, the crop is taken from 300x225 pixels: half a pixel off centre there is 4
    # pixels of the source. The red/blue boundary must fall exactly between the middle two columns.
    out = decode(pipeline.render(pictures.halves(2400, 1800, "red", "blue", "jpeg"),
                                 parse_output(name, SETTINGS), 75))
    middle = out.width // 2
    left, right = out.pixel(middle - 1, out.height // 2), out.pixel(middle, out.height // 2)
    assert abs(left[0] - right[2]) <= 3 and abs(left[2] - right[0]) <= 3, (left, right)


def test_resize_is_lanczos_reaching_two_and_a_half_pixels(tmp_path):
    # Lanczos 3 without its last half lobe (pipeline.LANCZOS_SUPPORT): what convert makes with
    # filter:support=2.5, and not what it makes with Lanczos's own reach of 3.
    source = tmp_path / "photo.png"
    source.write_bytes(pictures.photo(96, 72, "png"))
    made = decode(pipeline.render(source.read_bytes(), parse_output("w50.png", SETTINGS), 75))

    def by_convert(*define):
        out = tmp_path / "out.png"
        subprocess.run(["/usr/bin/convert", str(source), "-filter", "Lanczos", *define, "-resize", "50x38!",
                        "-depth", "8", "-strip", str(out)], check=True, env=without_our_policy())
        return decode(out.read_bytes())
    truncated, whole = by_convert("-define", "filter:support=2.5"), by_convert()
    points = [(x, y) for x in range(0, 50, 7) for y in range(0, 38, 5)]
    assert [made.pixel(*p) for p in points] == [truncated.pixel(*p) for p in points]
    assert [made.pixel(*p) for p in points] != [whole.pixel(*p) for p in points]


def converted_by_convert(data: bytes, tmp_path) -> tuple:
    """The pixel at 10,10 of `data` converted to sRGB through its embedded profile by the convert CLI."""
    source = tmp_path / "tagged"
    source.write_bytes(data)
    expected = subprocess.run(
        ["/usr/bin/convert", str(source), "-profile", "/usr/share/color/icc/sRGB.icc", "-format",
         "%[fx:round(255*p{10,10}.r)],%[fx:round(255*p{10,10}.g)],%[fx:round(255*p{10,10}.b)]", "info:"],
        capture_output=True, text=True, check=True, env=without_our_policy()).stdout
    return tuple(int(v) for v in expected.split(",")) + (255,)


@pytest.mark.parametrize("profile", ["/usr/share/color/icc/compatibleWithAdobeRGB1998.icc",
                                     "/usr/share/color/icc/colord/AdobeRGB1998.icc",
                                     "/usr/share/color/icc/colord/ProPhotoRGB.icc"])
def test_a_wide_gamut_jpeg_is_converted_to_srgb(profile, tmp_path):
    if not os.path.exists(profile):
        pytest.skip(f"{profile} is not installed (make install installs it)")
    with open(profile, "rb") as f:
        data = pictures.tagged_jpeg(20, 20, "rgb(60,160,60)", f.read())
    out = render(data, "x20.jpg")
    assert "icc" not in out.profiles
    assert near(out.pixel(10, 10), converted_by_convert(data, tmp_path), 3)
    assert not near(out.pixel(10, 10), (60, 160, 60, 255), 10)


@pytest.mark.parametrize("curve", [pictures.gamma_curve(1.0), pictures.gamma_curve(2.2)])
def test_a_jpeg_tagged_with_srgb_primaries_but_another_tone_curve_is_converted(curve, tmp_path):
    # Linear-light "sRGB" makes the same numbers far lighter; gamma 2.2 a little darker in the shadows.
    data = pictures.tagged_jpeg(20, 20, "rgb(30,60,90)", pictures.icc_profile(curve=curve))
    expected = converted_by_convert(data, tmp_path)
    assert not near(expected, (30, 60, 90, 255), 2)
    assert near(render(data, "x20.jpg").pixel(10, 10), expected, 3)


@pytest.mark.parametrize("profile", ["/usr/share/color/icc/colord/sRGB.icc", "built"])
def test_an_srgb_tagged_jpeg_renders_as_the_same_picture_untagged(profile):
    if profile == "built":
        icc_bytes = pictures.icc_profile()
    elif os.path.exists(profile):
        with open(profile, "rb") as f:
            icc_bytes = f.read()
    else:
        pytest.skip(f"{profile} is not installed (make install installs it)")
    photo = pictures.photo(64, 48, "jpeg")
    body = b"ICC_PROFILE\x00\x01\x01" + icc_bytes
    tagged = photo[:2] + b"\xff\xe2" + (len(body) + 2).to_bytes(2, "big") + body + photo[2:]
    spec = parse_output("40x30.jpg", SETTINGS)
    assert pipeline.render(tagged, spec, 75) == pipeline.render(photo, spec, 75)


def test_alpha_is_flattened_on_white_for_jpeg_and_kept_for_png_and_webp():
    source = pictures.transparent_png(80, 80)
    jpeg = render(source, "x40.jpg")
    assert near(jpeg.pixel(2, 2), WHITE) and near(jpeg.pixel(20, 20), RED)
    for name in ("x40.png", "x40.webp"):
        image = render(source, name)
        assert image.alpha and image.pixel(2, 2)[3] < 10 and near(image.pixel(20, 20), RED), name


def test_animated_gif_stays_animated_as_gif():
    source = pictures.animated_gif(60, 40, loop=0)
    image = render(source, "x20.gif")
    assert (image.frames, image.width, image.height, image.loop) == (3, 20, 20, 0)
    with Image(blob=pipeline.render(source, parse_output("x20.gif", SETTINGS), 75)) as frames:
        frames.coalesce()
        colours = []
        for index in range(len(frames.sequence)):
            with frames.sequence[index].clone() as frame:
                colours.append(decode(frame.make_blob("png")).pixel(10, 10))
    assert [near(c, e) for c, e in zip(colours, [RED, (0, 255, 0, 255), BLUE])] == [True] * 3


def test_animated_gif_to_other_formats_is_the_first_frame():
    for name in ("x20.jpg", "x20.png", "x20.webp"):
        image = render(pictures.animated_gif(60, 40), name)
        assert image.frames == 1 and near(image.pixel(10, 10), RED), name


def test_sixteen_bit_png_becomes_eight_bit():
    data = pictures.photo(30, 30, "png")
    with Image(blob=data) as image:
        image.depth = 16
        image.options["png:format"] = "png48"
        data = image.make_blob("png")
    assert png_bit_depth(data) == 16
    # The PNG header's own figure: ImageMagick 6 and 7 report a palette's depth differently.
    assert png_bit_depth(pipeline.render(data, parse_output("w20.png", SETTINGS), 75)) == 8


def png_bit_depth(data: bytes) -> int:
    assert data[12:16] == b"IHDR"
    return data[24]


@pytest.mark.parametrize("ext", ["jpg", "avif"])
def test_quality_changes_the_size(ext):
    source = pictures.photo(400, 300)
    small = pipeline.render(source, parse_output(f"w300-q10.{ext}", SETTINGS), 10, formats=formats_here())
    large = pipeline.render(source, parse_output(f"w300-q95.{ext}", SETTINGS), 95, formats=formats_here())
    assert len(small) * 2 < len(large)


def test_downscale_does_not_alias():
    # One-pixel black and white stripes: a good downscale is an even grey, a bad one has bands.
    with Image(width=3000, height=2000) as image:
        image.import_pixels(width=3000, height=2000, channel_map="I", storage="char",
                            data=bytes([0, 255]) * 1500 * 2000)
        image.format = "jpeg"
        image.compression_quality = 95
        data = image.make_blob("jpeg")
    with Image(blob=pipeline.render(data, parse_output("w200.png", SETTINGS), 75)) as out:
        out.transform_colorspace("gray")
        assert 0.4 < out.mean / out.quantum_range < 0.6     # point sampling gives black or white
        assert out.standard_deviation / out.quantum_range < 0.05


@pytest.mark.spawns
@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_heic_and_avif_are_read_where_imagemagick_reads_them(fmt):
    if not formats.format_support(formats_here())[fmt]:
        pytest.skip(f"this ImageMagick does not read {fmt}")
    # Made by the convert CLI: our policy lets ImageMagick read these formats, never write them.
    data = subprocess.run(["/usr/bin/convert", "png:-", f"{fmt}:-"], input=pictures.photo(64, 48, "png"),
                          capture_output=True, check=True, env=without_our_policy()).stdout
    info = originals.describe(data)
    assert (info.coder, info.width, info.height) == (fmt, 64, 48)
    assert render(data, "x32.jpg").width == 32
    red = subprocess.run(["/usr/bin/convert", "png:-", f"{fmt}:-"], input=pictures.solid(64, 48, "red"),
                         capture_output=True, check=True, env=without_our_policy()).stdout
    assert near(render(red, "x32.png").pixel(16, 16), RED)


# -- AVIF outputs: the same sizes, crops, orientation, colour and alpha as the other formats --------

def render_avif(data: bytes, name: str, quality: int = 75):
    output = pipeline.render(data, parse_output(name, SETTINGS), quality, formats=formats_here())
    assert output[4:12] == b"ftypavif", output[:16]
    return pictures.decode_avif(output)


@pytest.mark.spawns
def test_avif_outputs_have_the_size_crop_orientation_and_colour_asked_for():
    assert formats_here().can_write("avif"), "this ImageMagick cannot write AVIF: install libheif's encoder"
    for name, size in [("w200.avif", (200, 150)), ("x100.avif", (100, 100)), ("120x40.avif", (120, 40))]:
        image = render_avif(pictures.photo(400, 300, "jpeg"), name)
        assert (image.width, image.height) == size, name
    turned = render_avif(pictures.oriented_jpeg(40, 20, 6), "full_size.avif")
    assert (turned.width, turned.height) == (20, 40)
    assert near(turned.pixel(2, 2), RED) and near(turned.pixel(17, 37), BLUE)


@pytest.mark.spawns
def test_avif_keeps_alpha_where_imagemagick_writes_it_else_is_flattened_on_white():
    image = render_avif(pictures.transparent_png(80, 80), "x40.avif")
    assert near(image.pixel(20, 20), RED)
    if magick.writes_alpha("avif"):
        assert image.alpha and image.pixel(2, 2)[3] < 10
    else:  # ImageMagick 6: as for JPEG, never a black background
        assert near(image.pixel(2, 2), WHITE)


@pytest.mark.spawns
def test_an_animation_in_avif_is_its_first_frame():
    first = render_avif(pictures.animated_gif(60, 40), "x20.avif")
    assert first.frames == 1 and near(first.pixel(10, 10), RED)


def test_avif_quality_follows_the_jpeg_scale():
    assert [formats.avif_quality(q) for q in (1, 50, 60, 75, 90, 100)] == [1, 46, 52, 60, 84, 100]
    assert all(formats.avif_quality(q) <= formats.avif_quality(q + 1) for q in range(1, 100))


def test_an_imagemagick_without_an_avif_encoder_says_so():
    without_avif = formats.Formats(formats_here().readable, frozenset({"jpeg", "png", "gif", "webp"}))
    with pytest.raises(NotFound, match="cannot write AVIF"):
        pipeline.render(pictures.photo(40, 30), parse_output("w20.avif", SETTINGS), 75, formats=without_avif)
    source = originals.describe(pictures.photo(40, 30))
    with pytest.raises(NotFound, match="cannot write AVIF"):
        plan.check_work([parse_output("w20.avif", SETTINGS)], source, formats=without_avif)
    assert "avif" not in formats.writable_extensions(without_avif)


GIF_RENDER = """
import resource, sys
from imageserver.imaging import formats, originals, pipeline, plan, source
from imageserver.core.names import parse_output
from imageserver.core.settings import Settings
from tests import pictures
data = pictures.photo(600, 400)
pipeline.render(data, parse_output("300x200.jpg", Settings()), 75)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
output = pipeline.render(data, parse_output("300x200.gif", Settings()), 75)
assert output[:6] == b"GIF89a", output[:6]
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_still_gif_output_fills_no_colour_cache():
    """A still GIF's palette is chosen without dithering (as thumbor's Pillow makes GIFs): ImageMagick
    6's ditherer first fills a 128 MB colour cache (70-85 ms of CPU, and a worker's memory peak),
    most of a small GIF's cost. Measured in a process of its own, by what its peak memory grows."""
    done = subprocess.run([sys.executable, "-c", GIF_RENDER], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr
    grown_mib = int(done.stdout.split()[-1])
    print(f"300x200.gif of a 600x400 JPEG: peak RSS grew {grown_mib} MiB")
    assert grown_mib < 16


def decoded_at(name: str, width: int = 4000, height: int = 3000) -> str:
    """The size a JPEG of `width` x `height` is decoded at for the output `name` ("" for whole)."""
    layout = plan.plan(parse_output(name, SETTINGS), width, height)
    return plan.jpeg_size_hint("jpeg", layout, width, height, False)


def test_a_whole_picture_is_decoded_at_no_less_than_its_output():
    # As Pillow's draft decodes it for thumbor: w1000 of 4000 pixels is a decode at 2/8, no resize.
    assert decoded_at("w1000.jpg") == "1000x750"
    assert decoded_at("w1000.jpg", 4004, 3000) == "1001x750"    # libjpeg rounds up: 1001
    assert decoded_at("w1000.jpg", 3996, 3000) == "1998x1500"   # 999 would be too few: 4/8
    assert decoded_at("800x600.jpg") == "1000x750"      # the whole picture too (same shape)
    assert decoded_at("680x510.jpg", 4032, 3024) == "1008x756"  # its crop: 4031.9999999999995 wide


def test_3_8_is_never_decoded_at_and_1_8_only_far_above_the_output():
    # 3/8 would do for w1000 of 3000 pixels (1125 pixels); its 3-point IDCT aliases: 4/8 instead.
    assert decoded_at("w1000.jpg", 3000, 2000) == "1500x1000"
    # 1/8 is each block's mean: only for an output 4 times smaller than it (500 / 4 = 125).
    assert decoded_at("w125.jpg") == "500x375"
    assert decoded_at("w126.jpg") == "1000x750"


def test_a_crop_is_decoded_where_its_edges_land_on_whole_pixels():
    # x230 of 4000x3000 crops 3000x3000 from x=500: at 1/8 (500x375) its edge would sit at 62.5
    # decoded pixels, at 2/8 at 125.
    assert decoded_at("x230.jpg") == "1000x750"
    # x520: 3/8 is never used, and 2/8 leaves under 1.5 pixels per output pixel: 4/8 (edge at 250).
    assert decoded_at("x520.jpg") == "2000x1500"
    # 130x100 of 800x600 crops 780x600 from x=10: 2.5 at 2/8, 5 at 4/8.
    assert decoded_at("130x100.jpg", 800, 600) == "400x300"
    # 131x100 crops 786x600 from x=7: 1.75 at 2/8, 3.5 at 4/8 (a sixth of an output pixel off).
    assert decoded_at("131x100.jpg", 800, 600) == ""
