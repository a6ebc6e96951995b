"""A full disk, for real: a 3 MB tmpfs as --local_base_path. New images and sizes get a 507 with a
JSON message, an upload that cannot be stored whole leaves nothing, what is there is still served,
and all works again once space is freed, without a restart."""
import hashlib
import os

import pytest

from imageserver.core.paths import ImageKey
from tests import pictures
from tests.conftest import s3_flags
from tests.faults import can_mount_tmpfs, check_files, fill, launch, tmpfs
from tests.helpers import image_url as url
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(not can_mount_tmpfs(), reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(str(tmp_path / "disk"), "3m") as disk:
        yield disk


def assert_disk_full(response) -> None:
    assert response.status_code == 507, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert "disk is full" in response.json()["error"]


def test_an_upload_that_does_not_fit_whole_leaves_nothing(small_disk, tmp_path):
    base = os.path.join(small_disk, "public")
    server = launch(base, str(tmp_path / "server.log"), "--minimum_free_bytes", "0")
    try:
        kept = server.post("/p", params={"outputs": "x100.jpg"}, data=pictures.photo(400, 300))
        assert kept.status_code == 200
        kept_hash = kept.json()["hash"]
        photo = pictures.photo(800, 600)
        # Room for the original and its info.json, not for a 1000x1000 PNG of it.
        filler = fill(small_disk, leave=len(photo) + 3 * 4096)
        posted = server.post("/p", params={"outputs": "x100.jpg,x1000.png"}, data=photo)
        assert_disk_full(posted)
        digest = pictures_hash(photo)
        assert not os.path.exists(ImageKey("p", digest).local_folder(base))
        assert server.get(url(digest, "info.json")).status_code == 404
        # What is there is still served; nothing new can be made.
        assert server.get(url(kept_hash, "x100.jpg")).status_code == 200
        assert server.get(url(kept_hash, "info.json")).status_code == 200
        assert_disk_full(server.get(url(kept_hash, "x1000.png")))
        assert check_files(base)[1] == []

        os.unlink(filler)
        again = server.post("/p", params={"outputs": "x100.jpg,x1000.png"}, data=photo)
        assert again.status_code == 200, again.text
        assert pictures.decode(server.get(url(digest, "x1000.png")).content).width == 1000
        assert server.get(url(kept_hash, "x1000.png")).status_code == 200
    finally:
        server.stop()
    checked, problems = check_files(base)
    assert problems == [] and checked == 8
    assert "Traceback" not in server.log() and "internal error" not in server.log()


def test_under_the_reserve_new_work_is_refused_and_the_status_says_so(small_disk, tmp_path):
    base = os.path.join(small_disk, "public")
    server = launch(base, str(tmp_path / "server.log"), "--minimum_free_bytes", "1000000")
    kept_photo = pictures.photo(400, 300)
    try:
        kept = server.post("/p", params={"outputs": "x100.jpg"}, data=kept_photo)
        assert kept.status_code == 200
        kept_hash = kept.json()["hash"]
        disk = server.get("/status_check").json()["disk"]
        assert disk["minimum_free_bytes"] == 1_000_000 and not disk["full"]

        filler = fill(small_disk, leave=900_000)     # room left, but under the reserve
        status = server.get("/status_check")
        assert status.status_code == 200 and status.json()["disk"]["full"]
        assert status.json()["disk"]["free_bytes"] < 1_000_000
        photo = pictures.photo(200, 150)
        assert_disk_full(server.post("/p", data=photo))
        assert not os.path.exists(ImageKey("p", pictures_hash(photo)).local_folder(base))
        assert_disk_full(server.get(url(kept_hash, "w50.jpg")))
        assert server.get(url(kept_hash, "x100.jpg")).status_code == 200
        # Posting an image that is already whole stores nothing: still a 200.
        assert server.post("/p", params={"outputs": "x100.jpg"}, data=kept_photo).status_code == 200

        os.unlink(filler)
        assert not server.get("/status_check").json()["disk"]["full"]
        assert server.post("/p", data=photo).status_code == 200
        assert server.get(url(kept_hash, "w50.jpg")).status_code == 200
    finally:
        server.stop()
    assert check_files(base)[1] == []


def pictures_hash(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_an_output_that_cannot_be_journalled_for_the_store_is_not_kept(tmp_path, moto_server,
                                                                       s3_bucket, gate):
    # The store is down, so an output made for a GET must be written down for a later upload; the
    # journal is on a disk of its own, full: the output could never reach the store, so it must not
    # stay on local disk to be served as if it had.
    base = str(tmp_path / "public")
    g = gate(int(moto_server.url.rsplit(":", 1)[1]))
    server = launch(base, str(tmp_path / "server.log"), *s3_flags(moto_server, s3_bucket, g.url),
                    "--store_retries", "0", "--store_timeout", "3", "--upload_retry_seconds", "0.5")
    try:
        digest = server.post("/p", data=pictures.photo(300, 200)).json()["hash"]
        journal = os.path.join(base, ".imageserver", "uploads")
        with tmpfs(journal, "64k"):
            filler = fill(journal, leave=0)
            # With the store up, nothing is journalled: the output is stored before the reply.
            assert server.get(url(digest, "x40.jpg")).status_code == 200
            assert stored(moto_server, s3_bucket, ImageKey("p", digest).remote_file("images", "x40.jpg"))
            g.shut()
            assert_disk_full(server.get(url(digest, "x50.jpg")))
            assert not os.path.exists(ImageKey("p", digest).local_file(base, "x50.jpg"))
            os.unlink(filler)
            made = server.get(url(digest, "x50.jpg"))
            assert made.status_code == 200 and made.headers["X-Image-Stored"] == "pending"
            g.open()
            key = ImageKey("p", digest).remote_file("images", "x50.jpg")
            wait_until(lambda: stored(moto_server, s3_bucket, key), "the output stored", seconds=30)
    finally:
        server.stop()


def stored(moto_server, bucket: str, key: str) -> bool:
    try:
        moto_server.client().head_object(Bucket=bucket, Key=key)
        return True
    except Exception:  # botocore's 404: not there yet
        return False
