"""Refusals that come from the settings, answered by the app in this process: pixel and frame
limits, sources on private addresses or hosts not allowed, outputs not allowed, URLs not signed.
Each is a JSON 4xx. (Hostile input against a real server: tests/system/test_hardening.py.)"""
from __future__ import annotations

import os
import subprocess

import pytest

from imageserver.core import signing
from tests import hostile, pictures
from tests.helpers import IMAGES, assert_json_error, folder_of

SIGNING_KEY = "a-test-key-of-some-length"


def test_limits_come_from_the_settings(make_app):
    client = make_app("--maximum_source_pixels", "10000", "--maximum_source_side", "150",
                      "--maximum_frames", "5").test_client()
    assert client.post("/p", data=pictures.solid(100, 100, "red")).status_code == 200
    assert_json_error(client.post("/p", data=pictures.solid(101, 100, "red")), 413)
    assert_json_error(client.post("/p", data=pictures.solid(160, 10, "red")), 413)
    assert client.post("/p", data=hostile.gif_frames(5, 2, 2)).status_code == 200
    assert_json_error(client.post("/p", data=hostile.gif_frames(6, 2, 2)), 413)
    # All frames together: at most the pixels of one still image.
    assert client.post("/p", data=hostile.gif_frames(3, 55, 55)).status_code == 200
    assert_json_error(client.post("/p", data=hostile.gif_frames(4, 55, 55)), 413)


@pytest.mark.only_loopback
def test_sources_on_private_addresses_are_refused(make_app, source_server):
    source_server.routes["/a.png"] = (200, {}, pictures.solid(10, 10, "red"))
    client = make_app(private_sources=False).test_client()
    for url in (f"{source_server.url}/a.png", "http://[::1]:1/a.png", "http://169.254.169.254/",
                f"http://[::ffff:127.0.0.1]:{source_server.url.rsplit(':', 1)[1]}/a.png",
                "http://localhost/a.png"):
        assert_json_error(client.post("/p", query_string={"source": url}), 403)
    assert_json_error(client.post("/p", query_string={"source": "file:///etc/passwd"}), 400)
    assert source_server.hits == {}


def test_allowed_source_hosts(make_app, source_server):
    source_server.routes["/a.png"] = (200, {}, pictures.solid(10, 10, "red"))
    client = make_app("--allowed_source_hosts", "127.0.0.1,.images.test").test_client()
    ok = client.post("/p", query_string={"source": f"{source_server.url}/a.png"})
    assert ok.status_code == 200, ok.text
    port = source_server.url.rsplit(":", 1)[1]
    assert_json_error(client.post("/p", query_string={"source": f"http://localhost:{port}/a.png"}), 403)
    assert source_server.hits == {"/a.png": 1}


def test_allowed_outputs(make_app):
    app = make_app("--allowed_outputs", "x300.*,w200.jpg", "--outputs", "x100.png")
    client = app.test_client()
    info = client.post("/p", data=pictures.photo(400, 300)).json
    base = folder_of(info["hash"])
    for name in ("x300.jpg", "x300.webp", "w200.jpg", "x100.png"):
        assert client.get(f"{base}/{name}").status_code == 200, name
    for name in ("x301.jpg", "w200.png", "w201.jpg", "x300-q80.jpg"):
        assert_json_error(client.get(f"{base}/{name}"), 403)
        assert not os.path.exists(os.path.join(app.extensions["images"].settings.base_path, base.lstrip("/"),
                                           name))
    assert_json_error(client.post(f"{base}/process?outputs=x300.jpg,w10.jpg"), 403)
    assert_json_error(client.post("/p?outputs=w10.jpg", data=pictures.photo(40, 30)), 403)


@pytest.mark.spawns
def test_signed_urls(make_app):
    client = make_app("--signing_key", SIGNING_KEY).test_client()
    info = client.post("/p", data=pictures.photo(400, 300)).json
    path = f"{folder_of(info['hash'])}/x120.webp"
    assert_json_error(client.get(path), 403)
    assert_json_error(client.get(path + "?sig=AAAA"), 403)
    other = f"{folder_of(info['hash'])}/x121.webp"
    assert_json_error(client.get(other + "?sig=" + signing.signature(SIGNING_KEY, path)), 403)
    signed = subprocess.run([IMAGES, "--signing_key", SIGNING_KEY, "sign", path],
                            capture_output=True, text=True, check=True).stdout.strip()
    got = client.get(signed)
    assert got.status_code == 200, got.text
    assert (pictures.decode(got.data).width, pictures.decode(got.data).format) == (120, "WEBP")
    outputs_path = f"{folder_of(info['hash'])}/process?outputs=w50.jpg,w60.jpg"
    assert_json_error(client.post(outputs_path), 403)
    signed = subprocess.run([IMAGES, "--signing_key", SIGNING_KEY, "sign", outputs_path],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert client.post(signed).status_code == 200
    tampered = signed.replace("w60.jpg", "w61.jpg")
    assert_json_error(client.post(tampered), 403)
    assert client.post("/p", data=pictures.photo(40, 30)).status_code == 200     # no outputs: no sig
