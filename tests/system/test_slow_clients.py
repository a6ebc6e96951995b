"""Slow clients: each sync worker is held by a client for as long as it takes to send its request.
A few such clients stop the bare server; through Debian's nginx with the block from `images
nginx_config`, 50 of them trickling headers and bodies do not slow ordinary requests."""
import os
import subprocess
import time

import pytest
import requests

from tests import pictures
from tests.conftest import IMAGES, free_port
from tests.faults import SlowClients
from tests.system import test_nginx

pytestmark = pytest.mark.skipif(not os.path.exists(test_nginx.NGINX), reason="nginx is not installed")
# Far above the few milliseconds these take on an idle server, far below the minutes a held worker
# would keep them waiting.
PROMPT = 15


@pytest.fixture
def nginx_in_front(start_server, tmp_path):
    app = start_server()
    port = free_port()
    block = subprocess.run(
        [IMAGES, "--listen", "127.0.0.1", "--port", app.url.rsplit(":", 1)[1],
         "--local_base_path", app.base_path, "--nginx_listen", f"127.0.0.1:{port}",
         "--nginx_access_log", str(tmp_path / "access.log"), "nginx_config"],
        capture_output=True, text=True, check=True).stdout
    (tmp_path / "imageserver.conf").write_text(block)
    conf = test_nginx.nginx_conf(tmp_path).replace("worker_connections 64", "worker_connections 1024")
    (tmp_path / "nginx.conf").write_text(conf)
    process = subprocess.Popen([test_nginx.NGINX, "-p", str(tmp_path), "-c", "nginx.conf",
                                "-e", str(tmp_path / "error.log"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    nginx = test_nginx.Nginx(f"http://127.0.0.1:{port}", str(tmp_path))
    try:
        test_nginx.wait_for(nginx, process, tmp_path)
        yield app, nginx, port
    finally:
        process.terminate()
        process.wait(30)


def ordinary_requests(url: str) -> None:
    """An upload, a new size, a cache hit and the status, each answered within PROMPT seconds."""
    posted = requests.post(url + "/p", data=pictures.photo(320, 240), timeout=PROMPT)
    assert posted.status_code == 200, posted.text
    h = posted.json()["hash"]
    path = f"/p/{h[:3]}/{h[3:6]}/{h[6:9]}/{h[9:]}/x100.jpg"
    for _ in range(2):
        got = requests.get(url + path, timeout=PROMPT)
        assert got.status_code == 200 and pictures.decode(got.content).width == 100
    assert requests.get(url + "/status_check", timeout=PROMPT).status_code == 200


def test_fifty_slow_clients_through_nginx_do_not_hold_the_workers(nginx_in_front):
    app, nginx, port = nginx_in_front
    slow = SlowClients("127.0.0.1", port, 50)
    try:
        time.sleep(2)       # every slow client has begun its request
        for _ in range(5):
            ordinary_requests(nginx.url)
        assert slow.cut == 0        # all 50 still trickling, held by nginx rather than by a worker
    finally:
        slow.stop()


def test_two_slow_clients_hold_the_bare_server(start_server):
    # Why the proxy is needed: the bare server's 2 sync workers each wait on a slow request.
    app = start_server()
    port = int(app.url.rsplit(":", 1)[1])
    slow = SlowClients("127.0.0.1", port, 2)
    try:
        time.sleep(1)
        with pytest.raises(requests.Timeout):
            requests.get(app.url + "/status_check", timeout=3)
    finally:
        slow.stop()
    assert requests.get(app.url + "/status_check", timeout=PROMPT).status_code == 200
