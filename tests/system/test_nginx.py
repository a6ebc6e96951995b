"""Debian's nginx with the block from `images nginx_config` in front of a real `images server`."""
import os
import subprocess

import pytest
import requests

from imageserver.core import signing
from imageserver.core.paths import ACCEL_LOCATION, CACHE_CONTROL, ImageKey
from tests import pictures
from tests.helpers import IMAGES, assert_raw_json_error, folder_of, image_url, raw, wait_until
from tests.nginx_server import NGINX, Nginx, nginx_conf

LIMIT = 200_000
HIT_HEADERS = ("Content-Type", "Content-Length", "Cache-Control", "X-Content-Type-Options",
               "Content-Disposition", "X-Image-Cache", "X-Accel-Redirect")

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")


@pytest.fixture
def app_and_nginx(start_server, tmp_path):
    yield from nginx_in_front(start_server, tmp_path)


def nginx_in_front(start_server, tmp_path, *flags: str):
    """An app started with `flags`, and nginx in front of it with the block for the same flags."""
    app = start_server("--maximum_upload_bytes", str(LIMIT), *flags)
    nginx = Nginx(app, tmp_path, "--maximum_upload_bytes", str(LIMIT), *flags)
    try:
        yield app, nginx
    finally:
        nginx.stop()


def app_requests(app, path: str) -> int:
    """How many requests for `path` reached the app, from its access log."""
    return sum(f'"GET {path} ' in line for line in app.log().splitlines())


def app_line(app, path: str, index: int) -> str:
    """The app's access-log line for request `index` for `path` (written after the reply)."""
    def logged():
        lines = [line for line in app.log().splitlines() if f'"GET {path} ' in line]
        return lines[index] if len(lines) > index else None

    return wait_until(logged, f"the app logged request {index} for {path}", seconds=10)


def nginx_line(nginx: Nginx, path: str, index: int) -> str:
    def logged():
        lines = [line for line in nginx.access_log() if f'"GET {path} ' in line]
        return lines[index] if len(lines) > index else None

    return wait_until(logged, f"nginx logged request {index} for {path}", seconds=10)


def test_made_by_the_app_once_then_served_by_nginx(app_and_nginx, photo_jpeg):
    app, nginx = app_and_nginx
    posted = nginx.post("/p", data=photo_jpeg)
    assert posted.status_code == 200, posted.text
    info = posted.json()
    folder = folder_of(info["hash"])

    for name, content_type in (("x100.jpg", "image/jpeg"), ("w80.webp", "image/webp"),
                               ("60x40.png", "image/png"), ("x30.gif", "image/gif")):
        path = f"{folder}/{name}"
        first = nginx.get(path)
        assert first.status_code == 200, first.text
        assert first.headers["X-Image-Cache"] == "made"
        assert "upstream=127.0.0.1:" in nginx_line(nginx, path, 0)
        second = nginx.get(path)
        assert second.status_code == 200
        assert "cache=hit upstream=-" in nginx_line(nginx, path, 1)
        assert second.content == first.content
        assert second.headers["Content-Type"] == first.headers["Content-Type"] == content_type
        assert second.headers["Cache-Control"] == first.headers["Cache-Control"]
        assert second.headers["X-Image-Cache"] == "hit"
        assert second.headers["Content-Disposition"] == first.headers["Content-Disposition"] == \
            f"inline; filename={name}"
        assert pictures.decode(second.content).format == content_type.split("/")[1].upper()
        # The app saw the first request only.
        assert app.get("/status_check").status_code == 200
        assert app_requests(app, path) == 1

    info_json = nginx.get(folder + "/info.json")
    assert info_json.headers["Content-Type"] == "application/json"
    assert info_json.json() == info
    original = nginx.get(folder + "/original")
    assert original.content == photo_jpeg and original.headers["Content-Type"] == "image/jpeg"


def test_errors_and_uploads_pass_through_unchanged(app_and_nginx, photo_jpeg):
    app, nginx = app_and_nginx
    unknown = "/p/000/000/000/00000000000000000000000"
    for method, path, kwargs in (("GET", unknown + "/x100.jpg", {}),
                                 ("GET", unknown + "/info.json", {}),
                                 ("GET", unknown + "/x100.bmp", {}),
                                 ("POST", "/p", {"data": b"not an image"}),
                                 ("POST", "/P", {"data": photo_jpeg}),
                                 ("POST", "/p?outputs=x99999.jpg", {"data": photo_jpeg})):
        direct = requests.request(method, app.url + path, timeout=60, **kwargs)
        proxied = requests.request(method, nginx.url + path, timeout=60, **kwargs)
        assert (proxied.status_code, proxied.content) == (direct.status_code, direct.content), path
        assert proxied.headers["Content-Type"] == direct.headers["Content-Type"]

    assert nginx.get("/status_check").json()["message"] == "OK"
    multipart = nginx.post("/p?outputs=x40.jpg", files={"file": ("a.jpg", photo_jpeg)})
    assert multipart.status_code == 200, multipart.text
    assert multipart.json() == app.post("/p", data=photo_jpeg).json()


