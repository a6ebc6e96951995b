"""`make bench`: start `images server` (2 workers) and the peer, thumbor (2 processes), drive workloads
1-6 with wrk on both in turn (ours, thumbor, ours, thumbor), run the `convert` baseline on the same
inputs, score every server's outputs alike, and write bench/results.json and a chart."""
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

import requests
from wand.version import MAGICK_VERSION

from imageserver.core import signing
from imageserver.core.names import parse_output
from imageserver.core.settings import Settings

from . import baseline, burst, inputs, peer, quality, report
from .peer import Thumbor
from .server import ImageServer, Nginx, Unavailable, Workers

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "workload.lua")
WRK_THREADS, CONNECTIONS = 2, 4
NAMESPACE = "bench"
# The kinds of workload run on a server as shipped (a worker's kept decodes on); the others run on
# one without (see main).
SHIPPED = ("upload", "burst")
COPIES = 4            # uploads of each source under new hashes, for more distinct output names
QUALITY_SAMPLES = 5
ROUNDS = 2            # passes per server and workload, in turn: ours, peer, ours, peer
WARM_SECONDS = 2


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
    peer: str = ""                  # how thumbor runs it: "render" (no storage), "hits" (result
                                    # storage), "" (not at all: it has no such request)
    tagged: bool = False            # the source has an ICC profile: colour differences reported
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
# The sizes a product page asks for of a new picture, at once (workload 7).
BURST_OUTPUTS = ("x100.jpg", "x300.jpg", "w480.jpg", "800x600.jpg", "w1000.jpg")
WORKLOADS = [
    Workload("1", "800x600 JPEG, new <W>x<H>.jpg", "web-800x600.jpg", "fill", 100, 500, "jpg",
             baseline=True, peer="render"),
    Workload("2", "12 MP JPEG, new w<W>.jpg", "photo-12mp.jpg", "width", 200, 1000, "jpg",
             baseline=True, peer="render"),
    Workload("3 jpg", "12 MP JPEG, new x<S>.jpg", "photo-12mp.jpg", "square", 100, 600, "jpg",
             baseline=True, peer="render"),
    Workload("3 webp", "12 MP JPEG, new x<S>.webp", "photo-12mp.jpg", "square", 100, 600, "webp",
             baseline=True, peer="render"),
    Workload("1 srgb", "800x600 JPEG tagged sRGB, new <W>x<H>.jpg", "web-800x600-srgb.jpg", "fill",
             100, 500, "jpg", peer="render", tagged=True),
    Workload("1 adobe", "800x600 JPEG tagged Adobe RGB, new <W>x<H>.jpg", "web-800x600-adobergb.jpg",
             "fill", 100, 500, "jpg", peer="render", tagged=True),
    Workload("2 srgb", "12 MP JPEG tagged sRGB, new w<W>.jpg", "photo-12mp-srgb.jpg", "width", 200,
             1000, "jpg", peer="render", tagged=True),
    Workload("4", "12 MP PNG with alpha, new w<W>.webp", "photo-12mp-alpha.png", "width", 200, 1000,
             "webp", seconds_factor=1.5, peer="render"),
    Workload("5", f"upload 12 MP JPEG, outputs={UPLOAD_OUTPUTS}", "photo-12mp.jpg", "upload",
             seconds_factor=1.5),
    Workload("7 burst", f"page burst: a new 12 MP JPEG (tagged sRGB), then {','.join(BURST_OUTPUTS)} "
             "at once by 5 clients", "photo-12mp-srgb.jpg", "burst", peer="render", tagged=True),
    Workload("6 gunicorn", "cache hits through gunicorn", "web-800x600.jpg", "paths",
             peer="hits"),
    Workload("6 nginx", "cache hits through nginx (generated block)", "web-800x600.jpg", "paths"),
    Workload("6 signed", "signed cache hits through nginx: the app checks, nginx sends",
             "web-800x600.jpg", "paths"),
]
# The --signing_key of the server behind "6 signed".
SIGNING_KEY = "bench-signing-key-of-some-length"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10,
                        help=f"measured seconds per workload and server (in {ROUNDS} passes)")
    parser.add_argument("--only", default="", help="comma-separated workload keys (e.g. 1,2)")
    parser.add_argument("--output", default=None,
                        help="folder for results.json and results.png (default: bench/ for a full "
                             "run, bench/work/ for a part, which never replaces the full run's)")
    args = parser.parse_args(argv)
    work = os.path.join(HERE, "work")
    output = args.output or (work if args.only else HERE)
    print("Making the sources (once, kept in bench/work/) ...", flush=True)
    sources = inputs.make_all(work)
    print(f"Installing thumbor {peer.PINNED} (once, in bench/work/thumbor-venv) ...", flush=True)
    thumbor_program, thumbor_version = peer.install(work)
    base = os.path.join(work, "public")
    shutil.rmtree(base, ignore_errors=True)
    chosen = [w for w in WORKLOADS if not args.only or w.key.split()[0] in args.only.split(",")
              or w.key in args.only.split(",")]
    machine = describe_machine()
    # No kept decodes for the workloads that ask one size after another of the same few sources:
    # every request would start from the last one's decode, which thumbor makes anew, and which a
    # new size of a picture seldom finds in the one worker it reaches. The upload (5) and the burst
    # (7), whose outputs of a new picture meet in the workers at once, and the largest source allowed
    # (one upload), run on a server as shipped.
    server = ImageServer(base, os.path.join(work, "server.log"), "--decoded_cache_pixels", "0")
    shipped = thumbor = None
    try:
        shipped = ImageServer(base, os.path.join(work, "server-shipped.log"), "--status_port", "0")
        thumbor = Thumbor(thumbor_program, work, os.path.join(work, "thumbor"))
        folders = upload_sources(server, sources)
        for workload in chosen:
            print(f"workload {workload.key}: {workload.title} ...", flush=True)
            try:
                workload.results = measure(workload, shipped if workload.mode in SHIPPED else server,
                                           thumbor, sources, folders, work, args.seconds)
            except Unavailable as error:
                workload.results = {"skipped": str(error)}
        memory = largest_source_memory(shipped, sources)
    finally:
        server.stop()
        if shipped:
            shipped.stop()
        if thumbor:
            thumbor.stop()
    results = {"machine": machine, "connections": CONNECTIONS, "workers": 2,
               "seconds": args.seconds, "rounds": ROUNDS,
               "peer": {"name": "thumbor", "version": thumbor_version, "processes": peer.PROCESSES,
                        "engine": "Pillow", "config": peer.CONFIG.format(
                            sources="bench/work", result_storage="(file, for cache hits)",
                            results="bench/work/thumbor-results")},
               "memory_largest_source": memory,
               "workloads": [{"key": w.key, "title": w.title, "tagged": w.tagged, **w.results}
                             for w in chosen]}
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(report.table(results))
    report.chart(results, os.path.join(output, "results.png"))
    print(f"Wrote {output}/results.json and results.png")
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


