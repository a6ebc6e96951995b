"""An output is answered by the output view (web/process.py) alike whether made now or on disk
already, with its refusals and 304s (its metrics and access-log line: tests/system/test_statsd.py).
A request with If-Unmodified-Since (which werkzeug ignores on a GET) shows the answer to compare with."""
from __future__ import annotations

import pytest

from tests import pictures
from tests.helpers import folder_of

FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"


def upload(client) -> str:
    answer = client.post("/p", data=pictures.photo(400, 300))
    assert answer.status_code == 200, answer.text
    return folder_of(answer.json["hash"])


def without_date_and_cache(headers) -> list:
    return [(name, value) for name, value in headers.items() if name not in ("Date", "X-Image-Cache")]


@pytest.mark.parametrize("method, headers, status", [
    ("GET", {}, 200),
    ("HEAD", {}, 200),
    ("GET", {"If-None-Match": "*"}, 304),
    ("GET", {"If-Modified-Since": FUTURE}, 304),
    ("GET", {"If-None-Match": '"another-etag"'}, 200),
    ("GET", {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, 200),
])
def test_outputs_are_answered_as_the_view_answers_them(client, method, headers, status):
    url = upload(client) + "/x120.webp"
    ask = client.get if method == "GET" else client.head
    made = ask(url, headers=headers)
    hit = ask(url, headers=headers)
    view = ask(url, headers={**headers, "If-Unmodified-Since": FUTURE})
    assert [(a.status_code, a.headers["X-Image-Cache"]) for a in (made, hit, view)] == \
        [(status, "made"), (status, "hit"), (status, "hit")]
    for answer in (made, hit):
        assert (answer.status, without_date_and_cache(answer.headers), answer.data) == \
            (view.status, without_date_and_cache(view.headers), view.data)


def test_a_revalidation_with_the_etag_is_a_304(client):
    url = upload(client) + "/w90.jpg"
    first = client.get(url)
    again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert (again.status_code, again.data, again.headers["ETag"]) == (304, b"", first.headers["ETag"])
    assert "Content-Type" not in again.headers and "Content-Length" not in again.headers


def test_ranges_and_preconditions_are_still_answered(client):
    url = upload(client) + "/w80.jpg"
    whole = client.get(url).data
    part = client.get(url, headers={"Range": "bytes=0-9"})
    assert (part.status_code, part.data, part.headers["Content-Range"]) == \
        (206, whole[:10], f"bytes 0-9/{len(whole)}")
    assert client.get(url, headers={"If-Match": '"another-etag"'}).status_code == 412


def test_other_files_of_an_image_are_not_taken_for_outputs(client):
    folder = upload(client)
    assert client.get(folder + "/info.json").json["width"] == 400
    assert client.get(folder + "/original").headers["Content-Type"] == "image/jpeg"
    for path in (folder + "/w100.jpg/extra", folder + "/W100.jpg", folder.upper() + "/w100.jpg"):
        answer = client.get(path)
        assert answer.status_code == 404 and "error" in answer.json


def test_a_hit_must_be_allowed(make_app, tmp_path):
    base = str(tmp_path / "public")
    first = make_app(base_path=base).test_client()
    folder = upload(first)
    for name in ("x120.jpg", "w100.jpg"):
        assert first.get(f"{folder}/{name}").status_code == 200
    restricted = make_app("--allowed_outputs", "w*", base_path=base).test_client()
    refused = restricted.get(folder + "/x120.jpg")
    assert refused.status_code == 403 and "not one of the outputs" in refused.json["error"]
    assert restricted.get(folder + "/w100.jpg").headers["X-Image-Cache"] == "hit"