def test_nginx_refuses_what_the_app_would_and_never_serves_dot_files(app_and_nginx):
    app, nginx = app_and_nginx
    too_big = nginx.post("/p", data=b"\xff" * (LIMIT + 1))
    assert too_big.status_code == 413 and "error" in too_big.json()
    assert app.post("/p", data=b"\xff" * (LIMIT + 1)).status_code == 413

    posted = nginx.post("/p", data=pictures.solid(50, 50, "green", "png")).json()
    key = ImageKey("p", posted["hash"])
    folder = key.folder
    os.makedirs(key.local_folder(app.base_path), exist_ok=True)
    for name in (".x100.jpg.lock", ".x100.jpg.abc.tmp"):
        with open(key.local_file(app.base_path, name), "wb") as f:
            f.write(b"half an image")
        got = nginx.get(f"/{folder}/{name}")
        assert got.status_code == 404 and got.json() == {"error": "not found"}
        assert b"half" not in got.content
    assert nginx.get("/.imageserver/sources/downloads").status_code == 404

    made = f"/{folder}/x20.jpg"
    assert nginx.get(made).headers["X-Image-Cache"] == "made"
    direct, proxied = app.post(made), nginx.post(made)
    assert (proxied.status_code, proxied.json()) == (direct.status_code, direct.json())
    assert proxied.status_code == 405

    app.stop()
    gone = nginx.get(f"/{folder}/x21.jpg")
    assert gone.status_code == 502 and "error" in gone.json()


def test_every_answer_says_nosniff_once_and_the_original_is_a_download(app_and_nginx, photo_jpeg):
    app, nginx = app_and_nginx
    h = nginx.post("/p", data=photo_jpeg).json()["hash"]
    folder = folder_of(h)
    os.makedirs(app.base_path + folder, exist_ok=True)
    with open(app.base_path + folder + "/.x1.jpg.lock", "wb"):
        pass
    answers = {
        "made by the app": nginx.get(folder + "/x50.jpg"),
        "sent from disk": nginx.get(folder + "/x50.jpg"),
        "info from disk": nginx.get(folder + "/info.json"),
        "original": nginx.get(folder + "/original"),
        "app error": nginx.get(folder + "/x50.bmp"),
        "dot file": nginx.get(folder + "/.x1.jpg.lock"),
        "too large": nginx.post("/p", data=b"\xff" * (LIMIT + 1)),
        "not allowed": nginx.post(folder + "/x50.jpg"),
    }
    assert answers["sent from disk"].headers["X-Image-Cache"] == "hit"
    assert [answer.status_code for answer in answers.values()] == [200, 200, 200, 200, 404, 404, 413, 405]
    for what, answer in answers.items():
        assert answer.headers["X-Content-Type-Options"] == "nosniff", what
    original = answers["original"]
    assert original.content == photo_jpeg
    assert original.headers["Content-Disposition"] == f"attachment; filename={h}.jpeg"
    app.stop()
    gone = nginx.get(folder + "/x60.jpg")
    assert gone.status_code == 502 and gone.headers["X-Content-Type-Options"] == "nosniff"


def test_the_block_passes_nginx_own_check(tmp_path):
    block = subprocess.run([IMAGES, "--listen", "0.0.0.0", "--port", "7123", "--extensions", "jpg,webp",
                            "--local_base_path", str(tmp_path / "public"), "nginx_config"],
                           capture_output=True, text=True, check=True).stdout
    assert "proxy_pass http://127.0.0.1:7123;" in block
    assert "(jpg|webp)" in block and "image/png" not in block
    assert f'root "{tmp_path}/public";' in block
    assert "listen 80;" in block
    (tmp_path / "imageserver.conf").write_text(block)
    (tmp_path / "nginx.conf").write_text(nginx_conf(tmp_path))
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", "nginx.conf",
                            "-e", str(tmp_path / "error.log")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_with_a_signing_key_nginx_never_sends_an_output_unsigned(start_server, tmp_path):
    key = "a-signing-key-of-some-length"
    for app, nginx in nginx_in_front(start_server, tmp_path, "--signing_key", key):
        h = nginx.post("/p", data=pictures.photo(120, 90)).json()["hash"]
        path = image_url(h, "x40.jpg")
        signed = subprocess.run([IMAGES, "--signing_key", key, "sign", path], capture_output=True,
                                text=True, check=True).stdout.strip()
        first = nginx.get(signed)
        assert first.status_code == 200 and pictures.decode(first.content).width == 40
        # On disk now, and still refused without the signature.
        assert os.path.exists(app.base_path + path)
        assert nginx.get(path).status_code == 403
        assert nginx.get(signed).content == first.content


