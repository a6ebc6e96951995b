"""Crashes: the whole server (master and workers) killed with SIGKILL mid-load, then started again
on the same folder; a worker killed mid-render. Every file is whole afterwards, every acknowledged
upload is there, and what a crash left (temporary and lock files) is cleared after start-up."""
import os
import signal
import threading

import pytest
import requests
from wand.image import Image

from imageserver.core.paths import ImageKey
from imageserver.images.variants import RECORDS
from tests import pictures
from tests.faults import Load, check_files, kill_everything, launch
from tests.helpers import image_url as url
from tests.helpers import plain_gunicorn, wait_until, worker_pids


@pytest.mark.slow
def test_killed_whole_mid_load_then_started_again_everything_is_whole(tmp_path):
    base, log = str(tmp_path / "public"), str(tmp_path / "server.log")
    server = launch(base, log)
    load = Load(server.url)
    wait_until(lambda: len(load.uploads) >= 6, "six acknowledged uploads", seconds=120)
    kill_everything(server)
    load.stop()
    acknowledged = list(load.uploads)
    # What a crash leaves, for certain (the kill above may or may not have caught one in the act).
    folder = ImageKey("p", acknowledged[0]).local_folder(base)
    for name in (".w80.jpg.k3j2l1.tmp", ".w80.jpg.lock", ".original.x8y7z6.tmp"):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"half an image")
    # And a folder that only ever held a temporary file (a namespace the load does not use, so that
    # no acknowledged image shares the folder).
    os.makedirs(os.path.join(base, "left", "fff", "fff"))
    with open(os.path.join(base, "left", "fff", "fff", ".original.abc.tmp"), "wb") as f:
        f.write(b"half")

    again = launch(base, log)
    try:
        # Cleared by a thread of the master, while the server already serves.
        wait_until(lambda: "temporary and lock files left" in again.log(), "the clean-up")
        checked, problems = check_files(base)
        assert problems == []
        assert not os.path.exists(os.path.join(base, "left", "fff"))
        assert load.lost(base) == []
        for digest in acknowledged:
            assert again.get(url(digest, "info.json")).json()["hash"] == digest
        got = again.get(url(acknowledged[0], "w80.jpg"))
        assert got.status_code == 200 and pictures.decode(got.content).width == 80
        assert again.post("/p", data=pictures.photo(90, 60)).status_code == 200
    finally:
        again.stop()
    checked, problems = check_files(base)
    assert problems == [] and checked >= 4 * len(acknowledged)


def test_a_worker_killed_mid_render_leaves_no_partial_file(tmp_path):
    base = str(tmp_path / "public")
    server = launch(base, str(tmp_path / "server.log"), workers=1)
    try:
        digest = server.post("/p", data=large_jpeg()).json()["hash"]
        folder = ImageKey("p", digest).local_folder(base)
        worker = worker_pids(server.process.pid)[0]
        result = {}

        def render():
            try:
                result["response"] = server.get(url(digest, "x1000.png"))
            except requests.ConnectionError as error:
                result["error"] = error

        client = threading.Thread(target=render)
        client.start()
        claim = os.path.join(folder, ".x1000.png.tmp")
        wait_until(lambda: os.path.exists(claim), "the render", seconds=30, step=0.002)
        os.kill(worker, signal.SIGKILL)
        client.join(60)
        assert "error" in result or result["response"].status_code >= 500, "the render finished first"
        assert not os.path.exists(os.path.join(folder, "x1000.png"))
        # Only the claim is left, empty (nothing of the render was written), and never served.
        assert [name for name in os.listdir(folder) if name.startswith(".")
                and not name.startswith(RECORDS)] == [".x1000.png.tmp"]
        assert os.path.getsize(claim) == 0

        # A new worker takes the claim over, and makes it whole.
        wait_until(lambda: worker_pids(server.process.pid) not in ([], [worker]), "a new worker", seconds=60)
        got = server.get(url(digest, "x1000.png"))
        assert got.status_code == 200 and pictures.decode(got.content).width == 1000
    finally:
        server.stop()
    assert check_files(base)[1] == []


def large_jpeg() -> bytes:
    """12 megapixels, quick to make: long enough to render that a test can kill the render."""
    with Image(blob=pictures.photo(400, 300)) as image:
        image.sample(4000, 3000)
        image.format = "jpeg"
        return image.make_blob()


def test_plain_gunicorn_clears_leftovers_after_start_up_too(tmp_path):
    folder = tmp_path / "p" / "aaa" / "bbb" / "ccc" / "ddddddddddddddddddddddd"
    folder.mkdir(parents=True)
    (folder / ".x300.jpg.abc123.tmp").write_bytes(b"half an image")
    (folder / ".x300.jpg.lock").write_bytes(b"")
    with plain_gunicorn({"IMG_LOCAL_BASE_PATH": str(tmp_path), "IMG_WORKERS": "1"}) as (_, process):
        wait_until(lambda: not (tmp_path / "p").exists(), "the clean-up")
    assert process.returncode == 0
