"""Real `images server` processes on S3 (moto's server) and on Manta (the test server): uploads that
block until stored, many servers on one store, on-demand outputs stored before the reply, POST
process, and a store that is down or refuses."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from imageserver.core.paths import ImageKey
from tests import pictures
from tests.conftest import manta_flags, s3_flags
from tests.helpers import image_url, wait_until
from tests.system.remote import MantaView, S3View, md5


@pytest.fixture(params=["s3", "manta"])
def remote(request):
    """(flags for `images server`, a view of the store, a function giving flags through a gate)."""
    if request.param == "s3":
        moto_server = request.getfixturevalue("moto_server")
        bucket = request.getfixturevalue("s3_bucket")
        return (s3_flags(moto_server, bucket), S3View(moto_server, bucket),
                lambda url: s3_flags(moto_server, bucket, url), moto_server.url)
    manta = request.getfixturevalue("manta_server")
    key = request.getfixturevalue("manta_keys")["rsa"]
    return manta_flags(manta.url, key), MantaView(manta), lambda url: manta_flags(url, key), manta.url


def local_names(server, digest: str) -> list[str]:
    folder = ImageKey("p", digest).local_folder(server.base_path)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_upload_is_stored_and_another_server_serves_it_in_any_size(remote, start_server):
    flags, store, _, _ = remote
    first, second = start_server(*flags), start_server(*flags)
    photo = pictures.photo(640, 480, "jpeg")
    posted = first.post("/p?outputs=x300.jpg,x300.webp", data=photo)
    assert posted.status_code == 200, posted.text
    digest = posted.json()["hash"]
    folder = ImageKey("p", digest).folder
    # The upload returned only once everything was in the store.
    assert store.names(folder) == ["info.json", "original", "x300.jpg", "x300.webp"]
    assert store.read(folder, "original") == photo
    assert [store.content_type(folder, name) for name in store.names(folder)] == \
        ["application/json", "image/jpeg", "image/jpeg", "image/webp"]

    assert local_names(second, digest) == []
    assert second.get(f"/{folder}/info.json").json() == posted.json()
    assert second.get(f"/{folder}/original").content == photo
    fetched = second.get(f"/{folder}/x300.webp")
    assert fetched.status_code == 200 and fetched.headers["X-Image-Cache"] == "fetched"
    assert fetched.content == store.read(folder, "x300.webp")
    made = second.get(f"/{folder}/w100.jpg")
    assert made.status_code == 200 and made.headers["X-Image-Cache"] == "made"
    assert "X-Image-Stored" not in made.headers
    image = pictures.decode(made.content)
    assert (image.width, image.height, image.format) == (100, 75, "JPEG")
    # Stored before the reply: in the store the moment the GET returns.
    assert "w100.jpg" in store.names(folder)
    assert store.read(folder, "w100.jpg") == made.content
    assert store.content_type(folder, "w100.jpg") == "image/jpeg"
    # The first server, which never made w100.jpg, gets it from the store.
    again = first.get(f"/{folder}/w100.jpg")
    assert again.headers["X-Image-Cache"] == "fetched" and again.content == made.content


def test_an_image_the_store_does_not_have_is_404_and_leaves_no_folder(remote, start_server):
    flags, _, _, _ = remote
    server = start_server(*flags)
    folder = ImageKey("p", "0" * 32).folder
    for method, path in (("GET", "x100.jpg"), ("GET", "info.json"), ("GET", "original"),
                         ("POST", "process?outputs=x100.jpg")):
        answer = (server.get if method == "GET" else server.post)(f"/{folder}/{path}")
        assert answer.status_code == 404 and "error" in answer.json(), (method, path, answer.text)
    # Else anyone could fill the disk with empty folders, one per made-up hash.
    assert not os.path.exists(os.path.join(server.base_path, "p", "000"))


def test_post_process_makes_only_the_outputs_missing_in_the_store(remote, start_server):
    flags, store, _, _ = remote
    first, second = start_server(*flags), start_server(*flags)
    posted = first.post("/p?outputs=x300.jpg", data=pictures.photo(400, 300, "jpeg"))
    digest = posted.json()["hash"]
    folder = ImageKey("p", digest).folder
    done = second.post(f"/{folder}/process?outputs=x300.jpg,w50.jpg,w60.png")
    assert done.status_code == 200, done.text
    assert store.names(folder) == ["info.json", "original", "w50.jpg", "w60.png", "x300.jpg"]
    assert store.content_type(folder, "w60.png") == "image/png"
    # The second server made only what the store lacked: it has no x300.jpg of its own.
    assert "x300.jpg" not in local_names(second, digest)
    assert "w50.jpg" in local_names(second, digest)
    if isinstance(store, MantaView):
        assert store.puts(folder, "x300.jpg") == 1
    # An output on local disk but gone from the store is stored again.
    store.delete(folder, "x300.jpg")
    assert first.post(f"/{folder}/process?outputs=x300.jpg").status_code == 200
    assert "x300.jpg" in store.names(folder)


def test_a_store_that_is_down_gives_503_and_the_server_keeps_serving(remote, start_server, gate,
                                                                    statsd_listener):
    flags, store, through, url = remote
    g = gate(int(url.rsplit(":", 1)[1]))
    server = start_server(*through(g.url), "--store_retries", "0", "--upload_retry_seconds", "0.5",
                          "--store_timeout", "3", "--statsd_port", str(statsd_listener.port))
    kept = server.post("/p?outputs=x200.jpg", data=pictures.photo(300, 200, "jpeg"))
    assert kept.status_code == 200, kept.text
    folder = ImageKey("p", kept.json()["hash"]).folder
    g.shut()

    photo = pictures.photo(320, 240, "jpeg")
    refused = server.post("/p?outputs=x100.jpg", data=photo)
    assert refused.status_code == 503 and "cannot be reached" in refused.json()["error"]
    assert local_names(server, md5(photo)) == []          # nothing half-written, no temp files
    unknown = server.get(image_url("1" * 32, "info.json"))
    assert unknown.status_code == 503 and "error" in unknown.json()

    # What the server has, it serves: info, outputs made, and new sizes of its originals.
    assert server.get(f"/{folder}/info.json").status_code == 200
    assert server.get(f"/{folder}/x200.jpg").status_code == 200
    made = server.get(f"/{folder}/w120.webp")
    assert made.status_code == 200 and pictures.decode(made.content).width == 120
    assert made.headers["X-Image-Cache"] == "made" and made.headers["X-Image-Stored"] == "pending"
    statsd_listener.wait_for("image_server.remote_upload_failed:1|c")
    assert server.get("/status_check").json()["pending_uploads"] == 1
    assert "w120.webp" not in store.names(folder)
    hit = server.get(f"/{folder}/w120.webp")
    assert hit.headers["X-Image-Cache"] == "hit" and hit.content == made.content

    g.open()
    wait_until(lambda: "w120.webp" in store.names(folder), what="the retried upload")
    wait_until(lambda: server.get("/status_check").json()["pending_uploads"] == 0,
               what="the pending upload to be crossed off")
    assert store.read(folder, "w120.webp") == made.content
    assert server.post("/p?outputs=x100.jpg", data=photo).status_code == 200
    assert store.names(ImageKey("p", md5(photo)).folder) == ["info.json", "original", "x100.jpg"]
    assert "upload of" in server.log() and "failed" in server.log()


def test_s3_objects_are_public_read_by_default_and_cacheable(moto_server, s3_bucket, start_server):
    server = start_server(*s3_flags(moto_server, s3_bucket))
    digest = server.post("/p?outputs=x50.gif", data=pictures.solid(80, 60, "red", "png")).json()["hash"]
    store = S3View(moto_server, s3_bucket)
    folder = ImageKey("p", digest).folder
    assert store.names(folder) == ["info.json", "original", "x50.gif"]
    assert [store.content_type(folder, name) for name in store.names(folder)] == \
        ["application/json", "image/png", "image/gif"]
    assert all(store.public(folder, name) for name in store.names(folder))
    head = store.client.head_object(Bucket=s3_bucket, Key=f"images/{folder}/x50.gif")
    assert head["CacheControl"] == "public, max-age=31536000, immutable"


def test_s3_acl_none_sends_no_acl(moto_server, s3_bucket, start_server):
    server = start_server(*s3_flags(moto_server, s3_bucket), "--s3_acl", "none")
    digest = server.post("/p", data=pictures.solid(40, 30, "blue", "png")).json()["hash"]
    store = S3View(moto_server, s3_bucket)
    assert store.names(ImageKey("p", digest).folder) == ["info.json", "original"]
    assert not store.public(ImageKey("p", digest).folder, "original")


def test_a_bucket_that_does_not_exist_is_a_502(moto_server, start_server):
    server = start_server(*s3_flags(moto_server, "no-such-bucket-here"), "--store_retries", "0")
    answer = server.post("/p", data=pictures.solid(40, 30, "blue", "png"))
    assert answer.status_code == 502
    assert "NoSuchBucket" in answer.json()["error"]


def test_an_output_the_store_refuses_is_served_and_stored_once_it_takes_it(manta_server, manta_keys,
                                                                             start_server):
    # The store answers (it has no such output), then refuses the upload: the client gets its image.
    server = start_server(*manta_flags(manta_server.url, manta_keys["rsa"]), "--store_retries", "0",
                          "--upload_retry_seconds", "0.5")
    posted = server.post("/p", data=pictures.photo(300, 200, "jpeg"))
    folder = ImageKey("p", posted.json()["hash"]).folder
    store = MantaView(manta_server)
    manta_server.state.refuse_puts_with = 500
    made = server.get(f"/{folder}/x80.png")
    assert made.status_code == 200 and pictures.decode(made.content).format == "PNG"
    assert made.headers["X-Image-Stored"] == "pending"
    assert "x80.png" not in store.names(folder)
    assert "upload of" in server.log() and "Manta answered 500" in server.log()

    manta_server.state.refuse_puts_with = 0
    wait_until(lambda: "x80.png" in store.names(folder), what="the retried upload")
    assert store.read(folder, "x80.png") == made.content
    assert store.content_type(folder, "x80.png") == "image/png"
    wait_until(lambda: server.get("/status_check").json()["pending_uploads"] == 0,
               what="the pending upload to be crossed off")


@pytest.mark.parametrize("status", [500, 503])
def test_manta_errors_are_502_or_503(manta_server, manta_keys, start_server, status):
    server = start_server(*manta_flags(manta_server.url, manta_keys["ecdsa"]), "--store_retries", "1")
    manta_server.state.refuse_with = status
    photo = pictures.solid(40, 30, "blue", "png")
    answer = server.post("/p", data=photo)
    assert answer.status_code == {500: 502, 503: 503}[status]
    assert "Manta answered" in answer.json()["error"]
    assert local_names(server, md5(photo)) == []
    manta_server.state.refuse_with = 0
    assert server.post("/p", data=photo).status_code == 200


def test_manta_with_a_key_it_does_not_know_is_a_502(manta_server, tmp_path, start_server):
    from tests.storage_servers import make_key_pair
    stranger = make_key_pair(str(tmp_path), "ecdsa")
    server = start_server(*manta_flags(manta_server.url, stranger))
    answer = server.post("/p", data=pictures.solid(40, 30, "blue", "png"))
    assert answer.status_code == 502
    assert "KeyDoesNotExist" in answer.json()["error"]
    assert manta_server.names("public/images/p") == []


def test_manta_key_from_the_ssh_agent_when_the_file_needs_a_passphrase(
        manta_server, manta_keys, tmp_path, start_server):
    key = manta_keys["rsa"]
    locked = key.write_encrypted(str(tmp_path / "id_locked"), b"a passphrase")
    socket_path = str(tmp_path / "agent.sock")
    import subprocess
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", socket_path], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(socket_path), "the ssh-agent", seconds=10)
        subprocess.run(["ssh-add", "-q", key.private_path], env={"SSH_AUTH_SOCK": socket_path},
                       check=True, stderr=subprocess.DEVNULL)
        server = start_server(*manta_flags(manta_server.url, key, identity=locked),
                              env={"SSH_AUTH_SOCK": socket_path})
        answer = server.post("/p", data=pictures.solid(40, 30, "blue", "png"))
        assert answer.status_code == 200, answer.text
        digest = answer.json()["hash"]
        assert MantaView(manta_server).names(ImageKey("p", digest).folder) == ["info.json", "original"]
    finally:
        agent.terminate()
        agent.wait()


def test_the_original_is_fetched_once_however_many_requests_ask(manta_server, manta_keys,
                                                                start_server):
    flags = manta_flags(manta_server.url, manta_keys["rsa"])
    first, second = start_server(*flags), start_server(*flags, "--workers", "3")
    digest = first.post("/p", data=pictures.photo(500, 400, "jpeg")).json()["hash"]
    folder = ImageKey("p", digest).folder
    names = [f"w{width}.jpg" for width in range(20, 140, 20)]
    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(lambda name: second.get(f"/{folder}/{name}"), names))
    assert [answer.status_code for answer in answers] == [200] * len(names)
    assert [pictures.decode(answer.content).width for answer in answers] == list(range(20, 140, 20))
    original = f"/tester/public/images/{folder}/original"
    fetches = [status for method, path, status in manta_server.state.requests
               if method == "GET" and path == original]
    assert fetches == [200]


def test_manta_answers_of_503_are_tried_again(manta_server, manta_keys, start_server):
    # The purge sweep's look at the tombstones once, at start-up, and not again during the test.
    server = start_server(*manta_flags(manta_server.url, manta_keys["rsa"]), "--store_retries", "2",
                          "--purge_poll_seconds", "3600")
    wait_until(lambda: any("/.purged" in path for _, path, _ in manta_server.state.requests),
               "the purge sweep's first look")
    manta_server.state.fail_next = 2
    answer = server.post("/p?outputs=x20.jpg", data=pictures.solid(40, 30, "blue", "png"))
    assert answer.status_code == 200, answer.text
    statuses = [status for _, path, status in manta_server.state.requests if "/.purged" not in path]
    assert statuses[:2] == [503, 503] and 503 not in statuses[2:]
    assert MantaView(manta_server).names(ImageKey("p", answer.json()["hash"]).folder) == \
        ["info.json", "original", "x20.jpg"]