@dataclass
class Target:
    """One server as wrk drives it in a workload."""
    name: str                       # "ours" or "peer"
    url: str
    mode_args: list
    workers: Workers
    cpu: bool = True                # False behind nginx: the workers are not what answers


def measure(workload: Workload, server: ImageServer, thumbor: Thumbor, sources: dict, folders: dict,
            work: str, seconds: float) -> dict:
    """Drive our server and the peer in turn, then score a few outputs of each and run the baseline."""
    if workload.mode == "burst":
        return measure_burst(workload, server, thumbor, sources, seconds)
    stack = []
    try:
        targets = [our_target(workload, server, sources, folders, work, stack)]
        if workload.peer:
            targets.append(peer_target(workload, thumbor, work, stack))
        figures = interleave(workload, targets, seconds)
    finally:
        for started in stack:
            started.stop()
    measured = figures["ours"]
    if "peer" in figures:
        measured["peer"] = figures["peer"]
        measured["ratio_to_peer"] = round(measured["rps"] / figures["peer"]["rps"], 2)
        if "worker_cpu_ms" in measured:
            measured["cpu_ratio_to_peer"] = round(
                figures["peer"]["worker_cpu_ms"] / measured["worker_cpu_ms"], 2)
    if workload.mode in ("fill", "width", "square", "upload"):
        measured["ssim"] = score_outputs(workload, sources, our_outputs(workload, server, folders))
        if workload.peer:
            measured["peer"]["ssim"] = score_outputs(workload, sources,
                                                     peer_outputs(workload, thumbor))
    if workload.baseline:
        measured["convert"] = run_baseline(workload, sources, work, seconds)
        measured["ratio_to_convert"] = round(measured["rps"] / measured["convert"]["rps"], 2)
    return measured


