"""statsd: the original's counter names and the timers, as datagrams on a real UDP socket."""
import socket

from imageserver.core import signing
from tests import pictures
from tests.helpers import folder_of, wait_until

PREFIX = "image_server."


def test_an_output_made_then_served_again(start_server, statsd_listener, photo_jpeg):
    server = start_server("--statsd_port", str(statsd_listener.port))
    info = server.post("/p", data=photo_jpeg).json()
    statsd_listener.wait_for(PREFIX + "new_image.request:1|c")

    made = server.get(folder_of(info["hash"]) + "/x120.webp")
    assert made.status_code == 200 and made.headers["X-Image-Cache"] == "made"
    lines = statsd_listener.wait_for(PREFIX + "image_request:1|c", PREFIX + "image_request.webp:1|c",
                                     PREFIX + "processing.time.webp")
    timing = next(line for line in lines if line.startswith(PREFIX + "processing.time.webp:"))
    assert timing.endswith("|ms") and float(timing.split(":")[1].split("|")[0]) > 0

    again = server.get(folder_of(info["hash"]) + "/x120.webp")
    assert again.headers["X-Image-Cache"] == "hit"
    statsd_listener.wait_for(PREFIX + "processing.version.noop:1|c")
    assert statsd_listener.count(PREFIX + "image_request") == 1
    assert not statsd_listener.has(PREFIX + "image_request_fail")
    assert not statsd_listener.has(PREFIX + "new_image.request_failed")


def test_failures(start_server, statsd_listener):
    server = start_server("--statsd_port", str(statsd_listener.port), "--statsd_prefix", "imgs")
    unknown = "/p/000/000/000/00000000000000000000000"
    assert server.get(unknown + "/x100.jpg").status_code == 404
    statsd_listener.wait_for("imgs.original_unavailable:1|c", "imgs.image_request_fail:1|c")

    statsd_listener.clear()
    assert server.get(unknown + "/x100.bmp").status_code == 404
    statsd_listener.wait_for("imgs.image_request_fail:1|c")
    assert not statsd_listener.has("imgs.original_unavailable")

    assert server.post("/p", data=b"not an image").status_code == 415
    statsd_listener.wait_for("imgs.new_image.request:1|c", "imgs.new_image.request_failed:1|c")
    assert not statsd_listener.has("imgs.image_request")


def test_source_downloads(start_server, statsd_listener, source_server):
    server = start_server("--statsd_port", str(statsd_listener.port))
    source_server.routes["/a.png"] = (200, {"Content-Type": "image/png"},
                                      pictures.solid(40, 30, "red"))
    assert server.post(f"/p?source={source_server.url}/a.png").status_code == 200
    statsd_listener.wait_for(PREFIX + "original_downloaded:1|c", PREFIX + "download.time.source")

    statsd_listener.clear()
    assert server.post(f"/p?source={source_server.url}/missing.png").status_code == 404
    statsd_listener.wait_for(PREFIX + "original_unavailable:1|c",
                             PREFIX + "new_image.request_failed:1|c")
    assert not statsd_listener.has(PREFIX + "original_downloaded")


def test_no_statsd_never_breaks_a_request(start_server, photo_jpeg):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]
    for flags in (("--statsd_port", str(nobody)), ("--statsd_host", "statsd.invalid")):
        server = start_server(*flags)
        info = server.post("/p", data=photo_jpeg).json()
        for size in range(50, 60):
            got = server.get(f"{folder_of(info['hash'])}/x{size}.jpg")
            assert got.status_code == 200, (flags, got.text)
            assert pictures.decode(got.content).width == size
        assert server.get("/p/000/000/000/00000000000000000000000/x1.jpg").status_code == 404
    assert "no metrics will be sent" in server.log()


# -- hits: counted, logged and refused as outputs made now --

SIGNING_KEY = "a-key-of-at-least-16-characters"


def upload(server) -> str:
    answer = server.post("/p", data=pictures.photo(400, 300))
    assert answer.status_code == 200, answer.text
    return folder_of(answer.json()["hash"])


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
