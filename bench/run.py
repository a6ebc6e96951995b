"""`make bench`: start `images server` (2 workers), drive workloads 1-6 with wrk, run the `convert`
baseline on the same inputs, score the outputs' quality, and write bench/results.json and a chart."""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Optional

import requests
from wand.version import MAGICK_VERSION

from imageserver.names import parse_output
from imageserver.settings import Settings

from . import baseline, inputs, quality, report
from .server import ImageServer, Nginx, Unavailable

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "workload.lua")
WRK_THREADS, CONNECTIONS = 2, 4
NAMESPACE = "bench"
COPIES = 4            # uploads of each source under new hashes, for more distinct output names
QUALITY_SAMPLES = 5


@dataclass
class Workload:
    key: str
    title: str
    source: str                     # a name from inputs.SOURCES
    mode: str                       # a mode of workload.lua
    low: int = 0
    high: int = 0
    ext: str = "jpg"
    seconds_factor: float = 1.0
    baseline: bool = False          # also run the convert baseline
    target_rps: Optional[float] = None   # the Pillow-based peer's figure from the issue
    results: dict = field(default_factory=dict)

    def name(self, i: int) -> str:
        """The i-th output name of this workload's range, spread over the range as workload.lua does."""
        span = self.high - self.low + 1
        count = span * span if self.mode == "fill" else span
        stride = _stride(count)
        j = (i * stride) % count
        if self.mode == "fill":
            return f"{self.low + j % span}x{self.low + j // span}.{self.ext}"
        return f"{'w' if self.mode == 'width' else 'x'}{self.low + j}.{self.ext}"


def _stride(n: int) -> int:
    s = math.floor(n * 0.618) + 1
    while math.gcd(s, n) != 1:
        s += 1
    return s


UPLOAD_OUTPUTS = "x300.jpg,x300.webp,w640.jpg"
WORKLOADS = [
    Workload("1", "800x600 JPEG, new <W>x<H>.jpg", "web-800x600.jpg", "fill", 100, 500, "jpg",
             baseline=True, target_rps=309),
    Workload("2", "12 MP JPEG, new w<W>.jpg", "photo-12mp.jpg", "width", 200, 1000, "jpg",
             baseline=True, target_rps=30),
    Workload("3 jpg", "12 MP JPEG, new x<S>.jpg", "photo-12mp.jpg", "square", 100, 600, "jpg",
             baseline=True, target_rps=5.9),
    Workload("3 webp", "12 MP JPEG, new x<S>.webp", "photo-12mp.jpg", "square", 100, 600, "webp",
             baseline=True, target_rps=11),
    Workload("4", "12 MP PNG with alpha, new w<W>.webp", "photo-12mp-alpha.png", "width", 200, 1000,
             "webp", seconds_factor=1.5, target_rps=1.8),
    Workload("5", f"upload 12 MP JPEG, outputs={UPLOAD_OUTPUTS}", "photo-12mp.jpg", "upload",
             seconds_factor=1.5),
    Workload("6 gunicorn", "cache hits through gunicorn", "web-800x600.jpg", "paths",
             target_rps=3200),
    Workload("6 nginx", "cache hits through nginx (generated block)", "web-800x600.jpg", "paths",
             target_rps=32000),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per workload")
    parser.add_argument("--only", default="", help="comma-separated workload keys (e.g. 1,2)")
    parser.add_argument("--output", default=HERE, help="folder for results.json and results.png")
    args = parser.parse_args(argv)
    work = os.path.join(HERE, "work")
    print("Making the sources (once, kept in bench/work/) ...", flush=True)
    sources = inputs.make_all(work)
    base = os.path.join(work, "public")
    shutil.rmtree(base, ignore_errors=True)
    chosen = [w for w in WORKLOADS if not args.only or w.key.split()[0] in args.only.split(",")
              or w.key in args.only.split(",")]
    machine = describe_machine()
    server = ImageServer(base, os.path.join(work, "server.log"))
    try:
        folders = upload_sources(server, sources)
        for workload in chosen:
            print(f"workload {workload.key}: {workload.title} ...", flush=True)
            try:
                workload.results = measure(workload, server, sources, folders, work, args.seconds)
            except Unavailable as error:
                workload.results = {"skipped": str(error)}
        memory = largest_source_memory(server, sources)
    finally:
        server.stop()
    results = {"machine": machine, "connections": CONNECTIONS, "workers": 2,
               "seconds": args.seconds, "memory_largest_source": memory,
               "workloads": [{"key": w.key, "title": w.title, "target_rps": w.target_rps,
                              **w.results} for w in chosen]}
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(report.table(results))
    report.chart(results, os.path.join(args.output, "results.png"))
    print(f"Wrote {args.output}/results.json and results.png")
    return 0


def describe_machine() -> dict:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                     platform.processor())
    with open("/proc/meminfo") as f:
        memory_kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "imagemagick": MAGICK_VERSION.split(" https")[0],
            "load_average_at_start": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same picture under new bytes (and so a new hash): a JPEG comment after the start marker."""
    note = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + jpeg[2:]


def upload_sources(server: ImageServer, sources: dict) -> dict:
    """Upload COPIES of each source; return, per source name, the list of its image folders."""
    folders = {}
    for name, path in sources.items():
        with open(path, "rb") as f:
            data = f.read()
        copies = COPIES if name.endswith(".jpg") else 1
        folders[name] = []
        for i in range(copies):
            body = with_comment(data, f"bench copy {i}") if name.endswith(".jpg") else data
            answer = requests.post(f"{server.url}/{NAMESPACE}", data=body, timeout=120)
            answer.raise_for_status()
            h = answer.json()["hash"]
            folders[name].append(f"/{NAMESPACE}/{h[:3]}/{h[3:6]}/{h[6:9]}/{h[9:]}")
    return folders


def measure(workload: Workload, server: ImageServer, sources: dict, folders: dict, work: str,
            seconds: float) -> dict:
    """Warm up, reset the workers' peak RSS, run wrk, then score a few outputs and run the baseline."""
    url, nginx = server.url, None
    if workload.mode == "paths":
        paths_file = hit_paths(workload, server, folders, work)
        if workload.key.endswith("nginx"):
            nginx = Nginx(server, os.path.join(work, "nginx"))
            url = nginx.url
        mode_args = [paths_file]
    elif workload.mode == "upload":
        mode_args = [sources[workload.source], NAMESPACE, UPLOAD_OUTPUTS]
    else:
        mode_args = [",".join(folders[workload.source]), str(workload.low), str(workload.high),
                     workload.ext]
    try:
        warm = wrk(url, workload.mode, 0, mode_args, 2)
        offset = warm["requests"] + warm["requests"] // 5 + 64
        server.reset_peak_rss()
        cpu = server.cpu_seconds()
        measured = wrk(url, workload.mode, offset, mode_args, seconds * workload.seconds_factor)
        measured["peak_rss_mib"] = server.peak_rss_mib()
        if not nginx:
            used = server.cpu_seconds() - cpu
            measured["worker_cpu_ms"] = round(1000 * used / max(1, measured["requests"]), 2)
    finally:
        if nginx:
            nginx.stop()
    measured["rps"] = round(measured["requests"] / measured["seconds"], 2)
    if workload.mode in ("fill", "width", "square", "upload"):
        measured["ssim"] = score_outputs(workload, server, sources, folders)
    if workload.baseline:
        measured["convert"] = run_baseline(workload, sources, work, seconds)
        measured["ratio_to_convert"] = round(measured["rps"] / measured["convert"]["rps"], 2)
    return measured


