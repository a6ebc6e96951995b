"""`python -m bench.around_render`: what a request for a new output costs the server besides the
render itself (HTTP, gunicorn's connection, the outputs layer, claiming the output, writing it, the
access log, statsd), and the flush to disk apart.

The real `images server` (gunicorn, 2 sync workers, access log on, statsd datagrams sent to a port
nobody reads) runs with `pipeline.render` replaced by one that returns a ready 300x200 JPEG (made
once, by the real pipeline); wrk drives it as workload 1 of `make bench` does (a new `<W>x<H>.jpg`
each request, 4 connections). Several such servers, one per variant, are driven in turn, pass after
pass, so that a shared machine's drift slows them alike; each variant's figure is the median over
its passes of the workers' CPU time per request (from /proc), which other programs inflate less
than requests per second. `--before REF` adds the same variants run on the `imageserver` package
of a git commit (extracted under bench/work/, put first on the server's PYTHONPATH).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import requests

from imageserver.core.names import parse_output
from imageserver.core.paths import ImageKey
from imageserver.core.settings import Settings
from imageserver.imaging import pipeline
from imageserver.imaging.source import Limits
from tests.helpers import free_port, wait_until_up  # as the soak test does

from . import inputs
from .server import WORKERS, Workers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LUA = os.path.join(HERE, "workload.lua")
COPIES = 4      # uploads of the source under new hashes: more new names than a run asks for
SOURCE = "web-800x600.jpg"
STUB_OUTPUT = "300x200.jpg"
HIT_PATHS = 200

# The server, with the render replaced: the rest of the process is the real `images server`.
LAUNCH = """\
import sys
from imageserver.commands import cli
from imageserver.imaging import pipeline
print("imageserver from", pipeline.__file__, flush=True)
with open(sys.argv[1], "rb") as f:
    RENDERED = f.read()
pipeline.render = lambda *args, **kwargs: RENDERED
sys.exit(cli.main(sys.argv[2:]))
"""

# (label, flags, mode): mode "fill" asks for new outputs, "paths" for outputs made already (hits).
VARIANTS = [
    ("new output, durable (default)", [], "fill"),
    ("new output, --no_fsync", ["--no_fsync"], "fill"),
    ("new output, --no_fsync, no access log", ["--no_fsync", "--access_log", ""], "fill"),
    ("new output, --no_fsync, no statsd", ["--no_fsync", "--statsd_host", ""], "fill"),
    ("output made already (a hit), --no_fsync", ["--no_fsync"], "paths"),
]


class StubbedServer(Workers):
    def __init__(self, base: str, flags: list, rendered: str, log_path: str, pythonpath: str = ""):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        statsd = free_port()    # a UDP port nobody reads: the datagrams are sent all the same
        args = ["--listen", "127.0.0.1", "--port", str(self.port), "--local_base_path", base,
                "--workers", str(WORKERS), "--status_port", "0", "--statsd_port", str(statsd),
                *flags, "server"]
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        # Started outside the checkout: `python -c` puts the current folder first on sys.path.
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-c", LAUNCH, rendered, *args],
                                            stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=os.path.dirname(base))
        wait_until_up(self.url + "/status_check", self.process)
        self.workers = self._wait_for_workers(WORKERS)


def wrk(url: str, mode: str, offset: int, mode_args: list, seconds: float) -> dict:
    command = ["wrk", "-t", "2", "-c", "4", "-d", f"{seconds:.0f}s", "--timeout", "60s", "-s", LUA,
               url, "--", mode, "2", str(offset), *mode_args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    line = next((line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")), "")
    if done.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    return json.loads(line.split(" ", 1)[1])


def upload(url: str, source: str) -> list:
    """COPIES of the source uploaded (new bytes each: a JPEG comment); their image folders."""
    with open(source, "rb") as f:
        jpeg = f.read()
    folders = []
    for i in range(COPIES):
        note = f"bench copy {i}".encode()
        body = jpeg[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + jpeg[2:]
        answer = requests.post(f"{url}/bench", data=body, timeout=120)
        answer.raise_for_status()
        folders.append("/" + ImageKey("bench", answer.json()["hash"]).folder)
    return folders


def made_already(url: str, folder: str, listed: str) -> str:
    """HIT_PATHS outputs of the folder made, and their paths listed for wrk's "paths" mode."""
    paths = [f"{folder}/w{width}.jpg" for width in range(100, 100 + HIT_PATHS)]
    for path in paths:
        requests.get(url + path, timeout=60).raise_for_status()
    with open(listed, "w") as f:
        f.write("\n".join(paths) + "\n")
    return listed


