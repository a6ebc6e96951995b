"""The HTTP API, answered by the app in this process (Flask's test client)."""
import glob
import hashlib
import io
import os

import pytest

from imageserver.core.paths import ImageKey
from tests import pictures
from tests.helpers import assert_json_error, folder_of
from tests.pictures import decode, near

TYPES = {"jpg": ("image/jpeg", "JPEG"), "png": ("image/png", "PNG"), "gif": ("image/gif", "GIF"),
         "webp": ("image/webp", "WEBP")}


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def upload(client, data: bytes, namespace: str = "p", **params) -> str:
    response = client.post(f"/{namespace}", data=data, query_string=params)
    assert response.status_code == 200, response.text
    return response.json["hash"]


def test_upload_stores_original_and_info_where_the_url_says(client, base_path):
    data = pictures.photo(320, 240, "png")
    h = upload(client, data)
    assert h == hashlib.md5(data).hexdigest()
    folder = base_path + folder_of(h)
    assert read(folder + "/original") == data
    assert read(folder + "/info.json") == client.get(folder_of(h) + "/info.json").data
    info = client.get(folder_of(h) + "/info.json").json
    assert info == {"hash": h, "height": 240, "width": 320, "content_type": "image/png"}
    original = client.get(folder_of(h) + "/original")
    assert original.data == data and original.headers["Content-Type"] == "image/png"


def test_same_bytes_twice_same_answer_and_multipart(client):
    data = pictures.photo(100, 80)
    first = client.post("/avatars", data=data)
    second = client.post("/avatars", data=data)
    multipart = client.post("/avatars", data={"file": (io.BytesIO(data), "me.jpg", "image/jpeg")})
    assert first.status_code == second.status_code == multipart.status_code == 200
    assert first.data == second.data == multipart.data
    assert first.text.startswith('{\n  "hash": ')


@pytest.mark.parametrize("name, size", [
    ("w200.jpg", (200, 150)), ("x200.png", (200, 200)), ("300x200.webp", (300, 200)),
    ("x120-q30.jpg", (120, 120)), ("full_size.gif", (400, 300)), ("full_size.jpg", (400, 300)),
    ("200x300.webp", (200, 300)),
])
def test_every_output_kind(client, base_path, name, size):
    h = upload(client, pictures.photo(400, 300))
    response = client.get(f"{folder_of(h)}/{name}")
    assert response.status_code == 200, response.text
    content_type, fmt = TYPES[name.rsplit(".", 1)[1]]
    assert response.headers["Content-Type"] == content_type
    image = decode(response.data)
    assert (image.width, image.height, image.format) == (*size, fmt)
    assert os.path.exists(f"{base_path}{folder_of(h)}/{name}")


