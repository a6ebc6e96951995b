"""Purge (DELETE /<ns>/<folder> with --purge_key): two servers on one bucket (moto), nginx in front of
the one that was not asked; every file of the image is a 404 on both and through nginx within
seconds, nothing is left in the bucket nor on either disk, and the same bytes can be uploaded again.
A purge cut short by a crash is finished when the server starts again."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from imageserver.core.paths import ImageKey
from tests import pictures
from tests.conftest import manta_flags, s3_flags
from tests.faults import kill_everything, launch
from tests.helpers import wait_until
from tests.nginx_server import Nginx
from tests.system.remote import MantaView

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
        moto_server, s3_bucket, start_server, statsd_listener, tmp_path):
    flags = [*s3_flags(moto_server, s3_bucket), *PURGE_FLAGS, "--statsd_port", str(statsd_listener.port)]
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
        statsd_listener.wait_for("image_server.purge:1|c", "image_server.purge.swept")
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


def test_an_output_made_elsewhere_after_the_purge_does_not_bring_the_image_back(
        moto_server, s3_bucket, start_server):
    # The second server keeps its local copy for now (its sweep looks once, at start-up): an output
    # it makes from that copy is refused when stored, and removed from the bucket again.
    flags = [*s3_flags(moto_server, s3_bucket), "--purge_key", KEY]
    first, second = start_server(*flags), start_server(*flags, "--purge_poll_seconds", "3600")
    digest = first.post("/p", data=pictures.photo(320, 240)).json()["hash"]
    key = ImageKey("p", digest)
    assert second.get(f"/{key.folder}/w60.jpg").status_code == 200      # its original fetched
    assert requests.delete(f"{first.url}/{key.folder}", headers=BEARER, timeout=60).status_code == 200
    assert "original" in local_files(second.base_path, key)
    late = second.get(f"/{key.folder}/w70.jpg")
    assert late.status_code == 404 and "purged" in late.json()["error"]
    assert bucket_keys(moto_server, s3_bucket) == [f"images/.purged/p.{digest}"]


def test_a_purge_on_manta_deletes_the_objects_then_the_empty_folders(manta_server, manta_keys,
                                                                    start_server):
    server = start_server(*manta_flags(manta_server.url, manta_keys["rsa"]), *PURGE_FLAGS)
    kept = server.post("/p", data=pictures.photo(100, 80)).json()["hash"]
    digest = server.post("/p?outputs=x50.jpg", data=pictures.photo(120, 90)).json()["hash"]
    key, tree = ImageKey("p", digest), manta_server.state.tree
    folder = f"/tester/public/images/{key.folder}"
    assert MantaView(manta_server).names(key.folder) == ["info.json", "original", "x50.jpg"]
    answer = requests.delete(f"{server.url}/{key.folder}", headers=BEARER, timeout=60)
    assert answer.status_code == 200 and answer.json()["removed"]["store"] == 3
    # The image's folder and its parents went; the namespace's folder, shared, stays (Manta refuses
    # to delete a folder that holds anything: the purge only asks).
    assert [path for path in tree if path.startswith(f"/tester/public/images/p/{digest[:3]}")] == []
    assert folder not in tree and "/tester/public/images/p" in tree
    assert MantaView(manta_server).names(ImageKey("p", kept).folder) == ["info.json", "original"]
    assert tree[f"/tester/public/images/.purged/p.{digest}"]["type"] == "object"
    assert server.get(f"/{key.folder}/x50.jpg").status_code == 404


@pytest.mark.slow
@pytest.mark.quiet
def test_what_the_tombstones_cost(moto_server, s3_bucket, tmp_path):
    """A pass of the sweep: one LIST per 1000 tombstones, and one stat per tombstone; a request:
    nothing, but an object stored, which costs one HEAD more."""
    from imageserver.core.metrics import NullMetrics
    from imageserver.core.settings import Settings
    from imageserver.images.purge import Sweep
    from imageserver.storage import build_store

    settings = Settings(local_base_path=str(tmp_path / "public"), aws_bucket=s3_bucket,
                        s3_endpoint_url=moto_server.url, aws_access_key_id="testing",
                        aws_secret_key="testing", remote_base_path="images")
    client = moto_server.client()
    count = 1000
    with ThreadPoolExecutor(8) as pool:     # the set-up, not what is measured
        list(pool.map(lambda n: client.put_object(Bucket=s3_bucket, Key=f"images/.purged/p.{n:032x}",
                                                  Body=b"{}"), range(count)))
    sweep = Sweep(settings, build_store(settings), NullMetrics())
    sweep.once()
    started = time.perf_counter()
    for _ in range(5):
        sweep.once()
    per_pass = (time.perf_counter() - started) / 5
    started = time.perf_counter()
    for n in range(count):
        os.path.isdir(ImageKey("p", f"{n:032x}").local_folder(settings.base_path))
    stats = time.perf_counter() - started
    store = build_store(settings)
    started = time.perf_counter()
    for n in range(50):
        store.exists(f"images/.purged/p.{n:032x}")
    per_check = (time.perf_counter() - started) / 50
    print(f"\nsweep pass over {count} tombstones: {per_pass * 1000:.0f} ms (one LIST page on moto, "
          f"and {count} stats: {stats * 1000:.1f} ms of it); the check after each object stored: "
          f"{per_check * 1000:.1f} ms (one HEAD on moto)")
    assert per_pass < 2.0 and len(sweep.first_seen) == count