def extract(ref: str, work: str) -> str:
    """The imageserver package of commit `ref`, under bench/work/; the folder to put on PYTHONPATH."""
    folder = os.path.join(work, f"imageserver-{ref}")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "imageserver"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.around_render", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4, help="seconds per pass")
    parser.add_argument("--passes", type=int, default=5, help="passes per variant, in turn")
    parser.add_argument("--before", default="", help="a git commit to measure beside this code")
    args = parser.parse_args(argv)
    work = os.path.join(HERE, "work", "around-render")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    source = os.path.join(HERE, "work", SOURCE)
    if not os.path.exists(source):
        with open(source, "wb") as out:
            out.write(inputs.photo(*inputs.SOURCES[SOURCE]))
    rendered = os.path.join(work, STUB_OUTPUT)
    with open(source, "rb") as f, open(rendered, "wb") as out:
        settings = Settings()
        out.write(pipeline.render(f.read(), parse_output(STUB_OUTPUT, settings), 75,
                                  Limits.from_settings(settings)))
    variants = [(label, flags, mode, "") for label, flags, mode in VARIANTS]
    if args.before:
        before = extract(args.before, os.path.join(HERE, "work"))
        variants += [(f"{label}; at {args.before}", flags, mode, before)
                     for label, flags, mode in VARIANTS if "statsd" not in label]
    with open("/proc/loadavg") as f:
        load_start = f.read().split()[0]
    servers, targets = [], []
    try:
        for i, (label, flags, mode, pythonpath) in enumerate(variants):
            base = os.path.join(work, f"public-{i}")
            server = StubbedServer(base, flags, rendered, os.path.join(work, f"server-{i}.log"),
                                   pythonpath)
            servers.append(server)
            folders = upload(server.url, source)
            if mode == "paths":
                mode_args = [made_already(server.url, folders[0],
                                          os.path.join(work, f"paths-{i}.txt"))]
            else:
                mode_args = [",".join(folders), "100", "500", "jpg"]
            targets.append({"label": label, "server": server, "mode": mode, "args": mode_args,
                            "offset": 0, "cpu_ms": [], "rps": [], "p50_ms": []})
        for target in targets:      # warm-up
            run = wrk(target["server"].url, target["mode"], 0, target["args"], 2)
            target["offset"] = run["requests"] * 2 + 64
        for _ in range(args.passes):
            for target in targets:
                server = target["server"]
                before = server.cpu_seconds()
                run = wrk(server.url, target["mode"], target["offset"], target["args"], args.seconds)
                cpu = server.cpu_seconds() - before
                if run["not_ok"] or run["socket_errors"]:
                    raise RuntimeError(f"{target['label']}: {run}")
                target["offset"] += run["requests"] * 2 + 64
                target["cpu_ms"].append(1000 * cpu / run["requests"])
                target["rps"].append(run["requests"] / run["seconds"])
                target["p50_ms"].append(run["p50_ms"])
    finally:
        for server in servers:
            server.stop()
    with open("/proc/loadavg") as f:
        load_end = f.read().split()[0]
    results = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "load_average": [load_start, load_end], "seconds": args.seconds,
               "passes": args.passes,
               "variants": [{name: target[name] for name in ("label", "mode", "cpu_ms", "rps",
                                                              "p50_ms")} for target in targets]}
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(table(results))
    for i in range(len(variants)):
        shutil.rmtree(os.path.join(work, f"public-{i}"), ignore_errors=True)
    return 0


def table(results: dict) -> str:
    lines = [f"{results['when']}, load average {results['load_average'][0]} at start, "
             f"{results['load_average'][1]} at the end; {results['passes']} passes of "
             f"{results['seconds']:g} s per variant, in turn; median (min-max) of the passes",
             "", "| variant | worker CPU ms/req | req/s | p50 ms |", "|---|---:|---:|---:|"]
    medians = {}
    for variant in results["variants"]:
        cpu = variant["cpu_ms"]
        medians[variant["label"]] = statistics.median(cpu)
        lines.append(f"| {variant['label']} | {statistics.median(cpu):.2f} "
                     f"({min(cpu):.2f}-{max(cpu):.2f}) | {statistics.median(variant['rps']):,.0f} | "
                     f"{statistics.median(variant['p50_ms']):.2f} |")
    base = medians.get("new output, --no_fsync")
    if base is not None:
        lines += ["", "Differences of the medians (worker CPU ms/req):"]
        parts = [("the flush to disk (durable minus --no_fsync)", "new output, durable (default)", 1),
                 ("the access log", "new output, --no_fsync, no access log", -1),
                 ("statsd", "new output, --no_fsync, no statsd", -1),
                 ("making a new output beyond serving one (claim, write, rename, the original "
                  "read, the checks)", "output made already (a hit), --no_fsync", -1)]
        for text, label, sign in parts:
            if label in medians:
                lines.append(f"- {text}: {sign * (medians[label] - base):+.2f}")
        for label, value in medians.items():
            if "; at " in label:
                now = medians[label.split("; at ")[0]]
                lines.append(f"- {label.split('; at ')[0]}, this code against "
                             f"{label.split('; at ')[1]}: {now - value:+.2f} ({now / value - 1:+.0%})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