def test_cache_headers_etag_304_and_head(client):
    h = upload(client, pictures.photo(300, 200))
    url = f"{folder_of(h)}/x100.jpg"
    head = client.head(url)
    assert head.status_code == 200 and head.data == b"" and head.headers["X-Image-Cache"] == "made"
    first = client.get(url)
    assert first.headers["X-Image-Cache"] == "hit"
    assert int(head.headers["Content-Length"]) == len(first.data)
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable" or \
        set(first.headers["Cache-Control"].replace(" ", "").split(",")) == \
        {"public", "max-age=31536000", "immutable"}
    etag = first.headers["ETag"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    other = client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == first.data


def test_upload_with_outputs_makes_them_before_replying(client, base_path):
    h = upload(client, pictures.photo(300, 200), outputs="x50.jpg,x50.webp")
    folder = base_path + folder_of(h)
    assert decode(read(folder + "/x50.jpg")).format == "JPEG"
    assert decode(read(folder + "/x50.webp")).format == "WEBP"
    assert client.get(folder_of(h) + "/x50.webp").headers["X-Image-Cache"] == "hit"


def test_process_makes_what_is_missing(client, base_path):
    h = upload(client, pictures.photo(300, 200))
    response = client.post(f"{folder_of(h)}/process", query_string={"outputs": "w100.jpg,x60.png"})
    assert response.status_code == 200 and response.data == b""
    folder = base_path + folder_of(h)
    assert (decode(read(folder + "/w100.jpg")).height,
            decode(read(folder + "/x60.png")).width) == (67, 60)
    before = os.stat(folder + "/w100.jpg").st_mtime_ns
    assert client.post(f"{folder_of(h)}/process", query_string={"outputs": "w100.jpg"}).status_code == 200
    assert os.stat(folder + "/w100.jpg").st_mtime_ns == before
    assert_json_error(client.post(f"{folder_of('0' * 32)}/process", query_string={"outputs": "w1.jpg"}), 404)
    assert_json_error(client.post(f"{folder_of(h)}/process", query_string={"outputs": "w0.jpg"}), 400)


def test_output_of_a_turned_photo_is_upright_and_info_is_as_displayed(client):
    h = upload(client, pictures.oriented_jpeg(60, 30, 6))
    assert client.get(folder_of(h) + "/info.json").json["width"] == 30
    image = decode(client.get(folder_of(h) + "/full_size.png").data)
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
def test_unknown_things_are_404(client, base_path, path):
    assert_json_error(client.get(path), 404)
    assert not os.path.exists(base_path + "/p/000")


@pytest.mark.parametrize("name", [
    "w0.jpg", "x0.jpg", "0x10.jpg", "w1001.jpg", "x2000.jpg", "10x1001.jpg", "x10.bmp", "x10.svg",
    "x10-q0.jpg", "x10-q101.jpg", "w10", "info.jsonx", "w010.jpg",
])
def test_bad_output_names_are_404(client, base_path, name):
    h = upload(client, pictures.photo(50, 50))
    assert_json_error(client.get(f"{folder_of(h)}/{name}"), 404)
    assert not glob.glob(f"{base_path}{folder_of(h)}/{name}*")


def test_bad_uploads(client, base_path):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    mvg = b"push graphic-context\nviewbox 0 0 640 480"
    # Bytes after the JPEG's end: an image no other test uploads.
    jpeg = pictures.photo(100, 100) + b"test_bad_uploads"
    half = jpeg[: len(jpeg) // 2]
    assert_json_error(client.post("/p", data=b""), 400)
    assert_json_error(client.post("/p", data=b"not an image at all"), 415)
    assert_json_error(client.post("/p", data=svg), 415)
    assert_json_error(client.post("/p", data=mvg), 415)
    assert_json_error(client.post("/p", data=half), 422)
    assert_json_error(client.post("/Bad-Name", data=jpeg), 400)
    assert_json_error(client.post("/p", data={"other": (io.BytesIO(jpeg), "a.jpg")}), 400)
    assert_json_error(client.post("/p", data=jpeg, query_string={"outputs": "x0.jpg"}), 400)
    assert_json_error(client.get("/p"), 405)
    assert_json_error(client.post("/p", query_string={"source": "ftp://example.com/a.jpg"}), 400)
    # Nothing was stored for any of them, in any namespace (a folder, whole or not, is something).
    sent = {hashlib.md5(body).hexdigest() for body in (b"", b"not an image at all", svg, mvg, half, jpeg)}
    stored = {ImageKey.from_path(folder, "p").hash
              for folder in glob.glob(f"{base_path}/*/???/???/???/*")}
    assert sent & stored == set()


def test_status_check(client):
    from imageserver import __version__
    response = client.get("/status_check")
    assert response.status_code == 200
    body = response.json
    assert body["version"] == __version__ and body["message"] == "OK"
    assert set(body["posting"]) == {"current", "total_count", "failed_count"}


@pytest.mark.only_loopback
def test_source_url(client, source_server):
    data = pictures.photo(120, 90)
    source_server.routes["/a.jpg"] = (200, {"Content-Type": "image/jpeg"}, data)
    source_server.routes["/moved"] = (302, {"Location": "/a.jpg"}, b"")
    for path in ("/a.jpg", "/moved"):
        response = client.post("/p", query_string={"source": source_server.url + path,
                                                   "outputs": "x30.jpg"})
        assert response.status_code == 200, response.text
        assert response.json["hash"] == hashlib.md5(data).hexdigest()
    source_server.routes["/gone"] = (410, {}, b"gone")
    source_server.routes["/broken"] = (500, {}, b"oops")
    for path in ("/missing.jpg", "/gone", "/broken"):
        assert_json_error(client.post("/p", query_string={"source": source_server.url + path}), 404)
    assert_json_error(client.post("/p", query_string={"source": "http://no-such-host.invalid/a.jpg"}), 404)
    source_server.routes["/text"] = (200, {}, b"hello")
    assert_json_error(client.post("/p", query_string={"source": source_server.url + "/text"}), 415)


@pytest.mark.only_loopback
def test_private_sources_are_refused_by_default(make_app, source_server):
    source_server.routes["/a.jpg"] = (200, {}, pictures.photo(20, 20))
    client = make_app(private_sources=False).test_client()
    for url in (source_server.url + "/a.jpg", "http://localhost:1/a.jpg", "http://169.254.169.254/latest",
                "http://[::1]/a.jpg", "http://10.0.0.1/a.jpg"):
        assert_json_error(client.post("/p", query_string={"source": url}), 403)
    assert source_server.hits == {}


