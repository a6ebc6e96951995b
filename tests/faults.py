"""Faults for the system tests and `python -m tests.chaos`: a server whose processes can all be
killed at once, a small real disk (tmpfs) to fill, clients that send a few bytes a second, and a
check that every stored file is whole."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager

import requests
from wand.image import Image

from imageserver.core.paths import ImageKey
from imageserver.images.variants import RECORDS
from tests import pictures
from tests.conftest import RunningServer
from tests.helpers import IMAGES, free_port, image_url, server_environment, wait_until_up


def launch(base: str, log_path: str, *flags: str, workers: int = 2, prefix=(),
           env: dict | None = None, port: int = 0) -> RunningServer:
    """`images server` on a free port (or `port`) in a process group of its own (master and
    workers), so that `kill_everything` can end all of it at once, as a power cut would."""
    port = port or free_port()
    args = [*prefix, IMAGES, "--listen", "127.0.0.1", "--port", str(port), "--local_base_path", base,
            "--workers", str(workers), "--status_port", "0", "--statsd_host", "", *flags, "server"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**server_environment(), **(env or {})})
    server = RunningServer(f"http://127.0.0.1:{port}", base, process, log_path, args)
    try:
        wait_until_up(server.url + "/status_check", process)
    except RuntimeError:
        kill_everything(server)
        raise
    return server


def kill_everything(server: RunningServer) -> None:
    """SIGKILL the master and every worker at once: nothing gets to clean up."""
    try:
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.process.wait()


# -- a load to break things under ------------------------------------------------------------------


class Load:
    """Clients posting new images with outputs, asking for new sizes and for sizes made before,
    until stopped. Counts every answer, and remembers what was acknowledged with a 200."""

    OUTPUTS = ("x300.jpg", "w500.webp")

    def __init__(self, url: str, clients: int = 3, timeout: float = 60, photo: bytes | None = None):
        self.url, self.timeout = url, timeout
        self.photo = photo or pictures.photo(1200, 900)
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.errors = 0                      # no answer at all (a connection cut or refused)
        self.uploads: list[str] = []         # hashes of the uploads answered 200
        self.made: list[tuple] = []          # (hash, name) of the outputs answered 200
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(clients)]
        for thread in self.threads:
            thread.start()

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.errors

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        count = 0
        while not self.stopped.is_set():
            count += 1
            kind = rng.choices(("upload", "new_size", "hit"), (4, 4, 2))[0]
            if kind == "upload" or not self.uploads:
                data = self.photo + f"{n}-{count}-{time.time()}".encode()   # after its end: a new image
                response = self._ask("POST", "/p", params={"outputs": ",".join(self.OUTPUTS)}, data=data)
                if response is not None and response.status_code == 200:
                    with self.lock:
                        self.uploads.append(response.json()["hash"])
            elif kind == "new_size":
                digest = rng.choice(self.uploads)
                name = f"{rng.randint(20, 400)}x{rng.randint(20, 400)}.{rng.choice(('jpg', 'png'))}"
                response = self._ask("GET", image_url(digest, name))
                if response is not None and response.status_code == 200:
                    with self.lock:
                        self.made.append((digest, name))
            else:
                digest, name = rng.choice(self.made) if self.made else (rng.choice(self.uploads),
                                                                       self.OUTPUTS[0])
                self._ask("GET", image_url(digest, name))

    def _ask(self, method: str, path: str, **kwargs):
        try:
            response = requests.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException:
            with self.lock:
                self.errors += 1
            self.stopped.wait(0.1)
            return None
        with self.lock:
            self.statuses[response.status_code] += 1
        return response

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(120)

    def lost(self, base: str) -> list[str]:
        """Acknowledged files that are not on local disk whole."""
        lost = []
        for digest in self.uploads:
            for name in ("original", "info.json", *self.OUTPUTS):
                lost += _lost(base, digest, name)
        for digest, name in self.made:
            lost += _lost(base, digest, name)
        return lost


def _lost(base: str, digest: str, name: str) -> list[str]:
    path = ImageKey("p", digest).local_file(base, name)
    if not os.path.exists(path):
        return [f"lost: {os.path.relpath(path, base)}"]
    problem = _whole(path, os.path.relpath(path, base))
    return [f"{problem}: {os.path.relpath(path, base)}"] if problem else []


# -- is every file whole ---------------------------------------------------------------------------


def check_files(base: str) -> tuple[int, list[str]]:
    """(files checked, problems): an original's MD5 is its folder's hash, info.json is that image's,
    every output ends as its format must and decodes, and no temporary or lock file is left."""
    checked, problems = 0, []
    for folder, _, names in os.walk(base):
        for name in names:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, base)
            if name.startswith(RECORDS):    # the image's records (variants.py), not its files
                continue
            checked += 1
            if name.startswith(".") and name.endswith((".tmp", ".lock")):
                problems.append(f"left behind: {relative}")
            elif not relative.startswith(".imageserver"):
                problem = _whole(path, relative)
                if problem:
                    problems.append(f"{problem}: {relative}")
    return checked, problems


def _whole(path: str, relative: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    digest = "".join(relative.split(os.sep)[1:5])
    if os.path.basename(path) == "original":
        return "" if hashlib.md5(data).hexdigest() == digest else "original does not match its name"
    if os.path.basename(path) == "info.json":
        try:
            return "" if json.loads(data)["hash"] == digest else "info.json of another image"
        except (ValueError, KeyError):
            return "info.json is not whole"
    if not _ends_whole(data):
        return "output cut short"
    try:
        # Every pixel of every frame, read out without a coder: the raw ones (RGB) are refused by
        # our policy, which the test process has in force as a worker does.
        with Image(blob=data) as image:
            for frame in image.sequence:
                frame.export_pixels()
    except Exception as error:  # any failure to decode is what we look for
        return f"output does not decode ({error})"
    return ""


def _ends_whole(data: bytes) -> bool:
    """Whether the file ends as a whole file of its format does (ImageMagick decodes a JPEG cut in
    half without a word)."""
    if data.startswith(b"\xff\xd8"):
        return data.endswith(b"\xff\xd9")
    if data.startswith(b"\x89PNG"):
        return data.endswith(b"IEND\xaeB`\x82")
    if data.startswith(b"GIF8"):
        return data.endswith(b";")
    if data.startswith(b"RIFF"):
        return int.from_bytes(data[4:8], "little") + 8 == len(data)
    return False


# -- a small disk ----------------------------------------------------------------------------------


@contextmanager
def tmpfs(path: str, size: str = "3m"):
    """A real file system of `size` mounted at `path` (needs root), unmounted afterwards."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False, capture_output=True)


