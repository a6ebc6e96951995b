"""The HTTP API against a real `images server` (gunicorn, 2 workers) over real sockets."""
import glob
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from imageserver.paths import ImageKey
from tests import pictures
from tests.helpers import assert_json_error, folder_of
from tests.pictures import decode, near

TYPES = {"jpg": ("image/jpeg", "JPEG"), "png": ("image/png", "PNG"), "gif": ("image/gif", "GIF"),
         "webp": ("image/webp", "WEBP")}


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def upload(server, data: bytes, namespace: str = "p", **params) -> str:
    response = server.post(f"/{namespace}", data=data, params=params)
    assert response.status_code == 200, response.text
    return response.json()["hash"]


def test_upload_stores_original_and_info_where_the_url_says(shared_server):
    data = pictures.photo(320, 240, "png")
    h = upload(shared_server, data)
    assert h == hashlib.md5(data).hexdigest()
    folder = shared_server.base_path + folder_of(h)
    assert read(folder + "/original") == data
    assert read(folder + "/info.json") == shared_server.get(folder_of(h) + "/info.json").content
    info = shared_server.get(folder_of(h) + "/info.json").json()
    assert info == {"hash": h, "height": 240, "width": 320, "content_type": "image/png"}
    original = shared_server.get(folder_of(h) + "/original")
    assert original.content == data and original.headers["Content-Type"] == "image/png"


def test_same_bytes_twice_same_answer_and_multipart(shared_server):
    data = pictures.photo(100, 80)
    first = shared_server.post("/avatars", data=data)
    second = shared_server.post("/avatars", data=data)
    multipart = shared_server.post("/avatars", files={"file": ("me.jpg", data, "image/jpeg")})
    assert first.status_code == second.status_code == multipart.status_code == 200
    assert first.content == second.content == multipart.content
    assert first.text.startswith('{\n  "hash": ')


@pytest.mark.parametrize("name, size", [
    ("w200.jpg", (200, 150)), ("x200.png", (200, 200)), ("300x200.webp", (300, 200)),
    ("x120-q30.jpg", (120, 120)), ("full_size.gif", (400, 300)), ("full_size.jpg", (400, 300)),
    ("200x300.webp", (200, 300)),
])
def test_every_output_kind(shared_server, name, size):
    h = upload(shared_server, pictures.photo(400, 300))
    response = shared_server.get(f"{folder_of(h)}/{name}")
    assert response.status_code == 200, response.text
    content_type, fmt = TYPES[name.rsplit(".", 1)[1]]
    assert response.headers["Content-Type"] == content_type
    image = decode(response.content)
    assert (image.width, image.height, image.format) == (*size, fmt)
    assert os.path.exists(f"{shared_server.base_path}{folder_of(h)}/{name}")


def test_cache_headers_etag_304_and_head(shared_server):
    h = upload(shared_server, pictures.photo(300, 200))
    url = f"{folder_of(h)}/x100.jpg"
    head = shared_server.head(url)
    assert head.status_code == 200 and head.content == b"" and head.headers["X-Image-Cache"] == "made"
    first = shared_server.get(url)
    assert first.headers["X-Image-Cache"] == "hit"
    assert int(head.headers["Content-Length"]) == len(first.content)
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable" or \
        set(first.headers["Cache-Control"].replace(" ", "").split(",")) == \
        {"public", "max-age=31536000", "immutable"}
    etag = first.headers["ETag"]
    again = shared_server.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = shared_server.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content


def test_upload_with_outputs_makes_them_before_replying(shared_server):
    h = upload(shared_server, pictures.photo(300, 200), outputs="x50.jpg,x50.webp")
    folder = shared_server.base_path + folder_of(h)
    assert decode(read(folder + "/x50.jpg")).format == "JPEG"
    assert decode(read(folder + "/x50.webp")).format == "WEBP"
    assert shared_server.get(folder_of(h) + "/x50.webp").headers["X-Image-Cache"] == "hit"


