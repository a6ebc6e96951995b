"""`.auto` through the block of `images nginx_config`: nginx picks the concrete file from Accept (a
map), sends it from disk once made, else passes to the app; every answer says `Vary: Accept`."""
from __future__ import annotations

import os
import time

import pytest

from imageserver.core.signing import signature as sign
from tests import pictures
from tests.helpers import formats_here, image_url
from tests.nginx_server import NGINX, Nginx

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
OLD_SAFARI = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")


def app_requests(app, path: str, expected: int) -> int:
    """How many requests for `path` the app logged, once `expected` are logged or 5 s have passed (a
    worker writes its access-log line after the answer has gone)."""
    def count() -> int:
        return sum(f'"GET {path} ' in line for line in app.log().splitlines())
    deadline = time.monotonic() + 5
    while count() < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)     # and none more after them
    return count()


def test_auto_through_nginx_is_sent_from_disk_by_accept_with_vary(shared_server, tmp_path):
    app = shared_server
    nginx = Nginx(app, tmp_path)
    try:
        digest = app.post("/p", data=pictures.photo(640, 480)).json()["hash"]
        path = image_url(digest, "x300.auto")
        avif = "avif" if formats_here().can_write("avif") else "webp"
        for accept, ext in ((CHROME, avif), (OLD_SAFARI, "webp"), ("image/avif;q=0,image/webp", "webp")):
            first = nginx.get(path, headers={"Accept": accept})
            assert first.status_code == 200 and first.headers["Vary"] == "Accept"
            assert first.headers["Content-Type"] == f"image/{ext}"
            again = nginx.get(path, headers={"Accept": accept})
            assert again.headers["X-Image-Cache"] == "hit" and again.headers["Vary"] == "Accept"
            assert again.headers["Content-Type"] == f"image/{ext}" and again.content == first.content
            assert again.headers["X-Content-Type-Options"] == "nosniff"
        # The two formats were made by the app once each; every other answer came from disk.
        assert app_requests(app, path, 2) == 2
        # JPEG or PNG: the app chooses (by the source's transparency), behind nginx, with Vary.
        for _ in range(2):
            plain = nginx.get(path, headers={"Accept": "*/*"})
            assert plain.headers["Content-Type"] == "image/jpeg" and plain.headers["Vary"] == "Accept"
            assert pictures.decode(plain.content).width == 300
        assert app_requests(app, path, 4) == 4
        assert nginx.get(image_url(digest, "x300.jpg")).content == plain.content
    finally:
        nginx.stop()


def test_signed_auto_through_nginx_is_checked_by_the_app_and_varies_with_accept(start_server, tmp_path):
    key = "a-signing-key-of-some-length"
    app = start_server("--signing_key", key)
    nginx = Nginx(app, tmp_path, "--signing_key", key)
    try:
        digest = app.post("/p", data=pictures.photo(640, 480)).json()["hash"]
        path = image_url(digest, "x300.auto")
        signature = sign(key, path)
        for accept, kind in (("image/webp", "image/webp"), ("*/*", "image/jpeg")):
            for _ in range(2):      # made by the app, then a hit sent by nginx
                answer = nginx.get(path, params={"sig": signature}, headers={"Accept": accept})
                assert answer.status_code == 200, answer.text
                assert answer.headers["Content-Type"] == kind and answer.headers["Vary"] == "Accept"
                assert pictures.decode(answer.content).width == 300
            assert answer.headers["X-Image-Cache"] == "hit"
        forged = ("A" if signature[0] != "A" else "B") + signature[1:]
        forged = nginx.get(path, params={"sig": forged}, headers={"Accept": "image/webp"})
        assert forged.status_code == 403
    finally:
        nginx.stop()
