"""Property tests of the output-name grammar and of signed URLs: one name per output, nothing but
NotFound/BadRequest for anything else, and no name that is a path."""
from __future__ import annotations

import string

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from imageserver.core import signing
from imageserver.core.errors import BadRequest, Forbidden, NotFound
from imageserver.core.names import (
    EXTENSIONS,
    MAXIMUM_OUTPUTS_PER_REQUEST,
    check_allowed,
    parse_output,
    parse_output_list,
)
from imageserver.core.paths import ImageKey
from imageserver.core.settings import Settings

SETTINGS = Settings(maximum_width=1000, maximum_height=1000)
sizes = st.integers(1, 1000)
qualities = st.none() | st.integers(1, 100)
extensions = st.sampled_from(EXTENSIONS)


@st.composite
def output_names(draw):
    """A valid output name and what it must parse to."""
    kind = draw(st.sampled_from(["width", "square", "fill", "full"]))
    width, height = draw(sizes), draw(sizes)
    quality, ext = draw(qualities), draw(extensions)
    stem = {"width": f"w{width}", "square": f"x{width}", "fill": f"{width}x{height}",
            "full": "full_size"}[kind]
    name = stem + (f"-q{quality}" if quality else "") + f".{ext}"
    expected = {"width": ("width", width, None), "square": ("fill", width, width),
                "fill": ("fill", width, height), "full": ("full", None, None)}[kind]
    return name, (*expected, quality, ext)


@given(output_names())
def test_every_valid_name_parses_to_what_it_says(case):
    name, (kind, width, height, quality, ext) = case
    spec = parse_output(name, SETTINGS)
    if quality == SETTINGS.default_quality:
        quality = None    # the default, named or not
    assert (spec.kind, spec.width, spec.height, spec.quality, spec.ext, spec.name) == \
        (kind, width, height, quality, ext, name)


@given(output_names())
def test_every_alias_has_one_canonical_name_the_shortest(case):
    name, _ = case
    spec = parse_output(name, SETTINGS)
    canonical = parse_output(spec.file, SETTINGS)
    assert canonical == spec and canonical.file == spec.file
    assert len(spec.file) <= len(name)
    assert f"-q{SETTINGS.default_quality}." not in spec.file
    if spec.kind == "fill" and spec.width == spec.height:
        assert spec.file.startswith("x")


@given(st.text(alphabet=string.printable + "éü/\\\x00", max_size=60))
@hypothesis_settings(max_examples=400)
def test_anything_else_is_not_found_and_nothing_is_a_path(text):
    try:
        spec = parse_output(text, SETTINGS)
    except NotFound:
        return
    assert spec.name == text
    assert "/" not in text and "\\" not in text and not text.startswith(".") and "\x00" not in text


@given(st.integers(0, 9), st.integers(1, 999))
def test_a_leading_zero_is_never_a_second_name_for_an_output(zeros, number):
    padded = "0" * (zeros + 1) + str(number)
    for name in (f"w{padded}.jpg", f"x{padded}.png", f"{padded}x10.webp", f"w10-q{padded}.jpg"):
        try:
            parse_output(name, SETTINGS)
        except NotFound:
            continue
        raise AssertionError(f"{name} parsed")


@given(st.lists(output_names(), max_size=30))
def test_output_lists_are_bounded(cases):
    names = list(dict.fromkeys(name for name, _ in cases))
    try:
        specs = parse_output_list(",".join(names), SETTINGS)
    except BadRequest:
        assert len(names) > MAXIMUM_OUTPUTS_PER_REQUEST
        return
    files = list(dict.fromkeys(parse_output(name, SETTINGS).file for name in names))
    assert [spec.file for spec in specs] == files


@given(st.text(alphabet="wxq-0123456789.,jpgfulsize_ ", max_size=300))
def test_any_output_list_is_twenty_names_at_most_or_a_bad_request(text):
    try:
        specs = parse_output_list(text, SETTINGS)
    except BadRequest:
        return
    assert len(specs) <= MAXIMUM_OUTPUTS_PER_REQUEST


@given(output_names())
def test_allowed_outputs_are_matched_as_patterns(case):
    name, _ = case
    spec = parse_output(name, SETTINGS)
    only_webp = Settings(allowed_outputs=("*.webp",))
    if name.endswith(".webp"):
        check_allowed(spec, only_webp)
    else:
        try:
            check_allowed(spec, only_webp)
        except Forbidden:
            return
        raise AssertionError(f"{name} allowed")


paths = st.builds(lambda ns, h, name: f"/{ImageKey(ns, h).folder}/{name}",
                  st.from_regex(r"[a-z0-9_]{1,64}", fullmatch=True),
                  st.from_regex(r"[0-9a-f]{32}", fullmatch=True), output_names().map(lambda c: c[0]))


@given(paths, st.text(min_size=16, max_size=40), st.data())
def test_a_signature_signs_one_path_only(path, key, data):
    signed = signing.sign_url(key, path)
    assert signed.startswith(path + "?sig=")
    given_sig = signed.split("?sig=", 1)[1]
    signing.check(key, signing.message(path), given_sig)
    other = data.draw(paths.filter(lambda p: p != path))
    for text, sig in ((other, given_sig), (path, given_sig[:-1] + ("A" if given_sig[-1] != "A" else "B")),
                      (path, "")):
        try:
            signing.check(key, signing.message(text), sig)
        except Forbidden:
            continue
        raise AssertionError(f"{text} accepted {sig}")


def test_sign_keeps_the_origin_and_other_parameters_of_a_whole_url():
    key = "k" * 16
    signed = signing.sign_url(key, "https://img.example.com/p/process?outputs=x1.jpg&sig=old")
    assert signed == ("https://img.example.com/p/process?outputs=x1.jpg&sig="
                      + signing.signature(key, "/p/process?outputs=x1.jpg"))
