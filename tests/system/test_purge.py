"""Purge (DELETE /<ns>/<folder> with --purge_key): two servers on one bucket (moto), nginx in front of
the one that was not asked; every file of the image is a 404 on both and through nginx within
seconds, nothing is left in the bucket nor on either disk, and the same bytes can be uploaded again.
A purge cut short by a crash is finished when the server starts again."""
from __future__ import annotations

import os
import time

import requests

from imageserver.paths import ImageKey
from tests import pictures
from tests.conftest import s3_flags
from tests.faults import kill_everything, launch
from tests.helpers import wait_until
from tests.nginx_server import Nginx
from tests.system.remote import S3View

KEY = "a-purge-key-of-32-characters-000"
BEARER = {"Authorization": f"Bearer {KEY}"}
PURGE_FLAGS = ["--purge_key", KEY, "--purge_poll_seconds", "1"]
FILES = ["original", "info.json", "x300.jpg", "w200.webp", "w100.jpg"]


def bucket_keys(moto_server, bucket: str) -> list[str]:
    listed = moto_server.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", ()))


def local_files(base: str, key: ImageKey) -> list[str]:
    folder = key.local_folder(base)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_a_purge_removes_the_image_from_both_servers_nginx_and_the_bucket(
        moto_server, s3_bucket, start_server, tmp_path):
    flags = [*s3_flags(moto_server, s3_bucket), *PURGE_FLAGS]
    first, second = start_server(*flags), start_server(*flags)
    nginx = Nginx(second, tmp_path, *flags)
    try:
        photo = pictures.photo(640, 480, "jpeg")
        posted = first.post("/p?outputs=x300.jpg,w200.webp", data=photo)
        assert posted.status_code == 200, posted.text
        key = ImageKey("p", posted.json()["hash"])
        other = first.post("/p", data=pictures.photo(300, 200, "png")).json()["hash"]
        # Every file on both disks (the first made w100.jpg, with its variant budget's record; the
        # second fetched it), and sent from the second's disk by nginx.
        for server in (first, second):
            for name in FILES:
                assert server.get(f"/{key.folder}/{name}").status_code == 200
        assert nginx.get(f"/{key.folder}/info.json").status_code == 200
        for name in FILES[2:]:
            answer = nginx.get(f"/{key.folder}/{name}")
            assert answer.status_code == 200 and answer.headers["X-Image-Cache"] == "hit"
        assert ".variants" in local_files(first.base_path, key)
        assert len(bucket_keys(moto_server, s3_bucket)) == len(FILES) + 2

        purged = requests.delete(f"{first.url}/{key.folder}", headers=BEARER,
                               timeout=60)
        started = time.monotonic()
        assert purged.status_code == 200, purged.text
        assert purged.json() == {"purged": key.folder, "removed": {"store": 5, "local": 6}}
        for name in FILES:
            assert first.get(f"/{key.folder}/{name}").status_code == 404

        def everywhere_gone():
            return all(server.get(f"/{key.folder}/{name}").status_code == 404
                       for server in (second, nginx) for name in FILES)

        wait_until(everywhere_gone, "every file a 404 on the second server and through nginx",
                   seconds=15, step=0.1)
        print(f"\npurge propagation to the other server and its nginx: "
              f"{time.monotonic() - started:.2f} s (--purge_poll_seconds 1)")
        assert local_files(first.base_path, key) == [] and local_files(second.base_path, key) == []
        # Nothing of it is left in the bucket (the tombstone aside), and the other image is untouched.
        other_folder = ImageKey("p", other).folder
        assert bucket_keys(moto_server, s3_bucket) == sorted(
            [f"images/.purged/p.{key.hash}", f"images/{other_folder}/info.json",
             f"images/{other_folder}/original"])
        assert second.get(f"/{other_folder}/w50.jpg").status_code == 200

        # Idempotent: a second purge finds nothing, and says so.
        again = requests.delete(f"{second.url}/{key.folder}", headers=BEARER, timeout=60)
        assert again.status_code == 200 and again.json()["removed"] == {"store": 0, "local": 0}

        # The same bytes again: a new image, on the server that did not purge it; the tombstone
        # goes, and the other server's sweep leaves it alone.
        reposted = second.post("/p?outputs=x300.jpg", data=photo)
        assert reposted.status_code == 200 and reposted.json()["hash"] == key.hash
        assert f"images/.purged/p.{key.hash}" not in bucket_keys(moto_server, s3_bucket)
        time.sleep(2.5)   # two sweeps of each server
        for server in (first, second, nginx):
            answer = server.get(f"/{key.folder}/x300.jpg")
            assert answer.status_code == 200 and pictures.decode(answer.content).width == 300
        assert first.get(f"/{key.folder}/w120.jpg").status_code == 200
        assert "purged p/" in first.log() and "purged by another server" in second.log()
    finally:
        nginx.stop()


