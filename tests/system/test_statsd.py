"""statsd: the original's counter names and the timers, as datagrams on a real UDP socket."""
import socket

from tests import pictures
from tests.helpers import folder_of

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
