"""Fixtures shared by every test: images made on the fly, and real servers on free loopback ports."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests import pictures

VENV_BIN = os.path.dirname(sys.executable)
IMAGES = os.path.join(VENV_BIN, "images")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


@dataclass
class RunningServer:
    """An `images server` subprocess: its URL, storage folder and process."""
    url: str
    base_path: str
    process: subprocess.Popen
    log_path: str
    args: list = field(default_factory=list)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=60, **kwargs)

    def head(self, path: str, **kwargs) -> requests.Response:
        return requests.head(self.url + path, timeout=60, **kwargs)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, sig=None) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig or 15)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def start_server(tmp_path_factory):
    """A factory: start_server("--outputs", "x300.jpg") starts `images server` with those flags (and
    --allow_private_sources, so that sources on loopback work, unless private_sources=False)."""
    started = []

    def start(*flags: str, env: dict | None = None, base_path: str | None = None,
              private_sources: bool = True) -> RunningServer:
        port = free_port()
        folder = tmp_path_factory.mktemp("server")
        base = base_path or str(folder / "public")
        log_path = str(folder / "server.log")
        args = [IMAGES, "--listen", "127.0.0.1", "--port", str(port), "--local_base_path", base,
                "--workers", "2", *(["--allow_private_sources"] if private_sources else []), *flags,
                "server"]
        full_env = {**os.environ, **(env or {})}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        server = RunningServer(f"http://127.0.0.1:{port}", base, process, log_path, args)
        started.append(server)
        wait_until_up(server.url + "/status_check", process)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One server for the many tests that only need the default settings."""
    port = free_port()
    folder = tmp_path_factory.mktemp("shared")
    base = str(folder / "public")
    log_path = str(folder / "server.log")
    args = [IMAGES, "--port", str(port), "--local_base_path", base, "--workers", "2",
            "--allow_private_sources", "server"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    server = RunningServer(f"http://127.0.0.1:{port}", base, process, log_path, args)
    wait_until_up(server.url + "/status_check", process)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


class SourceHandler(BaseHTTPRequestHandler):
    """Serves the `routes` of its server: path -> (status, headers, body), counting requests."""

    def do_GET(self):
        server = self.server
        with server.lock:
            server.hits[self.path] = server.hits.get(self.path, 0) + 1
        route = server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        status, headers, body = route
        if callable(body):
            body = body()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def source_server():
    """A real HTTP server on loopback for ?source= tests; set `.routes[path] = (status, headers, body)`."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SourceHandler)
    httpd.routes, httpd.hits, httpd.lock = {}, {}, threading.Lock()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def photo_jpeg() -> bytes:
    return pictures.photo(800, 600, "jpeg")
