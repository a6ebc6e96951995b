import pytest

from imageserver.core.errors import BadRequest, NotFound
from imageserver.core.names import parse_output, parse_output_list
from imageserver.core.settings import Settings

SETTINGS = Settings()


@pytest.mark.parametrize("name, expected", [
    ("w200.jpg", ("width", 200, None, None, "jpg")),
    ("x200.jpg", ("fill", 200, 200, None, "jpg")),
    ("300x200.png", ("fill", 300, 200, None, "png")),
    ("x200-q30.jpg", ("fill", 200, 200, 30, "jpg")),
    ("full_size.webp", ("full", None, None, None, "webp")),
    ("full_size-q100.gif", ("full", None, None, 100, "gif")),
    ("w1000.jpg", ("width", 1000, None, None, "jpg")),
    ("1000x1000-q1.webp", ("fill", 1000, 1000, 1, "webp")),
])
def test_valid_names(name, expected):
    spec = parse_output(name, SETTINGS)
    assert (spec.kind, spec.width, spec.height, spec.quality, spec.ext) == expected
    assert spec.name == name


@pytest.mark.parametrize("name", [
    "w0.jpg", "x0.jpg", "0x200.jpg", "200x0.jpg", "w020.jpg", "w1001.jpg", "x1001.jpg",
    "1001x10.jpg", "10x1001.jpg", "x200-q0.jpg", "x200-q101.jpg", "x200-q.jpg", "x200.bmp",
    "x200.svg", "x200", "x200.JPG", "h200.jpg", "w200.jpg.jpg", "../x200.jpg", "x200 .jpg",
    "full_size", "full.jpg", "w-200.jpg", "w200-q50-q50.jpg", "", "info.json.jpg",
])
def test_invalid_names_are_not_found(name):
    with pytest.raises(NotFound):
        parse_output(name, SETTINGS)


def test_extensions_and_maxima_come_from_settings():
    narrow = Settings(extensions=("webp",), maximum_width=50, maximum_height=40)
    assert parse_output("50x40.webp", narrow).width == 50
    for name in ("x20.jpg", "w51.webp", "50x41.webp", "x41.webp"):
        with pytest.raises(NotFound):
            parse_output(name, narrow)


def test_output_list():
    specs = parse_output_list(" x300.jpg, x300.webp,,x300.jpg ", SETTINGS)
    assert [s.name for s in specs] == ["x300.jpg", "x300.webp"]
    assert parse_output_list("", SETTINGS) == []
    with pytest.raises(BadRequest):
        parse_output_list("x300.jpg,x0.jpg", SETTINGS)
    with pytest.raises(BadRequest):
        parse_output_list(",".join(f"w{n}.jpg" for n in range(1, 22)), SETTINGS)


def test_aliases_of_one_output_are_one_file():
    settings = Settings(default_quality=75)
    specs = [parse_output(name, settings) for name in ("x300.jpg", "300x300.jpg", "x300-q75.jpg",
                                                         "300x300-q75.jpg")]
    assert {spec.file for spec in specs} == {"x300.jpg"}
    assert len(set(specs)) == 1
    assert [spec.name for spec in specs][1] == "300x300.jpg"
    assert parse_output("x300-q80.jpg", settings).file == "x300-q80.jpg"
    assert parse_output("300x200-q75.png", settings).file == "300x200.png"
    assert parse_output("x300.jpg", Settings(default_quality=80)).file == "x300.jpg"
    assert parse_output("x300-q75.jpg", Settings(default_quality=80)).file == "x300-q75.jpg"
    assert parse_output_list("x300.jpg,300x300-q75.jpg,w10.png", settings) == \
        [parse_output("x300.jpg", settings), parse_output("w10.png", settings)]
