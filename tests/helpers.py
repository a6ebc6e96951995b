"""What the tests share besides fixtures: where an image is (from `paths.ImageKey`), what an error
answer looks like, an output made in-process, starting plain gunicorn, and waiting for something to
happen (each wait has a bound and fails at it: it is never a timing assertion)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import requests

from imageserver.core.names import parse_output
from imageserver.core.paths import ImageKey
from imageserver.core.settings import Settings
from imageserver.images.setup import set_up_worker
from imageserver.imaging import formats, pipeline
from tests import pictures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
IMAGES = os.path.join(VENV_BIN, "images")
# Variables that would send a test server to a real store (or change its settings) if set here,
# and this process's own set-up of ImageMagick (a server's workers must make theirs).
FOREIGN_VARIABLES = re.compile(r"(IMG_|AWS_|MANTA_|SDC_|MAGICK_).*|SSH_AUTH_SOCK|OMP_NUM_THREADS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_environment() -> dict:
    """This environment, less what would point a test server at a real store or change its settings."""
    return {name: value for name, value in os.environ.items() if not FOREIGN_VARIABLES.fullmatch(name)}


def folder_of(digest: str, namespace: str = "p") -> str:
    """The URL path of an image's folder: `/p/6e0/072/682/e66287b662827da75b244a3`."""
    return "/" + ImageKey(namespace, digest).folder


def image_url(digest: str, name: str, namespace: str = "p") -> str:
    """The URL path of one file of an image: `/p/6e0/072/682/e66287b662827da75b244a3/x300.jpg`."""
    return f"{folder_of(digest, namespace)}/{name}"


def assert_json_error(response, *statuses: int) -> str:
    """An error as the API answers one: one of `statuses`, a JSON body {"error": "..."} and no
    traceback. Returns the message."""
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/json"
    body = response.json() if callable(response.json) else response.json   # requests' or Flask's
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    assert "Traceback" not in response.text
    return body["error"]


def raw(url: str, request: bytes) -> tuple[int, dict, bytes]:
    """Send these bytes as they are; the status, headers (lower-case names) and body answered."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_raw_json_error(status: int, headers: dict, body: bytes, expected: int) -> None:
    """As `assert_json_error`, for an answer `raw` read (whoever wrote it: the app, gunicorn or
    nginx): JSON with an error, `nosniff`, and never a redirect."""
    assert status == expected, body
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert isinstance(json.loads(body)["error"], str) and json.loads(body)["error"]
    assert "location" not in headers


def assert_healthy(server) -> None:
    """The server answers its status and takes an upload."""
    status = server.get("/status_check")
    assert status.status_code == 200, status.text
    posted = server.post("/p", data=pictures.solid(30, 20, "blue", "png"))
    assert posted.status_code == 200, posted.text


def render(data: bytes, name: str, quality: int = 75) -> pictures.Decoded:
    """The output `name` of `data`, made by the pipeline in this process and decoded (conftest's
    `imagemagick` fixture readies the pipeline)."""
    return pictures.decode(pipeline.render(data, parse_output(name, Settings()), quality,
                                           formats=formats_here()))


def formats_here() -> formats.Formats:
    """The formats this process's ImageMagick reads and writes, as its set-up found them (conftest's
    `imagemagick` fixture set it up)."""
    return set_up_worker(Settings()).formats


def wait_until(condition, what: str = "the condition", seconds: float = 60, step: float = 0.05):
    """Poll `condition()` until it is true, and return its value; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(step)


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    """Wait until `url` answers at all; a RuntimeError if the process exits first or it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            requests.get(url, timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


@contextmanager
def plain_gunicorn(variables: dict, *options: str, log=subprocess.DEVNULL, config: bool = True,
                   cwd: str = ROOT):
    """Plain gunicorn with the project's gunicorn.conf.py (none with `config=False`: gunicorn's own
    settings, bound to the port) and wsgi:app on a free port, started in `cwd`, its settings from
    IMG_* `variables` (the status port off unless they set one). Yields its URL and process once it
    answers; terminates it after (the caller checks process.returncode)."""
    port = free_port()
    env = {**server_environment(), "IMG_PORT": str(port), "IMG_STATUS_PORT": "0", **variables}
    settings = (["-c", os.path.join(ROOT, "gunicorn.conf.py")] if config
                else ["--bind", f"127.0.0.1:{port}"])
    process = subprocess.Popen([os.path.join(VENV_BIN, "gunicorn"), *settings, "--pythonpath", ROOT,
                                *options, "wsgi:app"], cwd=cwd, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/status_check", process)
        yield url, process
    finally:
        process.terminate()
        process.wait(35)


def stop_process(process: subprocess.Popen, seconds: float, sig: int = signal.SIGTERM) -> int:
    """Stop `process` with `sig` (a graceful stop for our servers), or kill it after `seconds`; its
    exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def worker_pids(master: int) -> list[int]:
    """The process ids of a gunicorn master's workers (its children), in order."""
    with open(f"/proc/{master}/task/{master}/children") as f:
        return sorted(int(pid) for pid in f.read().split())


def workers_cpu_seconds(server) -> float:
    """The CPU time the server's workers have used so far (user and system)."""
    total = 0
    for pid in worker_pids(server.process.pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds open."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def port_inodes(port: int) -> set[str]:
    """The inodes of every TCP socket on this machine whose local port is `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                    found.add(fields[9])
    return found
