"""Workload 7, a page burst: a picture never seen before arrives (uploaded to us; for thumbor, a new
file under its loader's folder), then a page asks for several sizes of it at once, one client per
size. Bursts follow one another; ours and thumbor's take turns, pass after pass, as the wrk workloads
do.

Per burst: the time until the last of its outputs has arrived (the page's wait), and the CPU the
servers' workers spent on its outputs. Our upload (its check, and storing the original) is measured
apart, and is not in either figure: thumbor's "upload" is a file written by the bench.
"""
from __future__ import annotations

import os
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from imageserver.core.names import parse_output
from imageserver.core.settings import Settings

from . import peer


def interleave(targets: list, data: bytes, outputs: tuple, seconds: float, rounds: int,
               with_comment) -> tuple:
    """({name: figures}, {name: {output: bytes} of its last burst}) for each target in turn
    (`targets`: (name, a function that makes a new picture and returns its URLs, in output order,
    and its workers)."""
    runs = {name: [] for name, _, _ in targets}
    last = {}
    count = 0
    with ThreadPoolExecutor(len(outputs)) as pool:
        for _ in range(rounds):
            for name, new_picture, workers in targets:
                deadline = time.monotonic() + seconds / rounds
                while time.monotonic() < deadline:
                    count += 1
                    upload_cpu = workers.cpu_seconds()
                    urls = new_picture(with_comment(data, f"bench burst {count}"), count)
                    before = workers.cpu_seconds()
                    started = time.monotonic()
                    answers = list(pool.map(_get, urls))
                    wall = time.monotonic() - started
                    runs[name].append({"wall": wall, "cpu": workers.cpu_seconds() - before,
                                       "upload_cpu": before - upload_cpu,
                                       "not_ok": sum(status != 200 for status, _ in answers)})
                    last[name] = dict(zip(outputs, (body for _, body in answers)))
    return {name: _figures(run, workers) for (name, _, workers), run in
            zip(targets, runs.values())}, last


def _get(url: str) -> tuple:
    answer = requests.get(url, timeout=120)
    return answer.status_code, answer.content


def _figures(bursts: list, workers) -> dict:
    walls = sorted(b["wall"] for b in bursts)
    seconds = sum(walls)
    figures = {"requests": len(bursts), "made": len(bursts), "hits": 0, "socket_errors": 0,
               "not_ok": sum(b["not_ok"] for b in bursts), "seconds": round(seconds, 3),
               "rps": round(len(bursts) / seconds, 2),
               "p50_ms": round(1000 * statistics.median(walls), 1),
               "p99_ms": round(1000 * walls[min(len(walls) - 1, int(0.99 * len(walls)))], 1),
               "pass_rps": [], "peak_rss_mib": workers.peak_rss_mib(),
               "worker_cpu_ms": round(1000 * sum(b["cpu"] for b in bursts) / len(bursts), 2)}
    uploads = [b["upload_cpu"] for b in bursts if b["upload_cpu"]]
    if uploads:
        figures["upload_cpu_ms"] = round(1000 * statistics.mean(uploads), 2)
    return figures


def our_picture(server, namespace: str, outputs: tuple):
    """A new picture uploaded to our server; the URLs of its outputs."""
    def new_picture(data: bytes, count: int) -> list:
        answer = requests.post(f"{server.url}/{namespace}", data=data, timeout=120)
        answer.raise_for_status()
        h = answer.json()["hash"]
        folder = f"/{namespace}/{h[:3]}/{h[3:6]}/{h[6:9]}/{h[9:]}"
        return [f"{server.url}{folder}/{name}" for name in outputs]
    return new_picture


def peer_picture(thumbor, outputs: tuple):
    """A new file in thumbor's loader folder; the URLs of thumbor's same outputs."""
    folder = os.path.join(thumbor.sources, "burst")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    settings = Settings()
    geometries = [peer.geometry(parse_output(name, settings)) for name in outputs]

    def new_picture(data: bytes, count: int) -> list:
        with open(os.path.join(folder, f"{count}.jpg"), "wb") as f:
            f.write(data)
        return [thumbor.url + peer.url_template(f"burst/{count}.jpg", "jpg") % geometry
                for geometry in geometries]
    return new_picture
