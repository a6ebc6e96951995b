"""Fixtures shared by every test: images made on the fly, and real servers on free loopback ports."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from imageserver import create_app
from imageserver.core.settings import Settings, parse_command_line
from imageserver.images.setup import init_worker
from tests import pictures
from tests.helpers import IMAGES, free_port, server_environment, stop_process, wait_until_up
from tests.storage_servers import Gate, MantaTestServer, MotoServer, make_key_pair
from tests.trickle import Trickler

# @pytest.mark.only_loopback: the test runs in a network namespace that has loopback only.
pytest_plugins = ("tests.netns",)
SYSTEM_TESTS = Path(__file__).parent / "system"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every system test starts a server, and an only_loopback test a child pytest (outside a
    namespace): both are `spawns`, which `make test-fast` leaves out. Unit and app tests that start
    a process are marked where they are written.

    Under pytest-xdist (make test) the longest tests are handed out first (the `slow`, then the other
    system tests), so that no worker is left with a long test at the end."""
    for item in items:
        if item.path.is_relative_to(SYSTEM_TESTS) or item.get_closest_marker("only_loopback"):
            item.add_marker(pytest.mark.spawns)
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else
                   1 if item.get_closest_marker("spawns") else 2)


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
        return stop_process(self.process, 40, sig or signal.SIGTERM)


def launch(folder, *flags: str, env: dict | None = None, base_path: str | None = None,
           private_sources: bool = True) -> RunningServer:
    """Start `images server` with 2 workers on a free port, storing under `folder`, and wait for it.

    The status port is off unless the flags set one: servers started at once would all want 7002.
    """
    port = free_port()
    base = base_path or str(folder / "public")
    log_path = str(folder / "server.log")
    args = [IMAGES, "--listen", "127.0.0.1", "--port", str(port), "--local_base_path", base,
            "--workers", "2", "--status_port", "0", *flags, "server"]
    if private_sources:
        args.insert(-1, "--allow_private_sources")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                   env={**server_environment(), **(env or {})})
    server = RunningServer(f"http://127.0.0.1:{port}", base, process, log_path, args)
    try:
        wait_until_up(server.url + "/status_check", process)
    except RuntimeError:
        server.stop()
        raise
    return server


