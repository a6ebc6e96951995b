"""Ways of running the server and its life: plain gunicorn with IMG_* variables, `images process`,
graceful stops and reloads, the status port, a master that never loads ImageMagick, and a server
without ImageMagick."""
import hashlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import requests

from imageserver.core.paths import ImageKey
from tests import hostile, pictures
from tests.conftest import launch
from tests.helpers import IMAGES, free_port, image_url, plain_gunicorn, wait_until, worker_pids

SLOW_SECONDS = 3


@pytest.fixture
def slow_source(source_server):
    """`url` answers an image after SLOW_SECONDS; `arrived()` says whether a request is waiting."""
    image = pictures.solid(60, 40, "blue")

    def slowly():
        time.sleep(SLOW_SECONDS)
        return image

    source_server.routes["/slow.png"] = (200, {"Content-Type": "image/png"}, slowly)
    source_server.slow_url = source_server.url + "/slow.png"
    return source_server


def in_flight(server, source) -> dict:
    """Start a slow upload in a thread; return once the server is waiting on the source."""
    result = {}

    def upload():
        try:
            result["response"] = server.post(f"/p?source={source.slow_url}")
        except requests.RequestException as error:
            result["error"] = error

    thread = threading.Thread(target=upload)
    thread.start()
    result["thread"] = thread
    wait_until(lambda: source.hits.get("/slow.png", 0) >= 1, "the slow request never arrived")
    return result


def status(port: int) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}/status_check", timeout=10)


def finished_well(result: dict) -> None:
    result["thread"].join(60)
    assert "error" not in result, result.get("error")
    response = result["response"]
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (60, 40)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_lets_the_request_in_flight_finish(start_server, slow_source, sig):
    status_port = free_port()
    server = start_server("--status_port", str(status_port))
    assert status(status_port).json()["message"] == "OK"
    request = in_flight(server, slow_source)
    server.process.send_signal(sig)
    wait_until(lambda: status(status_port).status_code == 501, "the status port never said so")
    assert status(status_port).json()["message"] == "Shutting down"
    finished_well(request)
    assert server.process.wait(40) == 0
    assert "Shutting down: Master" in server.log()
    with pytest.raises(requests.ConnectionError):
        server.get("/status_check")


@pytest.mark.slow
def test_the_drain_keeps_serving_while_the_status_says_shutting_down(start_server, photo_jpeg):
    status_port = free_port()
    server = start_server("--status_port", str(status_port), "--drain_seconds", "600")
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: status(status_port).status_code == 501, "the status port never said so")
    assert status(status_port).json()["message"] == "Shutting down"
    app_status = server.get("/status_check")
    assert (app_status.status_code, app_status.json()["message"]) == (501, "Shutting down")
    posted = server.post("/p?outputs=x50.jpg", data=photo_jpeg)
    assert posted.status_code == 200, posted.text
    assert server.process.poll() is None
    # A second signal ends the drain at once.
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(40) == 0


@pytest.mark.slow
def test_the_drain_ends_on_its_own(start_server):
    server = start_server("--drain_seconds", "1")
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(40) == 0
    assert "Draining" in server.log()


def test_sighup_reloads_the_workers_without_dropping_a_request(start_server, slow_source,
                                                               photo_jpeg):
    # Room for the slow source on a busy machine: the download is in flight, not what is tested.
    server = start_server("--http_timeout", "30")
    before = booted_workers(server)
    request = in_flight(server, slow_source)
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: len(booted_workers(server)) >= len(before) + 2, "no new workers booted")
    finished_well(request)
    assert server.post("/p?outputs=x50.jpg", data=photo_jpeg).status_code == 200
    assert server.process.poll() is None


def booted_workers(server) -> list:
    return [line for line in server.log().splitlines() if "Booting worker" in line]


@pytest.fixture(scope="module")
def with_status_port(tmp_path_factory):
    """One server with a status port, and that port, for the tests that leave the server running."""
    status_port = free_port()
    server = launch(tmp_path_factory.mktemp("status"), "--status_port", str(status_port))
    yield server, status_port
    server.stop()


def test_the_master_never_loads_imagemagick(with_status_port, photo_jpeg):
    server, _ = with_status_port
    assert server.post("/p?outputs=x50.jpg", data=photo_jpeg).status_code == 200
    # The workers set ImageMagick up themselves (our policy in force, the formats found): whichever
    # answers says so.
    assert [server.get("/status_check").json()["message"] for _ in range(4)] == ["OK"] * 4
    master = server.process.pid
    workers = worker_pids(master)
    assert workers
    assert "libMagick" not in maps(master)
    # A worker loads it while it boots; the second one may still be booting.
    wait_until(lambda: all("libMagickWand" in maps(worker) for worker in workers),
               "a worker has no ImageMagick")
    assert "libMagick" not in maps(master)


def maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def test_a_busy_status_port_stops_start_up(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [IMAGES, "--port", str(free_port()), "--status_port", str(port),
             "--local_base_path", str(tmp_path), "server"],
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"--status_port: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_the_status_port_answers_json_for_other_paths(with_status_port):
    _, status_port = with_status_port
    got = requests.get(f"http://127.0.0.1:{status_port}/nothing", timeout=10)
    assert got.status_code == 404 and "error" in got.json()
    body = status(status_port).json()
    assert body["workers"] == 2 and set(body) == {"version", "message", "workers"}
    head = requests.head(f"http://127.0.0.1:{status_port}/status_check", timeout=10)
    assert head.status_code == 200 and head.content == b""


def test_gunicorn_with_settings_from_the_environment(tmp_path):
    """Plain gunicorn with gunicorn.conf.py: its workers set ImageMagick up as `images server`'s do."""
    variables = {"IMG_LOCAL_BASE_PATH": str(tmp_path), "IMG_OUTPUTS": "x40.webp", "IMG_WORKERS": "1"}
    with plain_gunicorn(variables) as (url, process):
        status = requests.get(url + "/status_check", timeout=30)
        assert (status.status_code, status.json()["message"]) == (200, "OK")
        response = requests.post(url + "/p", data=pictures.photo(80, 60), timeout=30)
        assert response.status_code == 200
        h = response.json()["hash"]
        made = tmp_path / ImageKey("p", h).folder / "x40.webp"
        assert pictures.decode(made.read_bytes()).width == 40
    assert process.returncode == 0


def test_gunicorn_without_our_config_from_another_folder_is_the_same_server(tmp_path):
    """Plain `gunicorn wsgi:app`, no gunicorn.conf.py (started elsewhere, none is found): its worker
    sets itself up on its first request (ImageMagick's policy and limits, its temporary folder)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    variables = {"IMG_LOCAL_BASE_PATH": str(tmp_path / "public")}
    with plain_gunicorn(variables, config=False, cwd=str(elsewhere)) as (url, process):
        status = requests.get(url + "/status_check", timeout=30)
        assert (status.status_code, status.json()["message"]) == (200, "OK")
        assert "jpg" in status.json()["writes"]
        [worker] = worker_pids(process.pid)
        assert os.path.isdir(f"{tempfile.gettempdir()}/imageserver-magick-{worker}")
        # Its address space is bounded as our hook bounds it (a runaway decoder fails to allocate).
        assert address_space_limit(worker) is not None
        h = requests.post(url + "/p", data=pictures.photo(80, 60), timeout=30).json()["hash"]
        made = requests.get(url + image_url(h, "x40.webp"), timeout=30)
        assert pictures.decode(made.content).width == 40
        disguised = requests.post(url + "/p", data=hostile.mvg_payload("http://127.0.0.1:1", "/tmp/x"),
                                  timeout=30)
        assert disguised.status_code in (400, 415) and "error" in disguised.json()
    assert process.returncode == 0


def address_space_limit(pid: int) -> int | None:
    """The soft limit of a process's address space, in bytes; None when unlimited."""
    with open(f"/proc/{pid}/limits") as f:
        soft = next(line.split()[3] for line in f if line.startswith("Max address space"))
    return None if soft == "unlimited" else int(soft)


def test_status_check_is_501_without_imagemagick(start_server):
    # A `wand` that fails to import as the real one does when MagickWand is not installed.
    fake = os.path.join(os.path.dirname(__file__), "no_imagemagick")
    server = start_server(env={"PYTHONPATH": fake})
    response = server.get("/status_check")
    assert response.status_code == 501
    assert "ImageMagick" in response.json()["message"]
    refused = server.post("/p", data=pictures.photo(20, 20))
    assert refused.status_code == 501 and refused.json()["error"]
    assert refused.headers["Content-Type"] == "application/json"


def test_process_command_makes_outputs_for_a_local_original(tmp_path):
    base = tmp_path / "public"
    data = pictures.photo(90, 60)
    h = hashlib.md5(data).hexdigest()
    original = tmp_path / "incoming" / ImageKey("p", h).folder / "original"
    original.parent.mkdir(parents=True)
    original.write_bytes(data)
    result = subprocess.run([IMAGES, "--outputs", "x30.jpg,w45.webp", "--local_base_path", str(base),
                             "--namespace", "p", "process", str(original)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    fields = result.stdout.strip().split("\t")
    assert fields[0] == h and fields[2:] == ["90", "60"]
    folder = base / ImageKey("p", h).folder
    assert pictures.decode((folder / "x30.jpg").read_bytes()).width == 30
    assert pictures.decode((folder / "w45.webp").read_bytes()).height == 30
    missing = subprocess.run([IMAGES, "--outputs", "x30.jpg", "--local_base_path", str(base), "process",
                              str(tmp_path / "nothing" / "original")], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("images: ")
