"""The original's way, as a baseline: one /usr/bin/convert process per output, with the original
server's arguments, as many at once as the load generator has connections."""
from __future__ import annotations

import os
import resource
import subprocess
import threading
import time

CONVERT = "/usr/bin/convert"  # /usr/local/bin/convert may be a stand-in


def arguments(source: str, output: str, name: str) -> list[str]:
    """The original's command for one output name (w<W>, x<S> or <W>x<H>, .jpg or .webp)."""
    stem, ext = name.rsplit(".", 1)
    if stem.startswith("w"):
        geometry = ["-resize", stem[1:]]
    else:
        size = f"{stem[1:]}x{stem[1:]}" if stem.startswith("x") else stem
        geometry = ["-resize", f"{size}^", "-gravity", "center", "-extent", size]
    return [CONVERT, "-strip", "-format", ext, "-flatten", *geometry,
            "-background", "rgba(255,255,255,1)", "-quality", "75", source, output]


def run(source: str, names, folder: str, seconds: float, connections: int) -> dict:
    """Make outputs from `names` (an endless iterator) for `seconds`, `connections` at a time."""
    os.makedirs(folder, exist_ok=True)
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    made: dict = {}
    deadline = time.monotonic() + seconds

    def worker():
        while time.monotonic() < deadline:
            with lock:
                name = next(names)
            output = os.path.join(folder, name)
            started = time.monotonic()
            done = subprocess.run(arguments(source, output, name), capture_output=True)
            with lock:
                if done.returncode == 0:
                    latencies.append(time.monotonic() - started)
                    made[name] = output
                else:
                    failures.append(done.stderr.decode(errors="replace")[:200])

    started = time.monotonic()
    cpu = _children_cpu()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    cpu = _children_cpu() - cpu
    if failures:
        raise RuntimeError(f"convert failed: {failures[0]}")
    latencies.sort()
    return {"requests": len(latencies), "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 2),
            "p50_ms": round(1000 * _percentile(latencies, 50), 1),
            "p99_ms": round(1000 * _percentile(latencies, 99), 1),
            "cpu_ms": round(1000 * cpu / max(1, len(latencies)), 2), "outputs": made}


def _children_cpu() -> float:
    """CPU seconds (user + system) of the ended child processes: the convert runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, round(percent / 100 * (len(values) - 1)))]
