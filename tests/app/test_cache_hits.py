"""Outputs are answered before Flask (web/hits.py): exactly as the output view answers them, with its
refusals, 304s, metrics and access-log line. What the layer leaves to the app (here a request with
If-Unmodified-Since) shows the view's answer to compare with."""
from __future__ import annotations

import pytest

from imageserver import signing
from tests import pictures
from tests.helpers import folder_of, wait_until

SIGNING_KEY = "a-key-of-at-least-16-characters"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"


def upload(server) -> str:
    answer = server.post("/p", data=pictures.photo(400, 300))
    assert answer.status_code == 200, answer.text
    return folder_of(answer.json()["hash"])


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
def test_outputs_are_answered_as_the_view_answers_them(shared_server, method, headers, status):
    url = upload(shared_server) + "/x120.webp"
    ask = shared_server.get if method == "GET" else shared_server.head
    made = ask(url, headers=headers)
    hit = ask(url, headers=headers)
    # If-Unmodified-Since (which werkzeug ignores on a GET) sends the request on to the Flask view.
    view = ask(url, headers={**headers, "If-Unmodified-Since": FUTURE})
    assert [(a.status_code, a.headers["X-Image-Cache"]) for a in (made, hit, view)] == \
        [(status, "made"), (status, "hit"), (status, "hit")]
    for answer in (made, hit):
        assert (answer.reason, without_date_and_cache(answer.headers), answer.content) == \
            (view.reason, without_date_and_cache(view.headers), view.content)


def test_a_revalidation_with_the_etag_is_a_304(shared_server):
    url = upload(shared_server) + "/w90.jpg"
    first = shared_server.get(url)
    again = shared_server.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", first.headers["ETag"])
    assert "Content-Type" not in again.headers and "Content-Length" not in again.headers


def test_ranges_and_preconditions_are_still_answered(shared_server):
    url = upload(shared_server) + "/w80.jpg"
    whole = shared_server.get(url).content
    part = shared_server.get(url, headers={"Range": "bytes=0-9"})
    assert (part.status_code, part.content, part.headers["Content-Range"]) == \
        (206, whole[:10], f"bytes 0-9/{len(whole)}")
    assert shared_server.get(url, headers={"If-Match": '"another-etag"'}).status_code == 412


def test_other_files_of_an_image_are_not_taken_for_outputs(shared_server):
    folder = upload(shared_server)
    assert shared_server.get(folder + "/info.json").json()["width"] == 400
    assert shared_server.get(folder + "/original").headers["Content-Type"] == "image/jpeg"
    for path in (folder + "/w100.jpg/extra", folder + "/W100.jpg", folder.upper() + "/w100.jpg"):
        answer = shared_server.get(path)
        assert answer.status_code == 404 and "error" in answer.json()


def test_a_hit_needs_the_signature_the_view_needs(start_server, statsd_listener):
    server = start_server("--signing_key", SIGNING_KEY, "--statsd_port", str(statsd_listener.port))
    path = upload(server) + "/x100.jpg"
    signed = {"sig": signing.signature(SIGNING_KEY, path)}
    assert server.get(path, params=signed).headers["X-Image-Cache"] == "made"
    assert server.get(path, params=signed).headers["X-Image-Cache"] == "hit"
    statsd_listener.wait_for_count("image_server.processing.version.noop:1|c", 1)
    statsd_listener.clear()
    unsigned = server.get(path)
    badly_signed = server.get(path, params={"sig": signing.signature(SIGNING_KEY, path + "x")})
    other_sig = server.get(path, params={"sig": "x", "sig2": signed["sig"]})
    assert [a.status_code for a in (unsigned, badly_signed, other_sig)] == [403, 403, 403]
    assert "signed URL" in unsigned.json()["error"]
    assert "does not match" in badly_signed.json()["error"]
    assert "X-Image-Cache" not in unsigned.headers
    statsd_listener.wait_for_count("image_server.image_request_fail:1|c", 3)
    assert not statsd_listener.has("image_server.processing.version.noop")


def test_a_hit_must_be_allowed(start_server, tmp_path):
    base = str(tmp_path / "public")
    first = start_server(base_path=base)
    folder = upload(first)
    for name in ("x120.jpg", "w100.jpg"):
        assert first.get(f"{folder}/{name}").status_code == 200
    first.stop()
    restricted = start_server("--allowed_outputs", "w*", base_path=base)
    refused = restricted.get(folder + "/x120.jpg")
    assert refused.status_code == 403 and "not one of the outputs" in refused.json()["error"]
    assert restricted.get(folder + "/w100.jpg").headers["X-Image-Cache"] == "hit"


def test_a_hit_is_counted_and_logged(start_server, statsd_listener):
    server = start_server("--statsd_port", str(statsd_listener.port))
    url = upload(server) + "/x64.jpg"
    made = server.get(url)
    statsd_listener.wait_for("image_server.image_request:1|c")
    statsd_listener.clear()
    server.get(url)
    server.get(url, headers={"If-None-Match": made.headers["ETag"]})
    server.head(url)
    statsd_listener.wait_for_count("image_server.processing.version.noop:1|c", 3)
    assert not statsd_listener.has("image_server.image_request")
    # gunicorn writes a request's line after its reply.
    wait_until(lambda: server.log().count("cache=hit") >= 3, "three hits logged", seconds=20)
    log = server.log()
    size = made.headers["Content-Length"]
    assert f'"GET {url} HTTP/1.1" 200 {size} ' in log and f'"HEAD {url} HTTP/1.1" 200 {size} ' in log
    assert f'"GET {url} HTTP/1.1" 304 - ' in log
    assert log.count(" cache=hit") == 3
