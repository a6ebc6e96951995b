"""Every answer of the app carries `nosniff`; originals are downloads; a namespace may be named as a
Flask route would be. Answered by the app in this process (gunicorn's own answers, and requests no
well-behaved client sends: tests/system/test_http_answers.py)."""
from __future__ import annotations

import pytest

from tests import pictures
from tests.helpers import folder_of, image_url


@pytest.fixture
def image(client) -> str:
    """The folder URL path of an uploaded PNG."""
    return folder_of(client.post("/p", data=pictures.solid(30, 20, "red")).json["hash"])


def test_every_answer_says_nosniff(client, image):
    answers = [
        client.get(image + "/x20.png"), client.head(image + "/x20.png"),
        client.get(image + "/x20.png", headers={"If-None-Match": client.get(
            image + "/x20.png").headers["ETag"]}),
        client.get(image + "/info.json"), client.get(image + "/original"),
        client.post(image + "/process?outputs=x10.jpg"),
        client.post("/p", data=pictures.solid(10, 10, "blue")),
        client.get("/status_check"), client.get("/openapi.json"),
        client.get(image + "/x20.bmp"), client.post("/p", data=b"not an image"),
        client.post("/BAD", data=b"x"), client.get("/nothing"),
    ]
    assert {answer.status_code for answer in answers} == {200, 304, 400, 404, 405, 415}
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.request.path


def test_the_original_is_a_download(client, image):
    answer = client.get(image + "/original")
    assert answer.status_code == 200 and answer.data == pictures.solid(30, 20, "red")
    assert answer.headers["Content-Type"] == "image/png"
    h = image.replace("/", "")[1:]
    assert answer.headers["Content-Disposition"] == f"attachment; filename={h}.png"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_a_namespace_named_static_is_served(client):
    info = client.post("/static", data=pictures.solid(12, 10, "green")).json
    answer = client.get(image_url(info["hash"], "info.json", namespace="static"))
    assert answer.status_code == 200 and answer.json["width"] == 12
