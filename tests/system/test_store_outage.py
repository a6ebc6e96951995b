"""The S3 store goes down in the middle of a mixed load, then comes back.

moto keeps its objects in memory, so the store is not stopped: a loopback TCP gate between the server
and moto is shut (it cuts the connections it carries and hangs up on new ones at once, as a store
that is down does) and opened again. What must hold: cache hits and info are served throughout,
uploads get a JSON 503 while the store is down, outputs made meanwhile reach the store once it is
back, and every image acknowledged with 200 is in the store, byte for byte.
"""
from __future__ import annotations

import itertools
import json
import os
import threading
from dataclasses import dataclass

import requests

from imageserver.core.paths import ImageKey
from tests import pictures
from tests.conftest import s3_flags
from tests.helpers import wait_until
from tests.system.remote import S3View

CLIENTS = 6
SEEDED = 3
# The kinds of request each client cycles through.
MIX = ("hit", "new_size", "upload", "hit", "info", "new_size", "hit", "upload")


@dataclass
class Done:
    kind: str
    path: str
    phases: tuple          # the store's phase when the request was sent and when it was answered
    status: int
    headers: dict
    body: bytes
    sent: bytes = b""      # an upload's image


class Load:
    """CLIENTS threads sending MIX in a loop against the server, recording every answer."""

    def __init__(self, server, seeded: list[str]):
        self.server, self.seeded = server, seeded
        self.phase = "up"
        self.done: list[Done] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sizes = itertools.count(20)
        self.uploads = itertools.count(0)
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True)
                        for n in range(CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(120)

    def count(self, kind: str, phase: str, check=lambda done: True) -> int:
        with self.lock:
            return sum(1 for d in self.done if d.kind == kind and d.phases == (phase, phase)
                       and check(d))

    def _client(self, number: int) -> None:
        for step in itertools.count(number):
            if self.stopping.is_set():
                return
            kind = MIX[step % len(MIX)]
            folder = self.seeded[step % len(self.seeded)]
            sent = b""
            with self.lock:
                if kind == "hit":
                    path = f"/{folder}/x100.jpg"
                elif kind == "info":
                    path = f"/{folder}/info.json"
                elif kind == "new_size":
                    path = f"/{folder}/w{next(self.sizes)}.jpg"
                else:
                    path, sent = "/p?outputs=x100.jpg", pictures.photo(200 + next(self.uploads), 150)
            before = self.phase
            if kind == "upload":
                answer = requests.post(self.server.url + path, data=sent, timeout=60)
            else:
                answer = requests.get(self.server.url + path, timeout=60)
            with self.lock:
                self.done.append(Done(kind, path, (before, self.phase), answer.status_code,
                                      dict(answer.headers), answer.content, sent))


def test_a_store_outage_under_load_loses_nothing_acknowledged(moto_server, s3_bucket, gate,
                                                              start_server):
    g = gate(int(moto_server.url.rsplit(":", 1)[1]))
    server = start_server(*s3_flags(moto_server, s3_bucket, g.url), "--store_retries", "0",
                          "--store_timeout", "3", "--upload_retry_seconds", "0.5")
    store = S3View(moto_server, s3_bucket)
    seeded = []
    for n in range(SEEDED):
        posted = server.post("/p?outputs=x100.jpg", data=pictures.photo(400 + n, 300))
        assert posted.status_code == 200, posted.text
        seeded.append(ImageKey("p", posted.json()["hash"]).folder)

    load = Load(server, seeded)
    load.start()
    try:
        wait_until(lambda: load.count("upload", "up") >= 4 and load.count("new_size", "up") >= 4,
                   what="requests before the outage")
        g.shut()
        load.phase = "down"
        wait_until(lambda: load.count("upload", "down") >= 6 and load.count("new_size", "down") >= 6
                   and load.count("hit", "down") >= 20, what="requests during the outage")
        g.open()
        load.phase = "back"
        wait_until(lambda: load.count("upload", "back", lambda d: d.status == 200) >= 4
                   and load.count("new_size", "back") >= 4, what="requests after the outage")
    finally:
        load.stop()
    done = load.done

    # Cache hits, info and new sizes: served throughout, whatever the store was doing.
    for d in done:
        if d.kind != "upload":
            assert d.status == 200, (d.kind, d.path, d.phases, d.status, d.body[:200])
    # Uploads: 200, or a clear JSON 503 while the store is down; never another answer.
    for d in done:
        if d.kind == "upload":
            assert d.status in (200, 503), (d.phases, d.status, d.body[:200])
            if d.status == 503:
                assert d.headers["Content-Type"] == "application/json"
                assert "cannot be reached" in json.loads(d.body)["error"]
    assert all(d.status == 503 for d in done if d.kind == "upload" and d.phases == ("down", "down"))
    # New sizes made while the store was down say so.
    during = [d for d in done if d.kind == "new_size" and d.phases == ("down", "down")]
    assert during and all(d.headers.get("X-Image-Stored") == "pending" for d in during)

    # Once the store is back, everything made meanwhile reaches it.
    wait_until(lambda: server.get("/status_check").json()["pending_uploads"] == 0,
               what="the pending uploads to be stored")
    for d in done:
        if d.status != 200:
            continue
        if d.kind == "upload":
            folder = ImageKey("p", json.loads(d.body)["hash"]).folder
            assert store.read(folder, "original") == d.sent
            assert store.read(folder, "info.json") == d.body
            local = os.path.join(server.base_path, *folder.split("/"), "x100.jpg")
            with open(local, "rb") as f:
                assert store.read(folder, "x100.jpg") == f.read()
        else:
            folder, name = d.path[1:].rsplit("/", 1)
            assert store.read(folder, name) == d.body, (d.path, d.phases)
    assert "Traceback" not in server.log()