@pytest.fixture
def start_server(tmp_path_factory):
    """A factory: start_server("--outputs", "x300.jpg") starts `images server` with those flags (and
    --allow_private_sources, so that sources on loopback work, unless private_sources=False)."""
    started = []

    def start(*flags: str, **options) -> RunningServer:
        server = launch(tmp_path_factory.mktemp("server"), *flags, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server_with(tmp_path_factory):
    """A factory: server_with("--outputs", "x300.jpg") is the server with those flags (and options, as
    for start_server) that every test asking for the same ones shares, started on first use and
    stopped at the end of the session (of each pytest-xdist worker: one per worker). Only for tests
    that leave their server as they found it: a test that stops, kills, fills, reloads or counts
    since start-up on its server starts its own (start_server)."""
    running: dict[tuple, tuple[RunningServer, Path]] = {}

    def get(*flags: str, env: dict | None = None, **options) -> RunningServer:
        key = (flags, tuple(sorted((env or {}).items())), tuple(sorted(options.items())))
        if key not in running:
            folder = tmp_path_factory.mktemp("shared")
            running[key] = launch(folder, *flags, env=env, **options), folder
        server = running[key][0]
        if server.process.poll() is not None:
            raise RuntimeError(f"the shared server {flags} {options} exited ({server.process.returncode}): "
                               f"a test that changes its server must start its own\n{server.log()[-3000:]}")
        return server

    yield get
    for server, folder in running.values():
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_server(server_with):
    """One server for the many tests that only need the default settings."""
    return server_with()


# -- the app in this process (tests/app): Flask's test client, no gunicorn --------------------------


@pytest.fixture(scope="session", autouse=True)
def imagemagick():
    """ImageMagick set up in this process once, as a gunicorn worker sets up its own (our policy, the
    limits, the formats it reads and writes). Before any test: a picture made here with Wand would
    otherwise have ImageMagick read its policy files without ours, for the rest of the run."""
    init_worker(Settings())


def app_settings(folder, *flags: str, private_sources: bool = True,
                 base_path: str | None = None) -> Settings:
    """The settings `images [flags] server` would have (IMG_* variables ignored, as for launch)."""
    argv = ["--local_base_path", base_path or str(folder / "public"), *flags, "server"]
    if private_sources:
        argv.insert(-1, "--allow_private_sources")
    return parse_command_line(argv, environ={})[2]


class WholeAnswers(FlaskClient):
    """Flask's test client, reading each answer whole and closing it as a WSGI server does (an
    answer sent from a file holds the file open until then)."""

    def open(self, *args, buffered: bool = True, **kwargs):
        return super().open(*args, buffered=buffered, **kwargs)


@pytest.fixture
def make_app(tmp_path_factory):
    """A factory: make_app("--outputs", "x300.jpg") builds the app in this process with those flags
    (and --allow_private_sources, unless private_sources=False), storing under a new folder."""
    made = []

    def make(*flags: str, **options) -> Flask:
        app = create_app(app_settings(tmp_path_factory.mktemp("app"), *flags, **options))
        app.config.update(TESTING=True)
        app.test_client_class = WholeAnswers
        made.append(app)
        return app

    yield make
    for app in made:
        statsd_client = getattr(app.extensions["images"].metrics, "client", None)
        if statsd_client is not None:
            statsd_client.close()


@pytest.fixture
def app(make_app) -> Flask:
    """The app with the default settings (and --allow_private_sources), storing under a new folder."""
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def base_path(app) -> str:
    """Where `app` stores its images."""
    return app.extensions["images"].settings.base_path


# -- what servers and apps under test talk to: sources, statsd --------------------------------------


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


class SourceServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A server under test that gave up on a source (its timeout) closed the connection: expected,
        and a traceback on stderr would only clutter the tests' output."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def source_server():
    """A real HTTP server on loopback for ?source= tests; set `.routes[path] = (status, headers, body)`."""
    httpd = SourceServer(("127.0.0.1", 0), SourceHandler)
    httpd.routes, httpd.hits, httpd.lock = {}, {}, threading.Lock()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def trickler():
    """trickler(reply): a server on loopback that sends `reply` a byte at a time (tests/trickle.py)."""
    made = []

    def make(reply: bytes) -> Trickler:
        made.append(Trickler(reply))
        return made[-1]

    yield make
    for each in made:
        each.stop()


class StatsdListener:
    """A real UDP socket standing in for statsd: collects the metrics the server sends."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []

    def wait_for(self, *lines: str, seconds: float = 20) -> list[str]:
        """Collect datagrams until every one of `lines` (a name, or "name:value|type") has come."""
        deadline = time.monotonic() + seconds
        while not all(self.has(line) for line in lines):
            if time.monotonic() >= deadline:
                raise AssertionError(f"statsd never got {[line for line in lines if not self.has(line)]}; "
                                     f"got {self.lines}")
            self.receive(deadline - time.monotonic())
        return self.lines

    def wait_for_count(self, line: str, count: int, seconds: float = 20) -> None:
        """Collect datagrams until `line` has come `count` times, then any that follow within 0.5 s,
        and check that it came exactly `count` times."""
        deadline = time.monotonic() + seconds
        while self.count(line) < count and time.monotonic() < deadline:
            self.receive(deadline - time.monotonic())
        quiet = time.monotonic() + 0.5
        while time.monotonic() < quiet:
            self.receive(quiet - time.monotonic())
        assert self.count(line) == count, self.lines

    def receive(self, seconds: float) -> None:
        """Collect one datagram, if one comes within `seconds`."""
        self.sock.settimeout(max(0.01, seconds))
        try:
            self.lines.extend(self.sock.recv(65536).decode().splitlines())
        except TimeoutError:
            pass

    def has(self, line: str) -> bool:
        return any(got == line or got.split(":")[0] == line for got in self.lines)

    def count(self, line: str) -> int:
        return sum(got == line or got.split(":")[0] == line for got in self.lines)

    def clear(self) -> None:
        self.lines.clear()


@pytest.fixture
def statsd_listener():
    listener = StatsdListener()
    yield listener
    listener.sock.close()


@pytest.fixture(scope="session")
def photo_jpeg() -> bytes:
    return pictures.photo(800, 600, "jpeg")


# -- remote stores ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """moto's S3 server, in its own process on a free loopback port, for the whole session."""
    server = MotoServer(free_port(), str(tmp_path_factory.mktemp("moto") / "moto.log"))
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto_server) -> str:
    """A new, empty bucket on the moto server."""
    name = f"images-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=name)
    return name


def s3_flags(moto_server, bucket: str, endpoint_url: str | None = None) -> list[str]:
    return ["--aws_bucket", bucket, "--s3_endpoint_url", endpoint_url or moto_server.url,
            "--aws_access_key_id", "testing", "--aws_secret_key", "testing",
            "--remote_base_path", "images"]


@pytest.fixture(scope="session")
def manta_keys(tmp_path_factory) -> dict:
    """An RSA and an ECDSA key pair, made for this session."""
    folder = str(tmp_path_factory.mktemp("keys"))
    return {kind: make_key_pair(folder, kind) for kind in ("rsa", "ecdsa")}


@pytest.fixture
def manta_server(manta_keys):
    """A fresh Manta test server for the account `tester`, which knows both keys."""
    server = MantaTestServer("tester", list(manta_keys.values()))
    yield server
    server.stop()


def manta_flags(manta_url: str, key, identity: str | None = None) -> list[str]:
    return ["--manta_url", manta_url, "--manta_user", "tester", "--manta_key_id", key.fingerprint,
            "--sdc_identity", identity or key.private_path, "--remote_base_path", "public/images"]


@pytest.fixture
def gate():
    """gate(port): a TCP forwarder to that loopback port, which a test can shut (the store is down)."""
    made = []

    def make(port: int) -> Gate:
        made.append(Gate(port))
        return made[-1]

    yield make
    for g in made:
        g.stop()