def can_mount_tmpfs() -> bool:
    return os.geteuid() == 0 and os.path.exists("/bin/mount")


def fill(folder: str, leave: int) -> str:
    """Fill the file system of `folder` until `leave` bytes are free; the filler's path."""
    filler = os.path.join(folder, "filler")
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    try:
        with open(filler, "ab") as f:
            f.write(b"\0" * max(0, free - leave))
    except OSError as error:   # others wrote meanwhile: the disk is full, as asked
        if error.errno != errno.ENOSPC:
            raise
    return filler


# -- slow clients ----------------------------------------------------------------------------------


class SlowClients:
    """`count` connections to host:port that each send a request a few bytes a second: half trickle
    their headers, half a body they announced in full."""

    def __init__(self, host: str, port: int, count: int, bytes_per_second: int = 4):
        self.stopped = threading.Event()
        self.sockets = []
        self.cut = 0            # connections closed by the server before their request was sent
        self.interval = 1 / bytes_per_second
        for index in range(count):
            sock = socket.create_connection((host, port), timeout=10)
            self.sockets.append(sock)
            thread = threading.Thread(target=self._trickle, args=(sock, index % 2 == 0), daemon=True)
            thread.start()

    def _trickle(self, sock: socket.socket, headers_only: bool) -> None:
        if headers_only:
            head, body = b"GET /status_check HTTP/1.1\r\nHost: slow\r\nX-Slow: ", b"a" * 100_000
        else:
            head = b"POST /p HTTP/1.1\r\nHost: slow\r\nContent-Length: 100000\r\n\r\n"
            sock.sendall(head)
            head, body = b"", b"\xff\xd8" + b"a" * 99_998
        data = head + body
        for offset in range(len(data)):
            if self.stopped.wait(self.interval):
                return
            try:
                sock.sendall(data[offset:offset + 1])
            except OSError:
                if not self.stopped.is_set():
                    self.cut += 1
                return

    def stop(self) -> None:
        self.stopped.set()
        for sock in self.sockets:
            sock.close()
