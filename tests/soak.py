"""The soak test (`make soak`, not part of `make test`): a real server with 2 workers, driven for a
while by concurrent clients mixing uploads, new sizes, cache hits, bad inputs and refused sources,
in a network namespace that has loopback only (it re-runs itself under `unshare --net`; needs root).

    python -m tests.soak [--seconds 300] [--clients 6]

Reports requests served, 5xx count (must be 0), p50/p99 latency, each worker's peak RSS and open file
count at start and end, and checks that every stored file is complete (an original's MD5 is its
name; every output decodes). Exits 1 if anything is wrong.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import requests

from imageserver.images.variants import RECORDS
from tests import hostile, pictures
from tests.helpers import IMAGES, folder_of, free_port, wait_until_up, worker_pids
from tests.netns import in_own_network, isolated_command

# How often each kind of request is made, out of the total.
MIX = {"upload": 12, "new_size": 25, "cache_hit": 35, "info": 8, "bad_input": 12, "refused_source": 8,
       "costly_work": 8}
# Requests for minutes of work from small files (each a 413 at once): outputs of a 7 KB animation of
# 300 frames, an upload asking for 20 big PNGs. And idle connections held open to the status port.
COSTLY_OUTPUTS = ("x1000.gif", "w1000.gif", "x100.gif")
IDLE_STATUS_CONNECTIONS = 300
# Sources the server must refuse (4xx), among them IPv6 forms that carry an inside IPv4 address.
REFUSED_SOURCES = [
    "http://127.0.0.1:1/a.jpg", "http://169.254.169.254/latest/meta-data/", "http://[::1]/a.jpg",
    "file:///etc/passwd", "http://10.0.0.1/a.jpg", "http://[::127.0.0.1]:1/a.jpg",
    "http://[::ffff:0:7f00:1]:1/a.jpg", "http://[::169.254.169.254]/latest/meta-data/",
    "http://[::ffff:10.0.0.1]/a.jpg", "http://[2002:a9fe:a9fe::1]/", "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b:1::a00:1]/", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/"]
# Open files may differ by a few between samples (a request in flight, a log rotation).
FD_NOISE = 8


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=6)
    options = parser.parse_args(argv)
    if not in_own_network():
        # It tries addresses other than loopback: where loopback is all there is, a guard that
        # fails sends nothing off the machine.
        command = [sys.executable, "-m", "tests.soak", *(argv if argv is not None else sys.argv[1:])]
        return subprocess.run(isolated_command(command)).returncode
    folder = tempfile.mkdtemp(prefix="imageserver-soak-")
    try:
        return Soak(folder, options.seconds, options.clients).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Soak:
    def __init__(self, folder: str, seconds: float, clients: int):
        self.folder, self.seconds, self.clients = folder, seconds, clients
        self.base = os.path.join(folder, "public")
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.by_kind: Counter = Counter()
        self.failures: list[str] = []
        self.images: list[str] = []          # folders of uploaded images
        self.made: list[str] = []            # paths of outputs known to exist
        self.warm: dict = {}                 # each worker's RSS a quarter into the run

    def run(self) -> int:
        print("making test pictures ...", flush=True)
        self.photos = [pictures.photo(random.randint(200, 1600), random.randint(200, 1200), fmt)
                       for fmt in ("jpeg",) * 6 + ("png", "webp", "gif")]
        self.bad = [*hostile.truncated_images().values(), *hostile.garbage_after_magic().values(),
                    hostile.mvg_payload("http://127.0.0.1:1", "/tmp/x"), hostile.gif_frames(2000),
                    hostile.png_header_only(50_000, 50_000), hostile.png_text_bomb(2**30),
                    hostile.gif_big_screen(300, 7000), b"", b"not an image",
                    hostile.jpeg_many_scans(7000, 7000, 700), hostile.jpeg_many_scans(7000, 7000, 2000)]
        port, self.status_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}"
        log_path = os.path.join(self.folder, "server.log")
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [IMAGES, "--port", str(port), "--local_base_path", self.base, "--workers", "2",
                 "--status_port", str(self.status_port), "server"],
                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(self.url + "/status_check", server)
            for photo in self.photos[:3]:
                self.request("upload", "POST", "/p?outputs=x100.jpg", data=photo)
            animation = self.request("upload", "POST", "/p", data=hostile.gif_frames(300), expect=200)
            self.animation = folder_of(animation.json()["hash"])
            idle = IdleConnections(self.status_port, IDLE_STATUS_CONNECTIONS)
            workers = worker_pids(server.pid)
            start = {pid: sample(pid) for pid in workers}
            print(f"driving {self.url} for {self.seconds:.0f} s with {self.clients} clients; "
                  f"workers {workers}", flush=True)
            peaks = self.drive(workers)
            end_workers = worker_pids(server.pid)
            end = {pid: sample(pid) for pid in end_workers}
            status = requests.get(f"http://127.0.0.1:{self.status_port}/status_check", timeout=10)
            idle.stop()
            print(f"status port, after {idle.opened} idle connections opened on it: {status.status_code}")
            if status.status_code != 200:
                self.failures.append(f"status port: {status.status_code} {status.text[:120]!r}")
        finally:
            server.terminate()
            server.wait(60)
        return self.report(workers, start, end_workers, end, peaks, log_path)

    def drive(self, workers: list[int]) -> dict:
        deadline = time.monotonic() + self.seconds
        threads = [threading.Thread(target=self.client, args=(deadline, seed), daemon=True)
                   for seed in range(self.clients)]
        for thread in threads:
            thread.start()
        peaks = {pid: 0 for pid in workers}
        warm_at = time.monotonic() + self.seconds / 4
        while any(thread.is_alive() for thread in threads):
            for pid in workers:
                now = sample(pid)
                peaks[pid] = max(peaks[pid], now.get("rss", 0))
                if time.monotonic() >= warm_at and pid not in self.warm:
                    self.warm[pid] = now.get("rss", 0)
            time.sleep(1)
        for pid in workers:
            peaks[pid] = max(peaks[pid], sample(pid).get("hwm", 0))
        return peaks

    def client(self, deadline: float, seed: int) -> None:
        rng = random.Random(seed)
        kinds, weights = zip(*MIX.items())
        while time.monotonic() < deadline:
            getattr(self, rng.choices(kinds, weights)[0])(rng)

    # -- the kinds of request --------------------------------------------------------------------

    def upload(self, rng: random.Random) -> None:
        photo = rng.choice(self.photos)
        if photo.startswith(b"\xff\xd8"):
            photo += os.urandom(16)          # after the JPEG's end: a new original every time
        response = self.request("upload", "POST", "/p?outputs=x100.jpg,w200.webp", data=photo,
                                expect=200)
        if response is not None and response.status_code == 200:
            with self.lock:
                self.images.append(folder_of(response.json()["hash"]))

    def new_size(self, rng: random.Random) -> None:
        if not self.images:
            return
        name = rng.choice([f"w{rng.randint(10, 1000)}.jpg", f"x{rng.randint(10, 600)}.webp",
                           f"{rng.randint(10, 800)}x{rng.randint(10, 800)}-q{rng.randint(30, 95)}.png"])
        path = f"{rng.choice(self.images)}/{name}"
        # 403: the image has --maximum_variants outputs already, a refusal the mix is meant to meet
        response = self.request("new_size", "GET", path, expect=(200, 403))
        if response is not None and response.status_code == 200:
            with self.lock:
                self.made.append(path)

    def cache_hit(self, rng: random.Random) -> None:
        if self.made:
            self.request("cache_hit", "GET", rng.choice(self.made), expect=200)

    def info(self, rng: random.Random) -> None:
        if self.images:
            self.request("info", "GET", rng.choice(self.images) + "/info.json", expect=200)

    def bad_input(self, rng: random.Random) -> None:
        self.request("bad_input", "POST", "/p", data=rng.choice(self.bad), expect="4xx")

    def costly_work(self, rng: random.Random) -> None:
        if rng.random() < 0.5:
            self.request("costly_work", "GET", f"{self.animation}/{rng.choice(COSTLY_OUTPUTS)}",
                         expect=(413,))
        else:
            names = ",".join(f"{1000 - i}x1000-q90.png" for i in range(20))
            self.request("costly_work", "POST", f"/p?outputs={names}", data=rng.choice(self.photos),
                         expect=(413,))

    def refused_source(self, rng: random.Random) -> None:
        source = rng.choice(REFUSED_SOURCES)
        self.request("refused_source", "POST", "/p", params={"source": source}, expect="4xx")

    def request(self, kind: str, method: str, path: str, expect=None, **kwargs):
        started = time.monotonic()
        try:
            response = requests.request(method, self.url + path, timeout=120, **kwargs)
        except requests.RequestException as error:
            with self.lock:
                self.failures.append(f"{kind} {method} {path[:80]}: {type(error).__name__}")
                self.statuses["error"] += 1
            return None
        elapsed = time.monotonic() - started
        wrong = (expect == 200 and response.status_code != 200) or \
            (expect == "4xx" and not 400 <= response.status_code < 500) or \
            (isinstance(expect, tuple) and response.status_code not in expect)
        with self.lock:
            self.latencies.append(elapsed)
            self.statuses[response.status_code] += 1
            self.by_kind[kind] += 1
            if wrong:
                self.failures.append(f"{kind} {method} {path[:80]}: {response.status_code} "
                                     f"{response.text[:120]!r}")
        return response

    # -- the report --------------------------------------------------------------------------------

    def report(self, workers, start, end_workers, end, peaks, log_path) -> int:
        problems = list(self.failures[:20])
        served = sum(self.by_kind.values())
        fivexx = sum(count for status, count in self.statuses.items()
                     if isinstance(status, int) and status >= 500)
        latencies = sorted(self.latencies)
        print(f"\nrequests served: {served} in {self.seconds:.0f} s "
              f"({served / self.seconds:.1f}/s); by kind: {dict(self.by_kind)}")
        print(f"statuses: {dict(sorted(self.statuses.items(), key=str))}")
        print(f"5xx: {fivexx}   connection errors: {self.statuses['error']}")
        if latencies:
            print(f"latency p50 {percentile(latencies, 50) * 1000:.0f} ms, "
                  f"p99 {percentile(latencies, 99) * 1000:.0f} ms, "
                  f"max {latencies[-1] * 1000:.0f} ms")
        for pid in workers:
            before, after = start[pid], end.get(pid, {})
            print(f"worker {pid}: peak RSS {peaks[pid] / 2**20:.0f} MiB; RSS start "
                  f"{before['rss'] / 2**20:.0f} MiB, after a quarter of the run "
                  f"{self.warm.get(pid, 0) / 2**20:.0f} MiB, end {after.get('rss', 0) / 2**20:.0f} MiB; "
                  f"open files start {before['fds']}, end {after.get('fds', 'gone')}")
            if pid not in end:
                problems.append(f"worker {pid} was replaced during the run")
            elif after["fds"] > before["fds"] + FD_NOISE:
                problems.append(f"worker {pid}: open files grew from {before['fds']} to {after['fds']}")
        if sorted(end_workers) != sorted(workers):
            problems.append(f"workers changed: {workers} -> {end_workers}")
        if fivexx:
            problems.append(f"{fivexx} responses were 5xx")
        stored, broken = check_storage(self.base)
        print(f"stored files checked: {stored}, incomplete: {len(broken)}")
        problems += broken[:20]
        with open(log_path, errors="replace") as log:
            tracebacks = log.read().count("Traceback")
        if tracebacks:
            problems.append(f"{tracebacks} tracebacks in the server log")
        if problems:
            with open(log_path, errors="replace") as log:
                print("\nthe end of the server log:\n" + "".join(log.readlines()[-30:]))
        print("\nOK" if not problems else "\nPROBLEMS:\n  " + "\n  ".join(problems))
        return 1 if problems else 0


def sample(pid: int) -> dict:
    """RSS, peak RSS (bytes) and open file descriptors of a process; {} when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {"rss": int(fields["VmRSS"].split()[0]) * 1024,
                "hwm": int(fields["VmHWM"].split()[0]) * 1024,
                "fds": len(os.listdir(f"/proc/{pid}/fd"))}
    except (FileNotFoundError, ProcessLookupError, KeyError):
        return {}


