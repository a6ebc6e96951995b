"""Source URLs against a real server: IPv6 forms of inside addresses refused (in a network namespace
with loopback only), a source that trickles its headers cut off at --http_timeout without stalling
the server, and the records of past downloads swept."""
from __future__ import annotations

import os
import threading
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import pictures
from tests.helpers import assert_json_error, folder_of
from tests.ipv4_forms import FORMS, dangerous_ipv4, free_bits
from tests.trickle import SLOW_HEADERS


@pytest.mark.only_loopback
def test_ipv6_forms_of_inside_addresses_are_refused(server_with, source_server):
    source_server.routes["/a.png"] = (200, {}, pictures.solid(10, 10, "red"))
    port = source_server.server_address[1]
    server = server_with(private_sources=False)
    for address in ("::127.0.0.1", "::ffff:0:7f00:1", "::ffff:0:127.0.0.1", "::ffff:127.0.0.1",
                    "64:ff9b::7f00:1", "64:ff9b:1::7f00:1", "2002:7f00:1::1",
                    "2001:0:4136:e378:8000:63bf:80ff:fffe", "::10.0.0.1", "::ffff:0:192.168.1.1"):
        url = f"http://[{address}]:{port}/a.png"
        assert_json_error(server.post("/p", params={"source": url}), 403)
    for url in ("http://[::169.254.169.254]/", "http://[::ffff:0:a9fe:a9fe]/latest/meta-data/",
                "http://[2002:a9fe:a9fe::1]/", "http://[64:ff9b::169.254.169.254]/"):
        assert_json_error(server.post("/p", params={"source": url}), 403)
    assert source_server.hits == {}


@pytest.mark.only_loopback
def test_metadata_is_refused_in_every_form_with_private_sources_allowed(shared_server, source_server):
    source_server.routes["/a.png"] = (200, {}, pictures.solid(10, 10, "red"))
    server = shared_server     # --allow_private_sources
    for address in ("169.254.169.254", "[::169.254.169.254]", "[::ffff:169.254.169.254]",
                    "[::ffff:0:169.254.169.254]", "[2002:a9fe:a9fe::]", "[64:ff9b::a9fe:a9fe]",
                    "[2001:0:a9fe:a9fe::]", "[::100.100.100.200]", "[::ffff:0:169.254.170.2]"):
        error = assert_json_error(server.post("/p", params={"source": f"http://{address}/latest"}), 403)
        assert "metadata" in error
    # The flag still lets loopback through, in its mapped form too.
    port = source_server.server_address[1]
    ok = server.post("/p", params={"source": f"http://[::ffff:127.0.0.1]:{port}/a.png"})
    assert ok.status_code == 200, ok.text
    assert source_server.hits == {"/a.png": 1}


@pytest.fixture
def private_refused(server_with):
    return server_with(private_sources=False)


@pytest.mark.only_loopback
@given(st.sampled_from(sorted(FORMS)), dangerous_ipv4, free_bits)
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_form_of_an_inside_address_is_refused(private_refused, source_server, form, address,
                                                  free):
    port = source_server.server_address[1]
    url = f"http://[{FORMS[form](address, free)}]:{port}/a.png"
    assert_json_error(private_refused.post("/p", params={"source": url}), 403)
    assert source_server.hits == {}


def test_a_source_trickling_its_headers_is_cut_off_at_the_timeout(start_server, trickler):
    """At a byte every tenth of a second, the headers alone would take 26 s, no receive ever waiting
    as long as --http_timeout: the server answers 504 long before, and is free for other requests
    while two such downloads are under way."""
    slow = trickler(SLOW_HEADERS)
    server = start_server("--http_timeout", "2")
    info = server.post("/p", data=pictures.photo(60, 40)).json()
    source = {"source": f"{slow.url}/a.png"}
    answers = []

    def post():
        answers.append(requests.post(server.url + "/p", params=source, timeout=(5, 20)))

    posts = [threading.Thread(target=post) for _ in range(2)]
    for thread in posts:
        thread.start()
    assert slow.wait_for_connections(2, seconds=20)
    other = requests.get(server.url + folder_of(info["hash"]) + "/info.json", timeout=(5, 20))
    assert other.status_code == 200 and other.json()["hash"] == info["hash"]
    for thread in posts:
        thread.join()
    assert len(answers) == 2
    for answer in answers:
        assert "too long" in assert_json_error(answer, 504)
    sent = slow.wait_for_clients_gone(2, seconds=20)
    assert len(sent) == 2 and max(sent) < len(SLOW_HEADERS) / 4, sent
    assert slow.finished == 0


def test_records_of_past_downloads_are_swept(start_server, source_server):
    """One record per source URL, kept as long as it is of use (a minute): many different URLs
    leave the folder no larger than the records of the last minute."""
    server = start_server()
    image = pictures.solid(10, 10, "red")
    records = os.path.join(server.base_path, ".imageserver", "sources")

    def fetch(path: str) -> None:
        source_server.routes[path] = (200, {}, image)
        response = server.post("/p", params={"source": source_server.url + path})
        assert response.status_code == 200, response.text

    def a_minute_goes_by():
        then = time.time() - 120
        for name in os.listdir(records):
            os.utime(os.path.join(records, name), (then, then))

    def kept():
        return [name for name in os.listdir(records) if not name.startswith(".")]

    for round in range(4):
        for i in range(5):
            fetch(f"/{round}/{i}.png")
        assert len(kept()) <= 5 + 1, kept()
        a_minute_goes_by()
    fetch("/last.png")
    assert len(kept()) == 1
    assert sorted(os.listdir(records)) == [".last-sweep", kept()[0]]