def measure_burst(workload: Workload, server: ImageServer, thumbor: Thumbor, sources: dict,
                  seconds: float) -> dict:
    """Workload 7 (bench/burst.py): ours and thumbor's in turn; the last burst's outputs scored."""
    with open(sources[workload.source], "rb") as f:
        data = f.read()
    targets = [("ours", burst.our_picture(server, NAMESPACE, BURST_OUTPUTS), server),
               ("peer", burst.peer_picture(thumbor, BURST_OUTPUTS), thumbor)]
    for _, _, workers in targets:
        workers.reset_peak_rss()
    figures, last = burst.interleave(targets, data, BURST_OUTPUTS, seconds * workload.seconds_factor,
                                     ROUNDS, with_comment)
    measured, measured["peer"] = figures["ours"], figures["peer"]
    measured["ratio_to_peer"] = round(measured["rps"] / measured["peer"]["rps"], 2)
    measured["cpu_ratio_to_peer"] = round(measured["peer"]["worker_cpu_ms"] / measured["worker_cpu_ms"], 2)
    measured["ssim"] = score_outputs(workload, sources, last["ours"])
    measured["peer"]["ssim"] = score_outputs(workload, sources, last["peer"])
    return measured


def our_target(workload: Workload, server: ImageServer, sources: dict, folders: dict, work: str,
               stack: list) -> Target:
    if workload.mode == "paths":
        paths = [f"{folders[workload.source][0]}/w{width}.jpg" for width in HIT_WIDTHS]
        if workload.key.endswith("signed"):
            return signed_hits_target(server, paths, work, stack)
        paths_file = hit_paths(server.url, paths, os.path.join(work, "hit-paths.txt"))
        if workload.key.endswith("nginx"):
            nginx = Nginx(server, os.path.join(work, "nginx"))
            stack.append(nginx)
            return Target("ours", nginx.url, [paths_file], server, cpu=False)
        return Target("ours", server.url, [paths_file], server)
    if workload.mode == "upload":
        return Target("ours", server.url, [sources[workload.source], NAMESPACE, UPLOAD_OUTPUTS],
                      server)
    return Target("ours", server.url, [",".join(folders[workload.source]), str(workload.low),
                                       str(workload.high), workload.ext], server)


def signed_hits_target(server: ImageServer, paths: list, work: str, stack: list) -> Target:
    """Signed hits through the generated block: a server of the same store with --signing_key, nginx
    in front passing each request to it, and sending the file it names (X-Accel-Redirect). Its
    workers' CPU is the check's."""
    signed = ImageServer(server.base, os.path.join(work, "server-signed.log"),
                         "--signing_key", SIGNING_KEY, "--status_port", "0")
    stack.append(signed)
    paths_file = hit_paths(signed.url, [signing.sign_url(SIGNING_KEY, path) for path in paths],
                           os.path.join(work, "signed-hit-paths.txt"))
    nginx = Nginx(signed, os.path.join(work, "nginx-signed"))
    stack.append(nginx)
    return Target("ours", nginx.url, [paths_file], signed)


def peer_target(workload: Workload, thumbor: Thumbor, work: str, stack: list) -> Target:
    if workload.peer == "hits":
        results = os.path.join(work, "thumbor-results")
        shutil.rmtree(results, ignore_errors=True)
        thumbor = Thumbor(thumbor.program, thumbor.sources, os.path.join(work, "thumbor-hits"),
                          results=results)
        stack.append(thumbor)
        paths = [peer.url_template(workload.source, "jpg") % f"{width}x0" for width in HIT_WIDTHS]
        paths_file = hit_paths(thumbor.url, paths, os.path.join(work, "peer-hit-paths.txt"))
        return Target("peer", thumbor.url, [paths_file], thumbor)
    return Target("peer", thumbor.url, [peer.url_template(workload.source, workload.ext),
                                        str(workload.low), str(workload.high), workload.ext],
                  thumbor)


def interleave(workload: Workload, targets: list, seconds: float) -> dict:
    """Warm each server up, then ROUNDS passes of wrk on each in turn, so that a machine whose speed
    drifts (other programs on a shared machine) slows both alike; the passes' figures summed."""
    offsets, runs, cpu = {}, {t.name: [] for t in targets}, {t.name: 0.0 for t in targets}
    for target in targets:
        warm = wrk(target.url, workload.mode, 0, target.mode_args, WARM_SECONDS)
        offsets[target.name] = _after(0, warm)
        target.workers.reset_peak_rss()
    for _ in range(ROUNDS):
        for target in targets:
            before = target.workers.cpu_seconds()
            run = wrk(target.url, workload.mode, offsets[target.name], target.mode_args,
                      seconds * workload.seconds_factor / ROUNDS)
            cpu[target.name] += target.workers.cpu_seconds() - before
            offsets[target.name] = _after(offsets[target.name], run)
            runs[target.name].append(run)
    figures = {}
    for target in targets:
        figures[target.name] = _combined(runs[target.name])
        figures[target.name]["peak_rss_mib"] = target.workers.peak_rss_mib()
        if target.cpu:
            figures[target.name]["worker_cpu_ms"] = round(
                1000 * cpu[target.name] / max(1, figures[target.name]["requests"]), 2)
    return figures


