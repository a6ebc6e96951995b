"""Every answer, whoever writes it (the app or gunicorn), is JSON on error, carries `nosniff`, and
is never a redirect. Against a real gunicorn, over raw sockets where the request is one a
well-behaved client would not send (the app's own answers: tests/app/test_http_answers.py)."""
from __future__ import annotations

import json
import time

import pytest
import requests

from tests import pictures
from tests.helpers import (
    assert_raw_json_error,
    folder_of,
    free_port,
    plain_gunicorn,
    raw,
    wait_until,
    wait_until_up,
)

FOLDER = "/p/6e0/072/682/e66287b662827da75b244a3"


@pytest.fixture(scope="module")
def image(shared_server) -> str:
    """The folder URL path of an uploaded PNG."""
    info = shared_server.post("/p", data=pictures.solid(30, 20, "red")).json()
    return folder_of(info["hash"])


@pytest.mark.parametrize("path", [
    "/p//6e0/072/682/e66287b662827da75b244a3/x300.jpg",
    "//p/6e0/072/682/e66287b662827da75b244a3/x300.jpg",
    FOLDER + "//x300.jpg",
    FOLDER + "/x300.jpg/",
    FOLDER + "/",
    "/status_check/",
    "/p/",
])
def test_no_redirect_whatever_the_host_says(shared_server, path):
    for request in (f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n\r\n",
                    f"GET http://evil.example{path} HTTP/1.1\r\nHost: evil.example\r\n\r\n"):
        status, headers, body = raw(shared_server.url, request.encode())
        assert not 300 <= status < 400, (request, status, headers)
        assert_raw_json_error(status, headers, body, 404)
        assert b"evil.example" not in body


def test_options_is_a_json_405_naming_the_methods(shared_server, image):
    for path, allowed in ((image + "/x30.jpg", {"GET", "HEAD"}), (image + "/info.json", {"GET", "HEAD"}),
                          (image + "/process", {"GET", "HEAD", "POST"}), ("/p", {"POST"}),
                          ("/openapi.json", {"GET", "HEAD", "POST"})):
        answer = requests.options(shared_server.url + path, timeout=30)
        assert_raw_json_error(answer.status_code, {k.lower(): v for k, v in answer.headers.items()},
                          answer.content, 405)
        assert set(answer.headers["Allow"].split(", ")) == allowed, path
    status, headers, body = raw(shared_server.url, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status in (404, 405)
    assert_raw_json_error(status, headers, body, status)


def test_gunicorn_refusals_are_json(shared_server):
    long_line = b"GET /p/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert_raw_json_error(*raw(shared_server.url, long_line), 414)
    big_header = b"GET /status_check HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    assert_raw_json_error(*raw(shared_server.url, big_header), 431)
    many_headers = b"GET /status_check HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: 1\r\n" % n for n in range(150)) + b"\r\n"
    assert_raw_json_error(*raw(shared_server.url, many_headers), 431)
    assert_raw_json_error(*raw(shared_server.url, b"GARBAGE\r\n\r\n"), 400)
    bad_chunk = b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    assert_raw_json_error(*raw(shared_server.url, bad_chunk), 400)
    # The worker that refused carries on.
    assert shared_server.get("/status_check").status_code == 200


@pytest.mark.slow
def test_a_request_cut_off_by_the_worker_timeout_is_a_json_503(tmp_path, source_server):
    """Plain gunicorn with our config and a 5 s worker timeout (room for a worker to start on a busy
    machine); a source that takes 20 s to answer (within --http_timeout) keeps the request past it. The
    master aborts the worker; the client gets JSON, and a new worker serves the next request."""
    data = pictures.photo(60, 40)

    def slow_body():
        time.sleep(20)
        return data

    source_server.routes["/slow.jpg"] = (200, {}, slow_body)
    variables = {"IMG_LOCAL_BASE_PATH": str(tmp_path), "IMG_WORKERS": "1", "IMG_HTTP_TIMEOUT": "30",
                 "IMG_ALLOW_PRIVATE_SOURCES": "1"}
    with open(tmp_path / "gunicorn.log", "wb") as log, \
            plain_gunicorn(variables, "--timeout", "5", log=log) as (url, process):
        status, headers, body = raw(url, f"POST /p?source={source_server.url}/slow.jpg HTTP/1.1\r\n"
                                         f"Host: x\r\nContent-Length: 0\r\n\r\n".encode())
        assert_raw_json_error(status, headers, body, 503)
        assert "5 s" in json.loads(body)["error"]
        wait_until_up(url + "/status_check", process)
        assert requests.get(url + "/status_check", timeout=30).status_code == 200
    logged = (tmp_path / "gunicorn.log").read_text()
    assert "WORKER TIMEOUT" in logged and "Request cut off by the worker timeout" in logged
    assert '"POST /p?source=' in logged and " 503 " in logged


def test_the_status_port_refuses_in_json_too(start_server):
    status_port = free_port()
    start_server("--status_port", str(status_port))
    url = f"http://127.0.0.1:{status_port}"
    for request, expected in [(b"POST /status_check HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                               b"Connection: close\r\n\r\n", 501),
                              (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
                              (b"GARBAGE\r\n\r\n", 400),
                              (b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404)]:
        status, headers, body = raw(url, request)
        assert_raw_json_error(status, headers, body, expected)
        assert headers["x-content-type-options"] == "nosniff"
    ok = requests.get(url + "/status_check", timeout=30)
    assert ok.status_code == 200 and ok.headers["X-Content-Type-Options"] == "nosniff"


def test_a_quote_in_the_path_is_escaped_in_the_access_log(shared_server):
    path = f'/p/{time.time_ns()}"%20200%20"/forged.jpg'    # a request line has no spaces
    status, _, _ = raw(shared_server.url, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 404
    escaped = '"GET ' + path.replace('"', '\\"') + ' HTTP/1.1" 404 '
    wait_until(lambda: escaped in shared_server.log(), "the escaped line in the access log", 10)
