"""`images process`, in file mode and in stdin mode, against S3 (moto's server), Manta (the test
server) and local disk only."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios

from imageserver.core.paths import ImageKey
from tests import pictures
from tests.conftest import manta_flags, s3_flags
from tests.helpers import IMAGES, server_environment
from tests.system.remote import MantaView, S3View, md5

OUTPUTS = ["--outputs", "x300.webp,x300.jpg", "--namespace", "p"]


def run(*args: str, stdin: str = "", stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([IMAGES, *args], input=stdin.encode(), stdout=subprocess.PIPE,
                          stderr=stderr, env=server_environment(), timeout=300)


def original_file(folder, data: bytes) -> str:
    """The original laid out as the original's Manta task finds it: in its partitioned folder."""
    path = folder / "input" / ImageKey("p", md5(data)).folder / "original"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return str(path)


def test_file_mode_stores_the_outputs_and_prints_the_line(moto_server, s3_bucket, tmp_path):
    photo = pictures.photo(640, 480, "jpeg")
    path = original_file(tmp_path, photo)
    flags = [*s3_flags(moto_server, s3_bucket), "--local_base_path", str(tmp_path / "cache")]
    done = run(*OUTPUTS, *flags, "process", path)
    assert done.returncode == 0, done.stderr
    folder = ImageKey("p", md5(photo)).folder
    url = f"{moto_server.url}/{s3_bucket}/images/{folder}"
    assert done.stdout.decode() == f"{md5(photo)}\t{url}\t640\t480\n"
    store = S3View(moto_server, s3_bucket)
    assert store.names(folder) == ["info.json", "original", "x300.jpg", "x300.webp"]
    assert store.read(folder, "original") == photo
    image = pictures.decode(store.read(folder, "x300.webp"))
    assert (image.width, image.height, image.format) == (300, 300, "WEBP")
    with_cdn = run(*OUTPUTS, *flags, "--remote_base_url", "https://cdn.example.com/", "process", path)
    assert with_cdn.stdout.decode().split("\t")[1] == f"https://cdn.example.com/images/{folder}"


def test_complete_items_are_skipped_with_one_listing(manta_server, manta_keys, tmp_path):
    photo = pictures.photo(320, 240, "jpeg")
    path = original_file(tmp_path, photo)
    flags = [*manta_flags(manta_server.url, manta_keys["ecdsa"]), "--local_base_path",
             str(tmp_path / "cache")]
    first = run(*OUTPUTS, *flags, "process", path)
    assert first.returncode == 0, first.stderr
    before = len(manta_server.state.requests)
    second = run(*OUTPUTS, *flags, "process", path)
    assert second.returncode == 0 and second.stdout == first.stdout
    again = manta_server.state.requests[before:]
    assert [method for method, _, _ in again] == ["GET"]     # the listing; info.json is local
    # One output more: only it is made and stored.
    third = run("--outputs", "x300.webp,x300.jpg,w64.png", *flags, "process", path)
    assert third.returncode == 0, third.stderr
    puts = [where for method, where, _ in manta_server.state.requests[before:] if method == "PUT"]
    assert [where.rsplit("/", 1)[1] for where in puts] == ["w64.png"]


def test_stdin_mode_takes_hashes_urls_and_both(manta_server, manta_keys, tmp_path, source_server):
    flags = [*manta_flags(manta_server.url, manta_keys["rsa"]), "--local_base_path",
             str(tmp_path / "cache"), "--allow_private_sources", "--processor_concurrency", "2"]
    known = pictures.photo(200, 100, "jpeg")
    assert run(*OUTPUTS, *flags, "process", original_file(tmp_path, known)).returncode == 0
    by_url, by_both = pictures.photo(120, 90, "png"), pictures.photo(90, 60, "jpeg")
    source_server.routes["/a.png"] = (200, {"Content-Type": "image/png"}, by_url)
    source_server.routes["/b.jpg"] = (200, {"Content-Type": "image/jpeg"}, by_both)
    lines = [md5(known), f"{source_server.url}/a.png", "f" * 32,
             f"{md5(by_both)}\t{source_server.url}/b.jpg", str(tmp_path / "no" / "such" / "file")]
    done = run(*OUTPUTS, *flags, "process", "-", stdin="\n".join(lines) + "\n")
    assert done.returncode == 1
    results = [line.split("\t") for line in done.stdout.decode().splitlines()]
    assert [(fields[0], fields[2], fields[3]) for fields in results] == \
        [(md5(known), "200", "100"), (md5(by_url), "120", "90"), (md5(by_both), "90", "60")]
    errors = done.stderr.decode().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"images: {'f' * 32}: no image")
    assert "such/file" in errors[1] and "partitioned" in errors[1]
    store = MantaView(manta_server)
    for data in (by_url, by_both):
        assert store.names(ImageKey("p", md5(data)).folder) == \
            ["info.json", "original", "x300.jpg", "x300.webp"]


