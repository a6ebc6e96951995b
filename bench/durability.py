"""What durable writes cost: the same uploads and renders against `images server` with its default
(every file flushed to disk before the reply) and with --no_fsync, on local disk.

    python -m bench.durability [--uploads 300] [--renders 300] [--rounds 2] [--folder DIR]

The two servers take turns (durable, then not, `--rounds` times), so that load from other programs
on a shared machine falls on both alike. Each run: 2 clients at once (one per worker) posting an
800x600 JPEG with outputs=x300.jpg (4 files flushed each: original, info.json, output, and the new
image folder's parents), then asking for new sizes of those images (1 file each). `--folder` must be
on the disk to measure (the default is under bench/work/): on a tmpfs, fsync costs nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

import requests

from imageserver.core import files
from tests import pictures
from tests.faults import image_url, launch

HERE = os.path.dirname(os.path.abspath(__file__))


def run(folder: str, flags: list[str], uploads: int, renders: int, photo: bytes) -> dict:
    base = tempfile.mkdtemp(dir=folder)
    server = launch(os.path.join(base, "public"), os.path.join(base, "server.log"), *flags)
    try:
        session = requests.Session()
        digests: list[str] = []
        upload_times = timed(uploads, lambda n: digests.append(session.post(
            server.url + "/p", params={"outputs": "x300.jpg"}, data=photo + str(n).encode(),
            timeout=60).json()["hash"]))
        render_times = timed(renders, lambda n: check(session.get(
            server.url + image_url(digests[n % len(digests)], f"w{100 + n // len(digests)}.jpg"),
            timeout=60)))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return {"uploads": upload_times, "renders": render_times}


def timed(count: int, request) -> dict:
    """Make `count` requests with 2 clients at once: requests per second, and latencies in ms."""
    latencies: list[float] = []
    numbers = iter(range(count))
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            started = time.perf_counter()
            request(n)
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"per_second": count / elapsed, "p50": latencies[len(latencies) // 2],
            "mean": statistics.mean(latencies)}


def file_cost(folder: str, durable: bool, count: int = 200, size: int = 100_000) -> float:
    """Median ms to store one 100 KB file through files.write_atomically, without any server: what
    the flushes cost on this disk, free of the noise of requests."""
    base = tempfile.mkdtemp(dir=folder)
    data = os.urandom(size)
    times = []
    try:
        for n in range(count):
            started = time.perf_counter()
            files.write_atomically(os.path.join(base, str(n % 20), f"x{n}.jpg"), data, durable=durable)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return statistics.median(times)


def check(response: requests.Response) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:200]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--renders", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--folder", default=os.path.join(HERE, "work"))
    options = parser.parse_args(argv)
    os.makedirs(options.folder, exist_ok=True)
    photo = pictures.photo(800, 600)
    results = {"durable (default)": [], "--no_fsync": []}
    for _ in range(options.rounds):
        for name, flags in (("durable (default)", []), ("--no_fsync", ["--no_fsync"])):
            print(f"{name} ...", flush=True)
            results[name].append(run(options.folder, flags, options.uploads, options.renders, photo))
    print(f"\n{options.uploads} uploads (800x600 JPEG, outputs=x300.jpg) and {options.renders} new "
          f"sizes, 2 clients, best of {options.rounds} rounds; folder {options.folder}; "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| | uploads/s | upload p50 ms | new sizes/s | new size p50 ms |")
    print("|---|---:|---:|---:|---:|")
    best = {}
    for name, runs in results.items():
        up = max((r["uploads"] for r in runs), key=lambda r: r["per_second"])
        new = max((r["renders"] for r in runs), key=lambda r: r["per_second"])
        best[name] = (up, new)
        print(f"| {name} | {up['per_second']:.1f} | {up['p50']:.1f} | {new['per_second']:.1f} | "
              f"{new['p50']:.1f} |")
    (up_d, new_d), (up_f, new_f) = best["durable (default)"], best["--no_fsync"]
    print(f"\none 100 KB file stored (median of 200): {file_cost(options.folder, True):.2f} ms flushed, "
          f"{file_cost(options.folder, False):.2f} ms not")
    print(f"durable writes cost {up_d['p50'] - up_f['p50']:+.1f} ms per upload at p50 "
          f"({up_d['per_second'] / up_f['per_second']:.2f}x the throughput) and "
          f"{new_d['p50'] - new_f['p50']:+.1f} ms per new size "
          f"({new_d['per_second'] / new_f['per_second']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
