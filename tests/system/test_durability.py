"""Durable before acknowledged, seen from outside with strace on a real server: every file is
flushed before it is renamed into place, and its folder after, before the reply."""
import glob
import os
import re
import shutil
import signal

import pytest

from imageserver.core.paths import ImageKey
from tests import pictures
from tests.conftest import s3_flags
from tests.faults import check_files, launch
from tests.helpers import image_url

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is not installed")
CALL = re.compile(r"^(\w+)\((.*)\)\s+= (-?\d+)")
FD_PATH = re.compile(r"^\d+<(.*)>$")


def traced_server(tmp_path, *flags):
    """A one-worker server under `strace -ff`: one trace file per process and thread, each in the
    order its calls were made."""
    prefix = [STRACE, "-ff", "-y", "-qq", "-s", "300", "-o", str(tmp_path / "trace"),
              "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,sendto"]
    return launch(str(tmp_path / "public"), str(tmp_path / "server.log"), *flags, workers=1,
                  prefix=prefix)


def stop(server) -> None:
    """SIGTERM to the master (strace's child): it stops gracefully, and strace with it."""
    strace = server.process.pid
    with open(f"/proc/{strace}/task/{strace}/children") as f:
        master = int(f.read().split()[0])
    os.kill(master, signal.SIGTERM)
    server.process.wait(60)


def calls(tmp_path, base: str) -> list[tuple]:
    """(name, paths) of the calls about files under `base`, and ("reply", status line) for each
    HTTP answer, from the trace of the thread that answered."""
    found = []
    for trace in glob.glob(str(tmp_path / "trace.*")):
        with open(trace, errors="replace") as f:
            lines = f.read().splitlines()
        if not any('"HTTP/1.1 ' in line for line in lines):
            continue
        for line in lines:
            match = CALL.match(line)
            if not match:
                continue
            name, args = match.group(1), match.group(2)
            if name == "sendto" and '"HTTP/1.1 ' in args:
                found.append(("reply", args.split('"HTTP/1.1 ')[1][:3]))
            elif name in ("fsync", "fdatasync"):
                path = FD_PATH.match(args).group(1)
                if path.startswith(base):
                    found.append(("fsync", path))
            elif name.startswith("rename") and base in args:
                found.append(("rename", *re.findall(r'"([^"]+)"', args)))
    return found


def check_flushed(found: list[tuple], name_ends: str) -> None:
    """The last rename into a path ending in `name_ends`: its file flushed before, its folder after,
    both before the next reply, which is a 200."""
    index = max(i for i, call in enumerate(found) if call[0] == "rename" and call[2].endswith(name_ends))
    _, temp, final = found[index]
    assert ("fsync", temp) in found[:index], f"{final} renamed into place unflushed"
    reply = next(i for i in range(index, len(found)) if found[i][0] == "reply")
    assert found[reply] == ("reply", "200")
    assert ("fsync", os.path.dirname(final)) in found[index:reply], \
        f"the folder of {final} not flushed before the reply"


def test_an_upload_and_a_new_size_are_on_disk_before_the_reply(tmp_path):
    server = traced_server(tmp_path)
    try:
        posted = server.post("/p", params={"outputs": "x300.jpg,x100.webp"}, data=pictures.photo(400, 300))
        assert posted.status_code == 200, posted.text
        digest = posted.json()["hash"]
        folder = ImageKey("p", digest).local_folder(server.base_path)
        got = server.get(image_url(digest, "w120.png"))
        assert got.status_code == 200 and pictures.decode(got.content).width == 120
    finally:
        stop(server)
    found = calls(tmp_path, server.base_path)
    for name in ("original", "info.json", "x300.jpg", "x100.webp", "w120.png"):
        check_flushed(found, os.path.join(folder, name))
    # The image's new folder is flushed in its parent, and so on up: else it could vanish whole.
    for parent in (os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))):
        assert ("fsync", parent) in found
    assert check_files(server.base_path) == (5, [])


def test_an_output_made_for_a_get_is_journalled_durably_before_the_reply(tmp_path, moto_server,
                                                                         s3_bucket, gate):
    # With the store down, an output made for a GET is written down for a later upload: that record
    # is on disk before the reply too.
    g = gate(int(moto_server.url.rsplit(":", 1)[1]))
    server = traced_server(tmp_path, *s3_flags(moto_server, s3_bucket, g.url), "--store_retries", "0",
                           "--store_timeout", "3", "--upload_retry_seconds", "600")
    try:
        digest = server.post("/p", data=pictures.photo(300, 200)).json()["hash"]
        g.shut()
        got = server.get(image_url(digest, "x50.jpg"))
        assert got.status_code == 200 and got.headers["X-Image-Stored"] == "pending"
    finally:
        stop(server)
    found = calls(tmp_path, server.base_path)
    check_flushed(found, "x50.jpg")
    records = [call[2] for call in found if call[0] == "rename" and "/.imageserver/uploads/" in call[2]]
    assert len(records) == 1
    check_flushed(found, records[0])


def test_no_fsync_flushes_nothing(tmp_path):
    server = traced_server(tmp_path, "--no_fsync")
    try:
        posted = server.post("/p", params={"outputs": "x300.jpg"}, data=pictures.photo(400, 300))
        assert posted.status_code == 200
    finally:
        stop(server)
    found = calls(tmp_path, server.base_path)
    assert [call for call in found if call[0] == "rename"]
    assert [call for call in found if call[0] == "fsync"] == []