def wrk(url: str, mode: str, offset: int, mode_args: list, seconds: float) -> dict:
    command = ["wrk", "-t", str(WRK_THREADS), "-c", str(CONNECTIONS), "-d", f"{seconds:.0f}s",
               "--timeout", "60s", "-s", LUA, url, "--", mode, str(WRK_THREADS), str(offset),
               *mode_args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    match = re.search(r"^BENCH_JSON (.*)$", done.stdout, re.M)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    return json.loads(match.group(1))


def hit_paths(workload: Workload, server: ImageServer, folders: dict, work: str) -> str:
    """Make 200 outputs of the 800x600 source, and list their paths for the cache-hit workloads."""
    folder = folders[workload.source][0]
    paths = [f"{folder}/w{width}.jpg" for width in range(100, 300)]
    for path in paths:
        requests.get(server.url + path, timeout=60).raise_for_status()
    listed = os.path.join(work, "hit-paths.txt")
    with open(listed, "w") as f:
        f.write("\n".join(paths) + "\n")
    return listed


def score_outputs(workload: Workload, server: ImageServer, sources: dict, folders: dict) -> dict:
    """SSIM of a few outputs of this workload against a Lanczos downscale from full resolution."""
    with open(sources[workload.source], "rb") as f:
        source = f.read()
    settings = Settings()
    if workload.mode == "upload":
        names = UPLOAD_OUTPUTS.split(",")
    else:
        names = [workload.name(10_007 * i + 3) for i in range(QUALITY_SAMPLES)]
    scores = {}
    for name in names:
        got = requests.get(f"{server.url}{folders[workload.source][-1]}/{name}", timeout=120)
        got.raise_for_status()
        scores[name] = quality.score(source, parse_output(name, settings), got.content)
    return _summary(scores)


def run_baseline(workload: Workload, sources: dict, work: str, seconds: float) -> dict:
    names = (workload.name(i) for i in itertools.count(50_000))
    folder = os.path.join(work, "convert", workload.key.replace(" ", "-"))
    shutil.rmtree(folder, ignore_errors=True)
    result = baseline.run(sources[workload.source], names, folder, seconds, CONNECTIONS)
    with open(sources[workload.source], "rb") as f:
        source = f.read()
    settings = Settings()
    scores = {}
    for name, path in itertools.islice(result.pop("outputs").items(), QUALITY_SAMPLES):
        with open(path, "rb") as f:
            scores[name] = quality.score(source, parse_output(name, settings), f.read())
    result["ssim"] = _summary(scores)
    return result


def _summary(scores: dict) -> dict:
    """Mean and least SSIM of the outputs, and the mean ceiling (the reference itself, encoded)."""
    values = [value for value, _ in scores.values()]
    ceilings = [ceiling for _, ceiling in scores.values()]
    return {"mean": round(sum(values) / len(values), 4), "min": round(min(values), 4),
            "ceiling": round(sum(ceilings) / len(ceilings), 4),
            "each": {name: round(value, 4) for name, (value, _) in scores.items()}}


def largest_source_memory(server: ImageServer, sources: dict) -> dict:
    """Each worker's peak RSS while making outputs of a 50-megapixel JPEG, two requests at a time."""
    with open(sources["photo-50mp.jpg"], "rb") as f:
        data = f.read()
    server.reset_peak_rss()
    started = time.monotonic()
    answer = requests.post(f"{server.url}/{NAMESPACE}?outputs=x300.jpg,w1000.jpg,x1000.webp",
                           data=data, timeout=300)
    answer.raise_for_status()
    return {"source": "8660x5773 JPEG", "outputs": "x300.jpg,w1000.jpg,x1000.webp (one upload)",
            "seconds": round(time.monotonic() - started, 2), "peak_rss_mib": server.peak_rss_mib()}