def test_process_makes_what_is_missing(shared_server):
    h = upload(shared_server, pictures.photo(300, 200))
    response = shared_server.post(f"{folder_of(h)}/process", params={"outputs": "w100.jpg,x60.png"})
    assert response.status_code == 200 and response.content == b""
    folder = shared_server.base_path + folder_of(h)
    assert (decode(read(folder + "/w100.jpg")).height,
            decode(read(folder + "/x60.png")).width) == (67, 60)
    before = os.stat(folder + "/w100.jpg").st_mtime_ns
    assert shared_server.post(f"{folder_of(h)}/process", params={"outputs": "w100.jpg"}).status_code == 200
    assert os.stat(folder + "/w100.jpg").st_mtime_ns == before
    assert_json_error(shared_server.post(f"{folder_of('0' * 32)}/process", params={"outputs": "w1.jpg"}), 404)
    assert_json_error(shared_server.post(f"{folder_of(h)}/process", params={"outputs": "w0.jpg"}), 400)


def test_output_of_a_turned_photo_is_upright_and_info_is_as_displayed(shared_server):
    h = upload(shared_server, pictures.oriented_jpeg(60, 30, 6))
    assert shared_server.get(folder_of(h) + "/info.json").json()["width"] == 30
    image = decode(shared_server.get(folder_of(h) + "/full_size.png").content)
    assert (image.width, image.height) == (30, 60)
    assert near(image.pixel(15, 5), (255, 0, 0, 255)) and near(image.pixel(15, 55), (0, 0, 255, 255))


@pytest.mark.parametrize("path", [
    "/p/000/000/000/00000000000000000000000/info.json",
    "/p/000/000/000/00000000000000000000000/x100.jpg",
    "/p/000/000/000/00000000000000000000000/original",
    "/p/6e0/072/682/e66287b662827da75b244a/x100.jpg",
    "/p/6E0/072/682/e66287b662827da75b244a3/x100.jpg",
    "/nothing/here",
])
def test_unknown_things_are_404(shared_server, path):
    assert_json_error(shared_server.get(path), 404)
    assert not os.path.exists(shared_server.base_path + "/p/000")


@pytest.mark.parametrize("name", [
    "w0.jpg", "x0.jpg", "0x10.jpg", "w1001.jpg", "x2000.jpg", "10x1001.jpg", "x10.bmp", "x10.svg",
    "x10-q0.jpg", "x10-q101.jpg", "w10", "info.jsonx", "w010.jpg",
])
def test_bad_output_names_are_404(shared_server, name):
    h = upload(shared_server, pictures.photo(50, 50))
    assert_json_error(shared_server.get(f"{folder_of(h)}/{name}"), 404)
    assert not glob.glob(f"{shared_server.base_path}{folder_of(h)}/{name}*")


