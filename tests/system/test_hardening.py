"""A real server against hostile input: disguised payloads, bombs, broken images, huge uploads, too
many outputs. It must answer each with a JSON 4xx and stay healthy. (Refusals that come from the
settings, of sources, outputs and unsigned URLs: tests/app/test_hardening.py.)"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tests import hostile, pictures
from tests.helpers import IMAGES, assert_healthy, assert_json_error, folder_of, server_environment


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("still here")
    return path


@pytest.mark.parametrize("kind", sorted(hostile.DISGUISED))
def test_disguised_payloads_are_refused_and_never_run(shared_server, source_server, victim, kind):
    payload = hostile.DISGUISED[kind](source_server.url, str(victim))
    as_body = shared_server.post("/p", data=payload, headers={"Content-Type": "image/jpeg"})
    as_file = shared_server.post("/p", files={"file": ("photo.jpg", payload, "image/jpeg")})
    source_server.routes["/evil.jpg"] = (200, {"Content-Type": "image/jpeg"}, payload)
    as_source = shared_server.post(f"/p?source={source_server.url}/evil.jpg")
    for response in (as_body, as_file, as_source):
        assert_json_error(response, 415)
    assert set(source_server.hits) == {"/evil.jpg"}
    assert victim.read_text() == "still here"


def test_polyglots_are_read_by_the_sniffed_coder_only(shared_server, source_server, victim):
    jpeg_then_mvg = shared_server.post(
        "/p", data=hostile.polyglot_jpeg_mvg(source_server.url, str(victim)))
    assert jpeg_then_mvg.status_code == 200, jpeg_then_mvg.text
    assert jpeg_then_mvg.json()["content_type"] == "image/jpeg"
    made = shared_server.get(folder_of(jpeg_then_mvg.json()["hash"]) + "/w32.png")
    assert pictures.decode(made.content).width == 32
    png_then_svg = shared_server.post("/p", data=hostile.polyglot_png_svg(source_server.url,
                                                                         str(victim)))
    assert_json_error(png_then_svg, 422)
    assert source_server.hits == {} and victim.read_text() == "still here"


@pytest.mark.parametrize("name", ["jpeg", "png", "webp", "gif"])
def test_truncated_images_are_refused(shared_server, name):
    assert_json_error(shared_server.post("/p", data=hostile.truncated_images()[name]), 422)


def test_bytes_after_the_end_marker_are_ignored_as_decoders_ignore_them(shared_server):
    """A GIF with bytes after its trailer, a JPEG with a phone's video after its end of image: both
    whole, both read by ImageMagick and browsers (the file used to be refused as cut short)."""
    gif = shared_server.post("/p", data=hostile.gif_with_bytes_after_trailer())
    assert gif.status_code == 200, gif.text
    made = pictures.decode(shared_server.get(folder_of(gif.json()["hash"]) + "/w30.gif").content)
    assert (made.width, made.height, made.frames) == (30, 20, 3)
    assert pictures.near(made.pixel(15, 10), (255, 0, 0, 255), 10)
    jpeg = shared_server.post("/p", data=hostile.jpeg_with_data_after_end())
    assert jpeg.status_code == 200, jpeg.text
    assert pictures.decode(shared_server.get(folder_of(jpeg.json()["hash"]) + "/w32.png").content).width == 32


@pytest.mark.parametrize("name", hostile.UNFITTING_ICC_PROFILES)
def test_an_icc_profile_that_cannot_be_applied_is_ignored(shared_server, name):
    """A profile that does not fit the pixels (an RGB one on grey or CMYK, a grey one on RGB), or that
    is broken, is ignored as browsers ignore it: the picture renders in its own colours (it used to
    be refused as over a worker's resource limits, or turned grey)."""
    data, colour = hostile.unfitting_icc_profile(name)
    posted = shared_server.post("/p", data=data)
    assert posted.status_code == 200, posted.text
    for output in ("x20.png", "w20.jpg"):
        answer = shared_server.get(folder_of(posted.json()["hash"]) + "/" + output)
        assert answer.status_code == 200, answer.text
        made = pictures.decode(answer.content)
        assert pictures.near(made.pixel(10, 10), colour + (255,), 12), (output, made.pixel(10, 10))


@pytest.mark.parametrize("name", ["jpeg", "png", "webp", "gif"])
def test_noise_after_the_magic_bytes_is_refused(shared_server, name):
    assert_json_error(shared_server.post("/p", data=hostile.garbage_after_magic()[name]), 422)


def test_zero_size_and_zero_dimension_images_are_refused(shared_server):
    assert_json_error(shared_server.post("/p", data=b""), 400)
    assert_json_error(shared_server.post("/p", files={"file": ("empty.jpg", b"", "image/jpeg")}), 400)
    assert_json_error(shared_server.post("/p", data=hostile.png_zero_width()), 422)
    assert_json_error(shared_server.post("/p", data=b"\xff\xd8\xff"), 422)
    assert_healthy(shared_server)


@pytest.mark.parametrize("make", [
    lambda: hostile.png_header_only(100_000, 100_000),     # over ImageMagick's own width limit
    lambda: hostile.png_header_only(12_000, 12_000),       # 144 megapixels
    lambda: hostile.png_bomb(9_000, 9_000),                # complete, 10 kB, 81 megapixels
    lambda: hostile.gif_small_then_huge(15_000),           # 1x1, then 225 megapixels
], ids=["100000x100000", "12000x12000", "bomb", "small-then-huge-frame"])
def test_sources_over_the_pixel_limits_are_refused(shared_server, make):
    assert_json_error(shared_server.post("/p", data=make()), 413, 422)
    assert_healthy(shared_server)


def test_an_animation_with_thousands_of_frames_is_refused(shared_server):
    response = shared_server.post("/p", data=hostile.gif_frames(3000))
    assert_json_error(response, 413)
    assert "3000 frames" in response.json()["error"]
    assert shared_server.post("/p", data=hostile.gif_frames(300, 4, 4)).status_code == 200


def test_imagemagick_itself_refuses_every_other_coder(tmp_path, victim, source_server):
    """The second wall: with our policy in force, ImageMagick will not run MVG, SVG, MSL, PS, TXT,
    EPHEMERAL, URL and the rest even when asked by name, which the sniffing never does."""
    files = {}
    for kind, make in hostile.DISGUISED.items():
        files[kind] = tmp_path / f"payload.{kind}"
        files[kind].write_bytes(make(source_server.url, str(victim)))
    by_name = [f"{coder}:{path}" for kind, path in files.items()
               for coder in (kind, "mvg", "svg", "msl", "text", "eps", "pdf")]
    by_name += [f"ephemeral:{victim}", "text:/etc/passwd", "label:@/etc/passwd", "caption:@/etc/passwd",
                f"{source_server.url}/http", "https://127.0.0.1:1/https", f"msl:{files['msl']}",
                "inline:data:text/plain;base64,aGVsbG8=", "xc:red", "plasma:fractal"]
    script = textwrap.dedent(f"""
        import sys
        from imageserver.imaging import formats, pipeline
        from wand.exceptions import MissingDelegateError, PolicyError
        # Refused: by our policy, or because this ImageMagick has no such coder at all (7 as
        # Debian builds it has no URL coder).
        REFUSED = (PolicyError, MissingDelegateError)
        from wand.image import Image
        pipeline.init_worker()
        assert formats.problems() == [], formats.problems()
        # ImageMagick's "time" limit would end the worker that long after its first image.
        from imageserver.imaging import formats, magick
        assert magick.resource_limits()["time"] > 10 ** 9, magick.resource_limits()
        ran = []
        for name in {by_name!r}:
            try:
                Image(filename=name).close()
                ran.append(name)
            except REFUSED:
                pass
        for kind, coder in {[(kind, str(path)) for kind, path in files.items()]!r}:
            for fmt in ("mvg", "svg", "msl", "ps", "txt", "text"):
                try:
                    Image(blob=open(coder, "rb").read(), format=fmt).close()
                    ran.append(fmt + " blob")
                except REFUSED:
                    pass
        print(ran or "refused")
    """)
    # Without this process's own set-up of ImageMagick: init_worker must put the policy in force.
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=server_environment())
    assert run.stdout.strip() == "refused", (run.stdout, run.stderr)
    assert source_server.hits == {} and victim.read_text() == "still here"


