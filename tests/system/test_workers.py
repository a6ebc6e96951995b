"""What only a real `images server` with several worker processes shows: one output made once and
one source fetched once however many ask at once (the locks are shared by processes), and counts that
every worker shares."""
import os
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from imageserver.images.variants import RECORDS
from tests import pictures
from tests.helpers import folder_of


def upload(server, data: bytes, namespace: str = "p", **params) -> str:
    response = server.post(f"/{namespace}", data=data, params=params)
    assert response.status_code == 200, response.text
    return response.json()["hash"]


def test_one_output_is_made_once_however_many_ask(shared_server):
    h = upload(shared_server, pictures.photo(1600, 1200))
    url = f"{shared_server.url}{folder_of(h)}/x500.webp"
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: requests.get(url, timeout=60), range(16)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert [r.headers["X-Image-Cache"] for r in responses].count("made") == 1
    leftovers = [n for n in os.listdir(f"{shared_server.base_path}{folder_of(h)}") if n.startswith(".")
                 and not n.startswith(RECORDS)]
    assert leftovers == []


def test_one_source_is_downloaded_once_however_many_ask(shared_server, source_server):
    def slow_body():
        time.sleep(0.5)
        return data

    data = pictures.photo(200, 150)
    source_server.routes["/slow.jpg"] = (200, {}, slow_body)
    url = source_server.url + "/slow.jpg"
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: shared_server.post("/p", params={"source": url}), range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert source_server.hits["/slow.jpg"] == 1


def test_status_check_counts_uploads_across_workers(start_server):
    server = start_server()
    for _ in range(6):
        assert server.post("/p", data=pictures.photo(30, 30)).status_code == 200
    assert server.post("/p", data=b"nope").status_code == 415
    counts = {tuple(server.get("/status_check").json()["posting"].values()) for _ in range(6)}
    assert counts == {(0, 7, 1)}
