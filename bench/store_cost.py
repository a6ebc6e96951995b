"""What storing an output before the reply costs a request: the same new sizes asked of a server with
no remote store and of one on S3 (moto's server on loopback), one request at a time.

    .venv/bin/python -m bench.store_cost [--requests 80]

Prints, for small and large outputs, the median time of a GET that makes a new size on each server,
and of the parts the servers time themselves (statsd datagrams on a loopback UDP socket per server):
the render (`processing.time.jpg`) and the S3 upload done before the reply (`upload.time.store`).
What is left of the difference is the store look-up that finds no copy made by another server (done
before storing was synchronous too). Not part of `make test` or `make bench`.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

from tests import pictures
from tests.helpers import IMAGES, free_port, server_environment, wait_until_up
from tests.storage_servers import MotoServer

BUCKET = "store-cost"
# (label, output name for the n-th request): small and large JPEGs from an 800x600 photo.
KINDS = (("small, w<W>.jpg, W from 150", lambda n: f"w{150 + n}.jpg"),
         ("large, <W>x750.jpg, W from 900", lambda n: f"{900 + n}x750.jpg"))


def start(folder: str, statsd_port: int, *flags: str) -> subprocess.Popen:
    port = free_port()
    args = [IMAGES, "--listen", "127.0.0.1", "--port", str(port), "--local_base_path",
            os.path.join(folder, "public"), "--workers", "2", "--status_port", "0",
            "--statsd_port", str(statsd_port), *flags, "server"]
    log = open(os.path.join(folder, "server.log"), "wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=server_environment())
    process.url = f"http://127.0.0.1:{port}"
    wait_until_up(process.url + "/status_check", process)
    return process


def made_time(session: requests.Session, url: str, sizes: list | None = None) -> float:
    """Milliseconds of a GET that makes a new output (its size in bytes added to `sizes`)."""
    began = time.perf_counter()
    answer = session.get(url, timeout=60)
    elapsed = (time.perf_counter() - began) * 1000
    assert answer.status_code == 200 and answer.headers["X-Image-Cache"] == "made", answer.text
    assert "X-Image-Stored" not in answer.headers
    if sizes is not None:
        sizes.append(len(answer.content))
    return elapsed


def timings(sock: socket.socket) -> dict:
    """The timings received so far, name -> [ms]."""
    sock.setblocking(False)
    found: dict = {}
    while True:
        try:
            lines = sock.recv(65536).decode().splitlines()
        except BlockingIOError:
            return found
        for line in lines:
            name, _, rest = line.partition(":")
            if rest.endswith("|ms"):
                found.setdefault(name.removeprefix("image_server."), []).append(float(rest[:-3]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=80, help="new sizes per kind and server")
    count = parser.parse_args().requests
    work = tempfile.mkdtemp(prefix="store-cost-")
    moto = MotoServer(free_port(), os.path.join(work, "moto.log"))
    moto.client().create_bucket(Bucket=BUCKET)
    s3 = ["--aws_bucket", BUCKET, "--s3_endpoint_url", moto.url, "--aws_access_key_id", "testing",
          "--aws_secret_key", "testing", "--remote_base_path", "images"]
    photo = pictures.photo(800, 600, "jpeg")
    servers, statsd = {}, {}
    try:
        for label, flags in (("local", ()), ("S3", s3)):
            folder = os.path.join(work, label)
            os.makedirs(folder)
            statsd[label] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            statsd[label].bind(("127.0.0.1", 0))
            servers[label] = start(folder, statsd[label].getsockname()[1], *flags)
        session = requests.Session()
        folders = {}
        for label, server in servers.items():
            digest = session.post(server.url + "/p", data=photo, timeout=60).json()["hash"]
            folders[label] = f"{server.url}/p/{digest[:3]}/{digest[3:6]}/{digest[6:9]}/{digest[9:]}"
            for n in range(5):  # warm-up: each worker's first renders load ImageMagick's caches
                made_time(session, f"{folders[label]}/w{100 + n}.png")
        results = {}
        for kind, name_of in KINDS:
            for sock in statsd.values():
                timings(sock)
            times, sizes = {label: [] for label in servers}, []
            for n in range(count):  # the two servers in turn, so that the machine's load is shared
                for label in servers:
                    times[label].append(made_time(session, f"{folders[label]}/{name_of(n)}", sizes))
            time.sleep(0.5)     # the last datagrams
            results[kind] = {label: {"GET": times[label], **timings(statsd[label])}
                             for label in servers}
            results[kind]["KB"] = statistics.mean(sizes) / 1000
        report(results, count)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(30)
        moto.stop()
    return 0


def report(results: dict, count: int) -> None:
    print(f"{count} new sizes of an 800x600 JPEG per row, one request at a time, 2 workers; median ms")
    print("| output | mean KB | GET, local disk only (render) | GET, S3 (render) | difference | "
          "of which the S3 upload |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, _ in KINDS:
        local, remote = results[kind]["local"], results[kind]["S3"]
        median = {name: statistics.median(values) for name, values in remote.items()}
        base = statistics.median(local["GET"])
        print(f"| {kind} | {results[kind]['KB']:.0f} | {base:.1f} ({statistics.median(local['processing.time.jpg']):.1f}) | "
              f"{median['GET']:.1f} ({median['processing.time.jpg']:.1f}) | "
              f"{median['GET'] - base:+.1f} | {median['upload.time.store']:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