def test_a_purge_needs_the_key(start_server, shared_server):
    server = start_server(*PURGE_FLAGS)
    digest = server.post("/p", data=pictures.photo(120, 80)).json()["hash"]
    url = f"{server.url}/{ImageKey('p', digest).folder}"
    for headers, status in (({}, 401), ({"Authorization": f"Basic {KEY}"}, 401),
                            ({"Authorization": "Bearer " + "x" * len(KEY)}, 403),
                            ({"Authorization": "Bearer " + KEY[:-1]}, 403)):
        answer = requests.delete(url, headers=headers, timeout=10)
        assert answer.status_code == status and "error" in answer.json(), answer.text
    assert server.get(f"/{ImageKey('p', digest).folder}/info.json").status_code == 200
    # Without --purge_key the method is not offered.
    digest = shared_server.post("/p", data=pictures.photo(120, 80)).json()["hash"]
    answer = requests.delete(f"{shared_server.url}/{ImageKey('p', digest).folder}", headers=BEARER,
                             timeout=10)
    assert answer.status_code == 405 and "error" in answer.json()
    assert shared_server.get(f"/{ImageKey('p', digest).folder}/info.json").status_code == 200


def test_a_purge_cut_short_by_a_crash_is_finished_at_the_next_start(
        moto_server, s3_bucket, gate, tmp_path):
    base, log = str(tmp_path / "public"), str(tmp_path / "server.log")
    store_gate = gate(int(moto_server.url.rsplit(":", 1)[1]))
    flags = [*s3_flags(moto_server, s3_bucket, store_gate.url), *PURGE_FLAGS, "--store_retries", "0",
             "--store_timeout", "2"]
    server = launch(base, log, *flags)
    photo = pictures.photo(400, 300, "jpeg")
    key = ImageKey("p", server.post("/p?outputs=x300.jpg", data=photo).json()["hash"])
    # The store goes down: the purge is written down, and fails; then the whole server is killed.
    store_gate.shut()
    failed = requests.delete(f"{server.url}/{key.folder}", headers=BEARER, timeout=60)
    assert failed.status_code in (502, 503), failed.text
    kill_everything(server)
    assert os.listdir(os.path.join(base, ".imageserver", "purges")) == [f"p.{key.hash}"]
    assert len(bucket_keys(moto_server, s3_bucket)) == 3
    assert local_files(base, key) != []

    store_gate.open()
    again = launch(base, log, *flags)
    try:
        wait_until(lambda: bucket_keys(moto_server, s3_bucket) == [f"images/.purged/p.{key.hash}"],
                   "the purge finished after the restart", seconds=15)
        wait_until(lambda: local_files(base, key) == [], "the local files gone", seconds=15)
        assert os.listdir(os.path.join(base, ".imageserver", "purges")) == []
        for name in ("original", "info.json", "x300.jpg"):
            assert again.get(f"/{key.folder}/{name}").status_code == 404
        assert "finished the purge of" in again.log()
        assert again.post("/p", data=photo).status_code == 200
    finally:
        kill_everything(again)