def test_with_a_signing_key_the_app_checks_and_nginx_sends_the_file(start_server, tmp_path):
    key = "a-signing-key-of-some-length"
    for app, nginx in nginx_in_front(start_server, tmp_path, "--signing_key", key):
        folder = folder_of(nginx.post("/p", data=pictures.photo(120, 90)).json()["hash"])
        path, alias = f"{folder}/x40.jpg", f"{folder}/x40-q75.jpg"
        made = nginx.get(signing.sign_url(key, path))
        assert made.headers["X-Image-Cache"] == "made"
        size = len(made.content)
        for name, url, index in (("x40.jpg", path, 1), ("x40-q75.jpg", alias, 0)):
            signed = signing.sign_url(key, url)
            hit = nginx.get(signed)
            assert hit.status_code == 200 and hit.content == made.content, hit.text
            assert {header: hit.headers.get(header) for header in HIT_HEADERS} == {
                "Content-Type": "image/jpeg", "Content-Length": str(size),
                "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff",
                "Content-Disposition": f"inline; filename={name}", "X-Image-Cache": "hit",
                "X-Accel-Redirect": None}
            # The app checked it (its line: no body), nginx sent the bytes (its line: all of them).
            assert app_line(app, signed, index).split('" ')[1].startswith("200 0 ")
            assert f"200 {size} " in nginx_line(nginx, signed, index)
            assert "cache=hit upstream=127.0.0.1:" in nginx_line(nginx, signed, index)
            again = nginx.get(signed, headers={"If-None-Match": hit.headers["ETag"]})
            assert (again.status_code, again.content) == (304, b"")
            part = nginx.get(signed, headers={"Range": "bytes=0-9"})
            assert (part.status_code, part.content) == (206, made.content[:10])
            head = requests.head(nginx.url + signed, timeout=60)
            assert (head.status_code, head.content, head.headers["Content-Length"]) == \
                (200, b"", str(size))

        for refused in (nginx.get(path), nginx.get(path + "?sig="),
                        nginx.get(signing.sign_url(key, path)[:-2] + "xx")):
            assert refused.status_code == 403 and "error" in refused.json()
            assert refused.headers["X-Content-Type-Options"] == "nosniff"
        # The internal location is not a client's to ask for.
        hidden = nginx.get(f"{ACCEL_LOCATION}/{folder.strip('/')}/x40.jpg")
        assert hidden.status_code == 404 and hidden.json() == {"error": "not found"}

        # A client talking to the app gets the file itself; one that sends nginx's header gets the
        # redirect, to the output's own file in the store and nowhere else.
        direct = app.get(signing.sign_url(key, alias))
        assert direct.content == made.content and "X-Accel-Redirect" not in direct.headers
        posing = app.get(signing.sign_url(key, alias), headers={"X-Image-Accel": "on"})
        assert (posing.content, posing.headers["X-Accel-Redirect"]) == \
            (b"", f"{ACCEL_LOCATION}{folder}/x40.jpg")


def test_nginx_refuses_broken_requests_in_json(app_and_nginx):
    app, nginx = app_and_nginx
    for request, expected in [(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
                              (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
                              (b"GET /\x01\x02 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400)]:
        assert_raw_json_error(*raw(nginx.url, request), expected)


def test_an_alias_goes_to_the_app_which_answers_from_the_canonical_file(app_and_nginx, photo_jpeg):
    app, nginx = app_and_nginx
    folder = folder_of(nginx.post("/p", data=photo_jpeg).json()["hash"])
    canonical = nginx.get(f"{folder}/x50.jpg")
    assert canonical.headers["X-Image-Cache"] == "made"
    for alias in ("50x50.jpg", "x50-q75.jpg", "50x50-q75.jpg"):
        answer = nginx.get(f"{folder}/{alias}")
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Image-Cache"] == "hit"
        assert answer.headers["Content-Disposition"] == f"inline; filename={alias}"
        assert answer.content == canonical.content
        # The app found the file (x50.jpg), nginx sent it.
        assert app_line(app, f"{folder}/{alias}", 0).split('" ')[1].startswith("200 0 ")
        assert app_requests(app, f"{folder}/{alias}") == 1
    files = os.listdir(os.path.join(app.base_path, *folder.strip("/").split("/")))
    assert not any(name.endswith(".jpg") and name != "x50.jpg" for name in files), files
    assert ".variants" in files
    assert nginx.get(f"{folder}/.variants").status_code == 404