class IdleConnections:
    """Up to `count` connections to `port` that send nothing, topped up every second while the soak
    runs (the listener drops each after a few seconds)."""

    def __init__(self, port: int, count: int):
        self.port, self.count, self.opened = port, count, 0
        self.held: list = []
        self.stopping = threading.Event()
        threading.Thread(target=self.keep, daemon=True).start()

    def keep(self) -> None:
        while not self.stopping.is_set():
            self.held = [sock for sock in self.held if not _closed_by_peer(sock)]
            while len(self.held) < self.count and not self.stopping.is_set():
                try:
                    self.held.append(socket.create_connection(("127.0.0.1", self.port), timeout=5))
                    self.opened += 1
                except OSError:
                    break
            self.stopping.wait(1)

    def stop(self) -> None:
        self.stopping.set()
        for sock in self.held:
            sock.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        gone = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        gone = True
    if gone:
        sock.close()
    return gone


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def check_storage(base: str) -> tuple[int, list[str]]:
    """Every original's MD5 is the hash its folder is named by; every output decodes whole; no
    temporary file is left behind."""
    from wand.image import Image
    checked, broken = 0, []
    for folder, _, names in os.walk(base):
        for name in names:
            path = os.path.join(folder, name)
            if ".imageserver" in path:
                continue
            if name.startswith(RECORDS):    # an image's records: its variants, its failures
                continue
            checked += 1
            relative = os.path.relpath(path, base)
            if name.startswith("."):
                broken.append(f"left behind: {relative}")
            elif name == "original":
                digest = hashlib.md5(open(path, "rb").read()).hexdigest()
                if digest != "".join(relative.split(os.sep)[1:5]):
                    broken.append(f"original does not match its name: {relative}")
            elif name != "info.json":
                try:
                    with Image(filename=path) as image:
                        image.make_blob("rgb")
                except Exception as error:  # any failure to decode is what we look for
                    broken.append(f"output does not decode: {relative} ({error})")
    return checked, broken


if __name__ == "__main__":
    sys.exit(main())