def test_a_hash_whose_url_has_other_bytes_fails(manta_server, manta_keys, tmp_path, source_server):
    flags = [*manta_flags(manta_server.url, manta_keys["rsa"]), "--local_base_path",
             str(tmp_path / "cache"), "--allow_private_sources"]
    source_server.routes["/c.png"] = (200, {}, pictures.solid(10, 10, "red"))
    done = run(*OUTPUTS, *flags, "process", stdin=f"{'a' * 32}\t{source_server.url}/c.png\n")
    assert done.returncode == 1 and done.stdout == b""
    assert f"not {'a' * 32}" in done.stderr.decode()


def test_local_only_process_makes_outputs_on_disk(tmp_path):
    photo = pictures.photo(400, 300, "jpeg")
    path = original_file(tmp_path, photo)
    cache = tmp_path / "public"
    done = run(*OUTPUTS, "--local_base_path", str(cache), "process", path)
    assert done.returncode == 0, done.stderr
    folder = cache / ImageKey("p", md5(photo)).folder
    assert sorted(os.listdir(folder)) == ["info.json", "original", "x300.jpg", "x300.webp"]
    assert done.stdout.decode() == f"{md5(photo)}\t{ImageKey('p', md5(photo)).folder}\t400\t300\n"


def test_a_progress_bar_on_a_terminal_only(tmp_path):
    paths = [original_file(tmp_path / str(n), pictures.photo(100, 80, "jpeg")) for n in range(3)]
    flags = ["--outputs", "w50.jpg", "--local_base_path", str(tmp_path / "public")]
    main, terminal = pty.openpty()
    # A terminal 80 columns wide, as a user's is (a new pseudo-terminal has no size at all).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        done = run(*flags, "process", *paths, stderr=terminal)
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
    assert done.returncode == 0
    assert b"3/3" in shown and b"100%" in shown and b"0 failed, 0 skipped" in shown
    piped = run(*flags, "process", *paths)
    assert piped.returncode == 0 and piped.stderr == b""
    assert len(piped.stdout.splitlines()) == 3


def test_auto_in_outputs_is_every_format_it_may_stand_for(moto_server, s3_bucket, tmp_path):
    photo, seethrough = pictures.photo(300, 200, "jpeg"), pictures.transparent_png(60, 40)
    flags = [*s3_flags(moto_server, s3_bucket), "--local_base_path", str(tmp_path / "cache"),
             "--outputs", "w30.auto", "--extensions", "jpg,png,webp"]
    done = run(*flags, "process", original_file(tmp_path / "a", photo),
               original_file(tmp_path / "b", seethrough))
    assert done.returncode == 0, done.stderr
    store = S3View(moto_server, s3_bucket)
    assert store.names(ImageKey("p", md5(photo)).folder) == ["info.json", "original", "w30.jpg", "w30.webp"]
    assert store.names(ImageKey("p", md5(seethrough)).folder) == \
        ["info.json", "original", "w30.png", "w30.webp"]
    # Everything there: the second run skips both, at the cost of their listings.
    again = run(*flags, "process", original_file(tmp_path / "c", photo))
    assert again.returncode == 0 and again.stdout.decode().startswith(md5(photo))
