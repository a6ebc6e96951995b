"""The work a request causes, priced before any of it is done (imageserver/imaging/cost.py), against a real
server with the default settings: small files that ask for minutes of CPU are a 413 that names the
bound, at once, and leave nothing behind. Each test prints the time its requests took and the CPU
the workers spent (pytest -s shows them)."""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
import time

import pytest

from tests import hostile, pictures
from tests.helpers import (
    assert_healthy,
    assert_json_error,
    folder_of,
    worker_pids,
    workers_cpu_seconds,
)


def workers_peak_mib(server) -> float:
    """The largest resident size any of the server's workers has had (VmHWM), in MiB."""
    peaks = []
    for pid in worker_pids(server.process.pid):
        with open(f"/proc/{pid}/status") as f:
            peaks += [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")]
    return max(peaks)


def timed(server, method: str, path: str, **kwargs):
    """The response, the seconds it took and the CPU seconds the workers spent meanwhile (the
    workers' peak resident size so far is printed)."""
    cpu, started = workers_cpu_seconds(server), time.monotonic()
    response = getattr(server, method)(path, **kwargs)
    seconds, cpu = time.monotonic() - started, workers_cpu_seconds(server) - cpu
    print(f"  {method.upper()} {path[:60]}: workers' peak RSS so far {workers_peak_mib(server):.0f} MiB")
    return response, seconds, cpu


@pytest.fixture(scope="module")
def tiny_animation() -> bytes:
    return hostile.gif_frames(300)                  # 300 frames of 1x1: 7 KB


@pytest.fixture(scope="module")
def big_animation() -> bytes:
    return hostile.gif_flat_frames(150, 577, 577)   # 150 frames of 577x577: 140 KB, 50 megapixels


def test_an_animation_of_more_pixels_than_the_largest_still_is_refused_before_decoding(shared_server):
    data = hostile.gif_flat_frames(300, 577, 577)   # 280 KB; decoded at once, 876 MiB before
    response, seconds, cpu = timed(shared_server, "post", "/p", data=data)
    print(f"upload of {len(data)} bytes, 300 frames of 577x577: {response.status_code} in "
          f"{seconds:.2f} s, {cpu:.2f} s of worker CPU")
    assert "pixels in all" in assert_json_error(response, 413)


@pytest.mark.parametrize("name", ["x1000.gif", "w1000.gif", "x100.gif"])
def test_an_animated_output_is_priced_before_it_is_made(shared_server, tiny_animation, name):
    posted = shared_server.post("/p", data=tiny_animation)
    assert posted.status_code == 200, posted.text
    response, seconds, cpu = timed(shared_server, "get", folder_of(posted.json()["hash"]) + "/" + name)
    print(f"{name} of {len(tiny_animation)} bytes, 300 frames of 1x1: {response.status_code} in "
          f"{seconds:.2f} s, {cpu:.2f} s of worker CPU")
    message = assert_json_error(response, 413)
    assert "300 frames" in message and "ms of work" in message and "--maximum_request_ms" in message
    # The first frame, as a still picture, is cheap and made.
    still = shared_server.get(folder_of(posted.json()["hash"]) + "/x300.jpg")
    assert still.status_code == 200, still.text
    assert (pictures.decode(still.content).width, pictures.decode(still.content).height) == (300, 300)


def test_big_animations_cannot_starve_the_other_requests(shared_server, big_animation):
    posted, seconds, cpu = timed(shared_server, "post", "/p", data=big_animation)
    print(f"upload of {len(big_animation)} bytes, 150 frames of 577x577: {posted.status_code} in "
          f"{seconds:.2f} s, {cpu:.2f} s of worker CPU")
    assert posted.status_code == 200, posted.text
    folder = folder_of(posted.json()["hash"])
    hit = shared_server.post("/p?outputs=x100.jpg", data=pictures.photo(200, 100))
    assert hit.status_code == 200, hit.text
    hit_path = folder_of(hit.json()["hash"]) + "/x100.jpg"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        bombs = [pool.submit(shared_server.get, f"{folder}/x1000.gif") for _ in range(2)]
        hits = [pool.submit(shared_server.get, hit_path) for _ in range(2)]
        answers = [future.result() for future in bombs + hits]
        seconds = time.monotonic() - started
    print(f"two x1000.gif of it and two hits at once: {[a.status_code for a in answers]} in {seconds:.2f} s")
    for bomb in answers[:2]:
        assert "ms of work" in assert_json_error(bomb, 413)
    for answer in answers[2:]:
        assert answer.status_code == 200, answer.text
    assert not os.path.exists(shared_server.base_path + folder + "/x1000.gif")


@pytest.mark.parametrize("scans", [700, 2000])
def test_a_jpeg_of_too_many_scans_is_refused_before_decoding(shared_server, scans):
    data = hostile.jpeg_many_scans(7000, 7000, scans)
    response, seconds, cpu = timed(shared_server, "post", "/p", data=data)
    print(f"{len(data)} bytes, 7000x7000 grey of {scans} scans: {response.status_code} in {seconds:.2f} s, "
          f"{cpu:.2f} s of worker CPU")
    message = assert_json_error(response, 413)
    assert f"{scans} scans" in message and "--maximum_scans" in message
    assert not os.path.exists(shared_server.base_path + folder_of(hashlib.md5(data).hexdigest()))


def test_a_jpeg_of_a_few_scans_is_read(shared_server):
    data = hostile.jpeg_many_scans(2000, 1000, 20)
    posted = shared_server.post("/p", data=data)
    assert posted.status_code == 200, posted.text
    output = shared_server.get(folder_of(posted.json()["hash"]) + "/w100.jpg")
    assert output.status_code == 200, output.text
    assert (pictures.decode(output.content).width, pictures.decode(output.content).height) == (100, 50)


def zlib_level_class(png: bytes) -> int:
    """FLEVEL of the PNG's zlib stream: 0 fastest, 1 fast, 2 default (level 6), 3 slowest (7-9)."""
    start = png.index(b"IDAT") + 4
    header = png[start:start + 2]
    assert int.from_bytes(header, "big") % 31 == 0, header      # a zlib header
    return header[1] >> 6


def test_a_png_quality_never_buys_zlib_slowest_levels(shared_server):
    posted = shared_server.post("/p", data=pictures.photo(800, 600))
    assert posted.status_code == 200, posted.text
    for name in ("1000x1000-q100.png", "1000x1000-q90.png", "1000x1000.png"):
        response, seconds, cpu = timed(shared_server, "get", folder_of(posted.json()["hash"]) + "/" + name)
        print(f"{name} of an 800x600 photo: {response.status_code} in {seconds:.2f} s, {cpu:.2f} s of "
              f"worker CPU")
        assert response.status_code == 200, response.text
        assert (pictures.decode(response.content).width, pictures.decode(response.content).height) \
            == (1000, 1000)
        assert zlib_level_class(response.content) <= 2
    low = shared_server.get(folder_of(posted.json()["hash"]) + "/x100-q10.png")
    assert low.status_code == 200 and zlib_level_class(low.content) == 0


def test_an_upload_whose_outputs_cost_too_much_is_refused_whole(shared_server):
    data = pictures.photo(800, 600)
    names = ",".join(f"{1000 - i}x1000-q90.png" for i in range(20))
    response, seconds, cpu = timed(shared_server, "post", f"/p?outputs={names}", data=data)
    print(f"upload with 20 PNG outputs of 1000x1000: {response.status_code} in {seconds:.2f} s, "
          f"{cpu:.2f} s of worker CPU")
    message = assert_json_error(response, 413)
    assert "20 outputs" in message and "--maximum_request_ms" in message
    assert not os.path.exists(shared_server.base_path + folder_of(hashlib.md5(data).hexdigest()))
    assert_healthy(shared_server)


def test_the_budget_is_a_setting(start_server):
    """A 1000x1000 PNG (about 850 ms by the model) is made within the default budget (see
    test_a_png_quality_never_buys_zlib_slowest_levels), and refused under a budget of 500 ms."""
    server = start_server("--maximum_request_ms", "500")
    posted = server.post("/p", data=pictures.photo(800, 600))
    assert posted.status_code == 200, posted.text
    response = server.get(folder_of(posted.json()["hash"]) + "/1000x1000.png")
    assert "over the limit of 500 ms" in assert_json_error(response, 413)
    small = server.get(folder_of(posted.json()["hash"]) + "/x300.png")
    assert small.status_code == 200, small.text