def test_a_big_upload_is_refused_before_its_body_is_sent(start_server):
    """The reply comes back after the headers alone: the server never waits for the 100 MB."""
    server = start_server("--maximum_upload_bytes", "1000000")
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                           b"Content-Length: 100000000\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:200]
    assert json.loads(body)["error"]
    small = server.post("/p", data=pictures.photo(200, 100))
    assert small.status_code == 200, small.text


def test_a_big_chunked_upload_is_refused(start_server):
    server = start_server("--maximum_upload_bytes", "100000")

    def chunks():
        for _ in range(50):
            yield b"\xff" * 10000

    assert_json_error(server.post("/p", data=chunks()), 413)


def test_at_most_twenty_outputs_per_request(shared_server):
    photo = pictures.photo(100, 80)
    names = ",".join(f"w{width}.jpg" for width in range(1, 22))
    assert_json_error(shared_server.post(f"/p?outputs={names}", data=photo), 400)
    info = shared_server.post("/p", data=photo).json()
    assert_json_error(shared_server.post(f"{folder_of(info['hash'])}/process?outputs={names}"), 400)
    twenty = ",".join(f"w{width}.jpg" for width in range(1, 21))
    assert shared_server.post(f"{folder_of(info['hash'])}/process?outputs={twenty}").status_code == 200


@pytest.mark.parametrize("path", [
    "/p/../../../etc/passwd", "/p/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/p/6e0/072/682/..%2f..%2f..%2f..%2fetc%2fpasswd/original",
    "/p/6e0/072/682/e66287b662827da75b244a3/..%2foriginal",
    "/P/6e0/072/682/e66287b662827da75b244a3/info.json",
    "/" + "a" * 65 + "/6e0/072/682/e66287b662827da75b244a3/info.json",
    "/p/6e0/072/682/e66287b662827da75b244a3/" + "w1" * 40 + ".jpg",
    "/p/6e0/072/682/e66287b662827da75b244a3/.x300.jpg.lock",
])
def test_no_path_reaches_outside_the_storage(shared_server, path):
    response = shared_server.get(path)
    assert_json_error(response, 400, 404)
    assert "root:" not in response.text and len(response.text) < 1000


def test_a_long_namespace_is_refused(shared_server):
    assert_json_error(shared_server.post("/" + "a" * 65, data=pictures.photo(10, 10)), 400)
    assert shared_server.post("/" + "a" * 64, data=pictures.photo(10, 10)).status_code == 200


def test_sign_needs_a_key():
    run = subprocess.run([IMAGES, "sign", "/p/x"], capture_output=True, text=True,
                         env={**os.environ, "IMG_SIGNING_KEY": ""})
    assert run.returncode == 2 and "signing_key" in run.stderr
