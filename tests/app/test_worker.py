"""Our gunicorn worker (imageserver/serving/worker.py), with gunicorn's own settings for it, on a socket pair:
every request is read by gunicorn and answered by the app, with the access-log line; a client that
sends nothing until the worker timeout gets the JSON 503."""
from __future__ import annotations

import os
import runpy
import signal
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from imageserver.serving import gunicorn_conf
from imageserver.serving.access_log import AccessLogger
from imageserver.serving.worker import JsonErrorWorker
from tests import pictures
from tests.helpers import ROOT, folder_of

CLIENT = ("127.0.0.1", 50123)
LISTENER = SimpleNamespace(getsockname=lambda: ("127.0.0.1", 8000))


@pytest.fixture
def access_log(tmp_path) -> str:
    return str(tmp_path / "access.log")


@pytest.fixture
def worker(app, access_log) -> Iterator[JsonErrorWorker]:
    """Our worker for the app, with gunicorn's settings as `images server` makes them."""
    cfg = Config()
    gunicorn_conf.configure(cfg, app.extensions["images"].settings)
    cfg.set("accesslog", access_log)
    worker = JsonErrorWorker(1, os.getpid(), [], SimpleNamespace(wsgi=lambda: app), 30, cfg,
                             AccessLogger(cfg))
    worker.load_wsgi()
    yield worker
    worker.tmp.close()
    for handler in worker.log.access_log.handlers + worker.log.error_log.handlers:
        handler.close()


def ask(worker: JsonErrorWorker, request: str) -> bytes:
    server, client = socket.socketpair()
    with server, client:
        client.sendall(request.encode())
        worker.handle(LISTENER, server, CLIENT)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_hit_is_answered_by_the_app_and_logged(worker, client, access_log):
    path = folder_of(client.post("/p", data=pictures.photo(400, 300)).json["hash"]) + "/x120.webp"
    made, hit = (ask(worker, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(2))
    for reply in (made, hit):
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and pictures.decode(body).width == 120
    assert b"X-Image-Cache: hit" in hit and b"X-Accel-Redirect" not in hit
    with open(access_log) as log:
        lines = log.read().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["cache=made", "cache=hit"]
    assert all(f'"GET {path} HTTP/1.1" 200 ' in line for line in lines)


def test_a_client_that_sends_nothing_gets_the_timeout_answer(worker):
    """The master aborts a worker past its timeout (SIGABRT, gunicorn's handle_abort); here a timer
    stands in for the master's signal, while the worker waits for a request that never comes."""
    server, client = socket.socketpair()
    previous = signal.signal(signal.SIGALRM, worker.handle_abort)
    try:
        with server, client:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            worker.handle(LISTENER, server, CLIENT)
            reply = client.recv(65536)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b'"error": "the request took longer than the 60 s' in reply
    assert not worker.alive


def test_a_worker_is_replaced_after_9000_to_11000_requests(worker):
    """Its own number in that range (so that workers started together are not replaced together),
    under `images server` and under plain gunicorn with gunicorn.conf.py alike."""
    assert 9000 <= worker.max_requests <= 11000
    plain_settings = runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))
    assert (plain_settings["max_requests"], plain_settings["max_requests_jitter"]) == \
        (worker.cfg.max_requests, worker.cfg.max_requests_jitter) == (9000, 2000)