def _after(offset: int, run: dict) -> int:
    """The first request number past a run (wrk's threads do not keep step: a margin)."""
    return offset + run["requests"] + run["requests"] // 5 + 64


def _combined(runs: list) -> dict:
    """One set of figures for the passes: totals, the mean median and the worst 99th percentile."""
    total = {name: sum(run[name] for run in runs)
             for name in ("requests", "made", "hits", "not_ok", "socket_errors")}
    total["seconds"] = round(sum(run["seconds"] for run in runs), 3)
    total["rps"] = round(total["requests"] / total["seconds"], 2)
    total["p50_ms"] = round(sum(run["p50_ms"] for run in runs) / len(runs), 2)
    total["p99_ms"] = max(run["p99_ms"] for run in runs)
    total["pass_rps"] = [round(run["requests"] / run["seconds"], 1) for run in runs]
    return total


def wrk(url: str, mode: str, offset: int, mode_args: list, seconds: float) -> dict:
    command = ["wrk", "-t", str(WRK_THREADS), "-c", str(CONNECTIONS), "-d", f"{max(1, seconds):.0f}s",
               "--timeout", "60s", "-s", LUA, url, "--", mode, str(WRK_THREADS), str(offset),
               *mode_args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    match = re.search(r"^BENCH_JSON (.*)$", done.stdout, re.M)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    return json.loads(match.group(1))


HIT_WIDTHS = range(100, 300)


def hit_paths(url: str, paths: list, listed: str) -> str:
    """Make the outputs the cache-hit workloads ask for (200 of the 800x600 source), and list them."""
    for path in paths:
        requests.get(url + path, timeout=60).raise_for_status()
    with open(listed, "w") as f:
        f.write("\n".join(paths) + "\n")
    return listed


def quality_names(workload: Workload) -> list:
    if workload.mode == "burst":
        return list(BURST_OUTPUTS)
    if workload.mode == "upload":
        return UPLOAD_OUTPUTS.split(",")
    return [workload.name(10_007 * i + 3) for i in range(QUALITY_SAMPLES)]


def our_outputs(workload: Workload, server: ImageServer, folders: dict) -> dict:
    """name -> its bytes, from our server."""
    folder = folders[workload.source][-1]
    return {name: _get(f"{server.url}{folder}/{name}") for name in quality_names(workload)}


def peer_outputs(workload: Workload, thumbor: Thumbor) -> dict:
    """name -> the peer's bytes for the same output."""
    settings = Settings()
    template = peer.url_template(workload.source, workload.ext)
    return {name: _get(thumbor.url + template % peer.geometry(parse_output(name, settings)))
            for name in quality_names(workload)}


def _get(url: str) -> bytes:
    got = requests.get(url, timeout=120)
    got.raise_for_status()
    return got.content


def score_outputs(workload: Workload, sources: dict, outputs: dict) -> dict:
    """SSIM of outputs against a Lanczos downscale from full resolution."""
    with open(sources[workload.source], "rb") as f:
        source = f.read()
    settings = Settings()
    return _summary({name: quality.score(source, parse_output(name, settings), data)
                     for name, data in outputs.items()})


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
    """Mean and least SSIM of the outputs, the mean ceiling (the reference itself, encoded), and the
    mean colour differences (quality.score)."""
    values = [value for value, _, _ in scores.values()]
    ceilings = [ceiling for _, ceiling, _ in scores.values()]
    colours = [colour for _, _, colour in scores.values()]
    return {"mean": round(sum(values) / len(values), 4), "min": round(min(values), 4),
            "ceiling": round(sum(ceilings) / len(ceilings), 4),
            "delta_e": {view: round(sum(c[view] for c in colours) / len(colours), 2)
                        for view in colours[0]},
            "each": {name: round(value, 4) for name, (value, _, _) in scores.items()}}


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
