"""What one client can make of one image: aliases of an output are one file, a budget of variants per
image (--maximum_variants), and failed renders remembered (--failure_seconds). Through a real server,
looking at the files it keeps."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from imageserver.core import signing
from tests import pictures
from tests.helpers import assert_json_error, image_url

KEY = "k" * 16
ALIASES = ("x40.jpg", "40x40.jpg", "x40-q75.jpg", "40x40-q75.jpg")


def upload(server, data: bytes) -> str:
    response = server.post("/p", data=data)
    assert response.status_code == 200, response.text
    return response.json()["hash"]


def outputs_on_disk(server, digest: str) -> set[str]:
    """The output files of an image in the server's folder (not its original, info.json or dot files)."""
    folder = os.path.join(server.base_path, *image_url(digest, "").strip("/").split("/"))
    return {name for name in os.listdir(folder)
            if name not in ("original", "info.json") and not name.startswith(".")}


def test_aliases_of_one_output_are_answered_from_one_file(shared_server):
    digest = upload(shared_server, pictures.photo(120, 90, quality=91))
    answers = [shared_server.get(image_url(digest, name)) for name in ALIASES]
    assert [answer.status_code for answer in answers] == [200] * len(ALIASES)
    assert len({answer.content for answer in answers}) == 1
    assert len({answer.headers["ETag"] for answer in answers}) == 1
    assert pictures.decode(answers[0].content).width == 40
    assert outputs_on_disk(shared_server, digest) == {"x40.jpg"}
    assert shared_server.get(image_url(digest, "x40-q80.jpg")).content != answers[0].content
    made = shared_server.post(image_url(digest, "process?outputs=30x30.png,x30-q75.png,w30.png"))
    assert made.status_code == 200, made.text
    assert outputs_on_disk(shared_server, digest) == {"x40.jpg", "x40-q80.jpg", "x30.png", "w30.png"}


def test_the_budget_refuses_new_names_past_it_and_serves_the_made_ones(start_server):
    server = start_server("--maximum_variants", "3", "--outputs", "w10.jpg")
    photo = pictures.photo(120, 90)
    digest = upload(server, photo)
    for name in ("w11.jpg", *ALIASES, "w13.jpg"):
        assert server.get(image_url(digest, name)).status_code == 200, name
    refused = server.get(image_url(digest, "w14.jpg"))
    message = assert_json_error(refused, 403)
    assert "at most 3 (--maximum_variants)" in message and "w14.jpg" in message
    assert_json_error(server.post(image_url(digest, "process?outputs=w15.jpg")), 403)
    assert_json_error(server.post("/p?outputs=w16.jpg", data=photo), 403)   # the same image again
    for name in ("w11.jpg", "40x40-q75.jpg", "w10.jpg"):   # made (w10.jpg: --outputs, not counted)
        assert server.get(image_url(digest, name)).status_code == 200, name
    assert outputs_on_disk(server, digest) == {"w10.jpg", "w11.jpg", "x40.jpg", "w13.jpg"}
    os.unlink(os.path.join(server.base_path, image_url(digest, "w11.jpg").strip("/")))
    assert server.get(image_url(digest, "w11.jpg")).status_code == 200   # evicted: its place kept


def test_signed_requests_are_not_budgeted(start_server):
    server = start_server("--maximum_variants", "1", "--signing_key", KEY)
    digest = upload(server, pictures.photo(120, 90))
    for name in ("w11.jpg", "w12.jpg", "w13.jpg"):
        signed = signing.sign_url(KEY, image_url(digest, name))
        assert server.get(signed).status_code == 200, name


def test_a_burst_of_new_names_does_not_pass_the_budget(start_server):
    server = start_server("--maximum_variants", "5")
    digest = upload(server, pictures.photo(400, 300))
    names = [f"w{width}.png" for width in range(100, 124)]
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda name: server.get(image_url(digest, name)).status_code, names))
    print(f"\n{len(names)} new names at once: {statuses.count(200)} made, {statuses.count(403)} refused")
    assert statuses.count(200) == 5 and statuses.count(403) == len(names) - 5
    assert len(outputs_on_disk(server, digest)) == 5


@pytest.mark.quiet
def test_a_failed_render_is_remembered_then_forgotten(start_server):
    server = start_server("--failure_seconds", "3")
    digest = upload(server, pictures.solid(6000, 5000, "red"))   # full_size: over 25 Mpx, refused
    url = image_url(digest, "full_size.jpg")
    started = time.monotonic()
    first = server.get(url)
    first_seconds = time.monotonic() - started
    assert_json_error(first, 413)
    # The original becomes a small picture: rendered again, the answer would be 200.
    original = os.path.join(server.base_path, image_url(digest, "original").strip("/"))
    with open(original, "wb") as out:
        out.write(pictures.solid(10, 10, "blue"))
    started = time.monotonic()
    second = server.get(url)
    second_seconds = time.monotonic() - started
    print(f"\nfull_size.jpg of 6000x5000: failed in {first_seconds * 1000:.0f} ms, "
          f"then remembered in {second_seconds * 1000:.1f} ms")
    assert_json_error(second, 413)
    assert second.json() == first.json() and second_seconds < 0.5
    time.sleep(max(0.0, started + 3.1 - time.monotonic()))
    third = server.get(url)
    assert third.status_code == 200, third.text
    assert pictures.decode(third.content).width == 10