def test_bad_uploads(shared_server):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    mvg = b"push graphic-context\nviewbox 0 0 640 480"
    # Bytes after the JPEG's end: an image no other test of the shared server uploads.
    jpeg = pictures.photo(100, 100) + b"test_bad_uploads"
    half = jpeg[: len(jpeg) // 2]
    assert_json_error(shared_server.post("/p", data=b""), 400)
    assert_json_error(shared_server.post("/p", data=b"not an image at all"), 415)
    assert_json_error(shared_server.post("/p", data=svg), 415)
    assert_json_error(shared_server.post("/p", data=mvg), 415)
    assert_json_error(shared_server.post("/p", data=half), 422)
    assert_json_error(shared_server.post("/Bad-Name", data=jpeg), 400)
    assert_json_error(shared_server.post("/p", files={"other": ("a.jpg", jpeg)}), 400)
    assert_json_error(shared_server.post("/p", data=jpeg, params={"outputs": "x0.jpg"}), 400)
    assert_json_error(shared_server.get("/p"), 405)
    assert_json_error(shared_server.post("/p", params={"source": "ftp://example.com/a.jpg"}), 400)
    # Nothing was stored for any of them, in any namespace (a folder, whole or not, is something).
    sent = {hashlib.md5(body).hexdigest() for body in (b"", b"not an image at all", svg, mvg, half, jpeg)}
    stored = {ImageKey.from_path(folder, "p").hash
              for folder in glob.glob(f"{shared_server.base_path}/*/???/???/???/*")}
    assert sent & stored == set()


def test_status_check(shared_server):
    from imageserver import __version__
    response = shared_server.get("/status_check")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == __version__ and body["message"] == "OK"
    assert set(body["posting"]) == {"current", "total_count", "failed_count"}


def test_status_check_is_501_without_imagemagick(start_server):
    # A `wand` that fails to import as the real one does when MagickWand is not installed.
    fake = os.path.join(os.path.dirname(__file__), "no_imagemagick")
    server = start_server(env={"PYTHONPATH": fake})
    response = server.get("/status_check")
    assert response.status_code == 501
    assert "ImageMagick" in response.json()["message"]
    assert_json_error(server.post("/p", data=pictures.photo(20, 20)), 501)


@pytest.mark.only_loopback
def test_source_url(shared_server, source_server):
    data = pictures.photo(120, 90)
    source_server.routes["/a.jpg"] = (200, {"Content-Type": "image/jpeg"}, data)
    source_server.routes["/moved"] = (302, {"Location": "/a.jpg"}, b"")
    for path in ("/a.jpg", "/moved"):
        response = shared_server.post("/p", params={"source": source_server.url + path,
                                                    "outputs": "x30.jpg"})
        assert response.status_code == 200, response.text
        assert response.json()["hash"] == hashlib.md5(data).hexdigest()
    source_server.routes["/gone"] = (410, {}, b"gone")
    source_server.routes["/broken"] = (500, {}, b"oops")
    for path in ("/missing.jpg", "/gone", "/broken"):
        assert_json_error(shared_server.post("/p", params={"source": source_server.url + path}), 404)
    assert_json_error(shared_server.post("/p", params={"source": "http://no-such-host.invalid/a.jpg"}), 404)
    source_server.routes["/text"] = (200, {}, b"hello")
    assert_json_error(shared_server.post("/p", params={"source": source_server.url + "/text"}), 415)


@pytest.mark.only_loopback
def test_private_sources_are_refused_by_default(start_server, source_server):
    source_server.routes["/a.jpg"] = (200, {}, pictures.photo(20, 20))
    server = start_server(private_sources=False)
    for url in (source_server.url + "/a.jpg", "http://localhost:1/a.jpg", "http://169.254.169.254/latest",
                "http://[::1]/a.jpg", "http://10.0.0.1/a.jpg"):
        assert_json_error(server.post("/p", params={"source": url}), 403)
    assert source_server.hits == {}


def test_one_output_is_made_once_however_many_ask(shared_server):
    h = upload(shared_server, pictures.photo(1600, 1200))
    url = f"{shared_server.url}{folder_of(h)}/x500.webp"
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: requests.get(url, timeout=60), range(16)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert [r.headers["X-Image-Cache"] for r in responses].count("made") == 1
    leftovers = [n for n in os.listdir(f"{shared_server.base_path}{folder_of(h)}") if n.startswith(".")]
    assert leftovers == []


def test_one_source_is_downloaded_once_however_many_ask(shared_server, source_server):
    import time

    def slow_body():
        time.sleep(0.5)
        return data

    data = pictures.photo(200, 150)
    source_server.routes["/slow.jpg"] = (200, {}, slow_body)
    url = source_server.url + "/slow.jpg"
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: shared_server.post("/p", params={"source": url}), range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert source_server.hits["/slow.jpg"] == 1


def test_status_check_counts_uploads_across_workers(start_server):
    server = start_server()
    for _ in range(6):
        assert server.post("/p", data=pictures.photo(30, 30)).status_code == 200
    assert server.post("/p", data=b"nope").status_code == 415
    counts = {tuple(server.get("/status_check").json()["posting"].values()) for _ in range(6)}
    assert counts == {(0, 7, 1)}
