"""Slow clients: each sync worker is held by a client for as long as it takes to send its request.
A few such clients stop the bare server; through Debian's nginx with the block from `images
nginx_config`, 50 of them trickling headers and bodies do not slow ordinary requests."""
import os
import time

import pytest
import requests

from tests import pictures
from tests.faults import SlowClients
from tests.helpers import image_url
from tests.nginx_server import NGINX, Nginx

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")
# Far above the few milliseconds these take on an idle server, far below the minutes a held worker
# would keep them waiting.
PROMPT = 15


@pytest.fixture
def nginx_in_front(shared_server, tmp_path):
    app = shared_server
    nginx = Nginx(app, tmp_path, worker_connections=1024)
    try:
        yield app, nginx, nginx.port
    finally:
        nginx.stop()


def ordinary_requests(url: str) -> None:
    """An upload, a new size, a cache hit and the status, each answered within PROMPT seconds."""
    posted = requests.post(url + "/p", data=pictures.photo(320, 240), timeout=PROMPT)
    assert posted.status_code == 200, posted.text
    path = image_url(posted.json()["hash"], "x100.jpg")
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


def test_two_slow_clients_hold_the_bare_server(shared_server):
    # Why the proxy is needed: the bare server's 2 sync workers each wait on a slow request.
    app = shared_server
    port = int(app.url.rsplit(":", 1)[1])
    slow = SlowClients("127.0.0.1", port, 2)
    try:
        time.sleep(1)
        with pytest.raises(requests.Timeout):
            requests.get(app.url + "/status_check", timeout=3)
    finally:
        slow.stop()
    assert requests.get(app.url + "/status_check", timeout=PROMPT).status_code == 200
