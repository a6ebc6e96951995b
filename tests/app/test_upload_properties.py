"""Property tests of the upload endpoint, answered by the app in this process: random bytes and
mutated real images never give a 5xx, never hang (each test has a time limit), and what is accepted
can be resized."""
from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import pictures
from tests.helpers import image_url

FORMATS = ("jpeg", "png", "gif", "webp")
MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n", "gif": b"GIF89a",
         "webp": b"RIFF\x00\x00\x00\x00WEBP"}
PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def originals():
    return {fmt: pictures.photo(64, 48, fmt) for fmt in FORMATS}


@st.composite
def mutations(draw, data: bytes) -> bytes:
    """Flip, drop, repeat and cut bytes of a real image. What is drawn never depends on the bytes
    (a place is drawn as a number and taken modulo the length), so that every replay draws alike."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "drop", "repeat", "cut", "zero"]))
        at = draw(st.integers(0, 2**16)) % max(1, len(data))
        if action == "flip":
            flip = draw(st.integers(1, 255))    # drawn even when a drop emptied the data
            if data:
                data[at] ^= flip
        elif action == "drop":
            del data[at:at + draw(st.integers(1, 64))]
        elif action == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
        elif action == "cut":
            del data[max(at, 1):]
        else:
            data[at:at + 16] = b"\0" * len(data[at:at + 16])
    return bytes(data)


def check(client, body: bytes, as_file: bool) -> None:
    response = client.post("/p?outputs=w40.jpg", data={"file": (io.BytesIO(body), "x.jpg")}) if as_file \
        else client.post("/p?outputs=w40.jpg", data=body)
    assert response.status_code < 500, response.text
    assert response.headers["Content-Type"] == "application/json"
    if response.status_code != 200:
        assert 400 <= response.status_code < 500 and response.json["error"]
        return
    made = client.get(image_url(response.json["hash"], "w20.webp"))
    assert made.status_code < 500, made.text
    if made.status_code == 200:
        assert pictures.decode(made.data).width == 20


@given(st.binary(max_size=2048), st.booleans())
@PROPERTY
def test_random_bytes(client, body, as_file):
    check(client, body, as_file)


@given(st.sampled_from(FORMATS), st.binary(max_size=512))
@PROPERTY
def test_magic_bytes_then_random_bytes(client, fmt, rest):
    check(client, MAGIC[fmt] + rest, False)


@given(st.data())
@PROPERTY
def test_mutated_real_images(client, originals, data):
    fmt = data.draw(st.sampled_from(FORMATS))
    check(client, data.draw(mutations(originals[fmt])), data.draw(st.booleans()))
