"""--maximum_local_bytes on a real server under load: the local folder stays under the limit, every
request still gets the right image, evicted files come back (made again, or fetched from S3), and
what may not go (originals without a store, pending uploads) stays."""
from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from imageserver.core.paths import ImageKey
from imageserver.images import eviction
from tests import pictures
from tests.conftest import s3_flags
from tests.helpers import wait_until
from tests.system.remote import S3View, md5

# Each fills a folder past its limit and waits for sweeps (tens of seconds).
pytestmark = pytest.mark.slow

LIMIT = 1_500_000
WIDTHS = range(64, 448, 32)
EXTENSIONS = ("jpg", "png", "webp")


def local_bytes(base: str) -> int:
    """What the sweep counts: blocks of the files under `base`, less the state folder."""
    total = 0
    for folder, folders, names in os.walk(base):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def on_disk(server, folder: str, name: str) -> bool:
    return os.path.exists(os.path.join(server.base_path, *folder.split("/"), name))


def status(server) -> dict:
    return server.get("/status_check").json()["local_disk"]


def settle(server) -> None:
    """Wait for a sweep that began after everything was written (the second to end from now)."""
    for _ in range(2):
        now = time.time()
        wait_until(lambda now=now: (status(server)["swept_at"] or 0) > now, what="a sweep")


@contextmanager
def sampling(base: str):
    """The folder's size, measured every 0.2 s while the block runs."""
    samples, done = [], threading.Event()

    def sample():
        while not done.wait(0.2):
            samples.append(local_bytes(base))

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


def upload(server, count: int) -> dict:
    """`count` new photos: {folder: info}."""
    uploaded = {}
    for _ in range(count):
        posted = server.post("/p", data=pictures.photo(480, 360, "jpeg"))
        assert posted.status_code == 200, posted.text
        uploaded[ImageKey("p", posted.json()["hash"]).folder] = posted.json()
    return uploaded


def load(server, folders, clients: int = 8) -> int:
    """Every size of every image, in a random order from concurrent clients; each reply decoded and
    checked. The bytes their files take on disk (whole blocks)."""
    jobs = [(folder, width, ext) for folder in folders for width in WIDTHS for ext in EXTENSIONS]
    random.Random(len(jobs)).shuffle(jobs)

    def get(job):
        folder, width, ext = job
        reply = server.get(f"/{folder}/w{width}.{ext}")
        assert reply.status_code == 200, (job, reply.text)
        return job, reply.content

    with ThreadPoolExecutor(clients) as pool:
        replies = list(pool.map(get, jobs))
    for (_folder, width, ext), content in replies:
        image = pictures.decode(content)
        assert (image.width, image.height, image.format) == (
            width, width * 3 // 4, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext])
    return sum(-(-len(content) // 4096) * 4096 for _, content in replies)


@pytest.mark.parametrize("store", ["none", "s3"])
def test_the_folder_stays_under_the_limit_under_load(store, start_server, request):
    flags = []
    if store == "s3":
        flags = s3_flags(request.getfixturevalue("moto_server"), request.getfixturevalue("s3_bucket"))
    server = start_server(*flags, "--maximum_local_bytes", str(LIMIT), "--upload_retry_seconds", "1")
    first, second = upload(server, 5), upload(server, 5)
    started = time.monotonic()
    with sampling(server.base_path) as samples:
        written = load(server, first) + load(server, second)
    # One sweep's slack: what the workers write between two sweeps (a sweep's arming pause, its
    # sleep, the next one's pause), at this run's rate; twice that, for bursts.
    slack = 2 * 2 * (eviction.MIN_INTERVAL + eviction.ARM_SECONDS) * written / (
        time.monotonic() - started)
    if store == "s3":
        wait_until(lambda: server.get("/status_check").json()["pending_uploads"] == 0,
                   what="every upload")
    settle(server)

    used = local_bytes(server.base_path)
    figures = status(server)
    print(f"{store}: written {written} B, slack {slack:.0f} B, peak {max(samples)} B, "
          f"after {used} B, {figures}")
    assert written > 3 * LIMIT
    assert used <= LIMIT and figures["bytes_used"] <= LIMIT and figures["bytes_limit"] == LIMIT
    assert max(samples) <= LIMIT + slack
    assert figures["files_evicted"] > 0 and figures["warning"] == ""
    # The first images' outputs were used least recently: they went first.
    assert not any(on_disk(server, folder, f"w{w}.{ext}")
                   for folder in first for w in WIDTHS for ext in EXTENSIONS)
    folder = next(iter(first))
    if store == "none":
        # The only copies: never removed. An output that went is made again.
        assert all(on_disk(server, f, name) for f in [*first, *second]
                   for name in ("original", "info.json"))
        again = server.get(f"/{folder}/w64.png")
        assert again.headers["X-Image-Cache"] == "made"
    else:
        # Kept by the store: they went too, and come back from it.
        assert not any(on_disk(server, f, "original") for f in first)
        assert server.get(f"/{folder}/info.json").json() == first[folder]
        again = server.get(f"/{folder}/w64.png")
        assert again.headers["X-Image-Cache"] == "fetched"
        original = server.get(f"/{folder}/original")
        assert original.status_code == 200 and md5(original.content) == first[folder]["hash"]
        made = server.get(f"/{folder}/w100.jpg")
        assert made.headers["X-Image-Cache"] == "made" and pictures.decode(made.content).width == 100
    assert again.status_code == 200 and pictures.decode(again.content).width == 64


def test_evictions_are_counted_in_statsd(start_server, statsd_listener):
    server = start_server("--maximum_local_bytes", "100000", "--statsd_port", str(statsd_listener.port))
    folder = next(iter(upload(server, 1)))
    for width in WIDTHS:
        assert server.get(f"/{folder}/w{width}.png").status_code == 200
    statsd_listener.wait_for("image_server.local.evicted", "image_server.local.bytes")


def test_pending_uploads_are_never_evicted(moto_server, s3_bucket, start_server, gate, tmp_path):
    g = gate(int(moto_server.url.rsplit(":", 1)[1]))
    flags = [*s3_flags(moto_server, s3_bucket, g.url), "--store_retries", "0", "--store_timeout", "3",
             "--upload_retry_seconds", "1"]
    base = str(tmp_path / "public")
    server = start_server(*flags, base_path=base)
    uploaded = upload(server, 4)
    g.shut()
    for folder in uploaded:
        for width in WIDTHS:
            assert server.get(f"/{folder}/w{width}.png").status_code == 200
    assert server.get("/status_check").json()["pending_uploads"] == 4 * len(WIDTHS)
    server.stop()

    # The same folder with a limit that its pending outputs alone exceed, the store still down.
    limit = local_bytes(base) // 4
    server = start_server(*flags, "--maximum_local_bytes", str(limit), base_path=base)
    settle(server)
    assert all(on_disk(server, folder, f"w{width}.png") for folder in uploaded for width in WIDTHS)
    assert not any(on_disk(server, folder, "original") for folder in uploaded)  # the store has them
    assert "pending uploads" in status(server)["warning"]
    assert "exceed --maximum_local_bytes" in server.log()

    g.open()
    wait_until(lambda: server.get("/status_check").json()["pending_uploads"] == 0, what="every upload")
    settle(server)
    assert local_bytes(base) <= limit and status(server)["warning"] == ""
    store = S3View(moto_server, s3_bucket)
    folder = next(iter(uploaded))
    assert "w64.png" in store.names(folder)
    again = server.get(f"/{folder}/w64.png")
    assert again.status_code == 200 and pictures.decode(again.content).width == 64
