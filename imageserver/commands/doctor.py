"""`images doctor`: can this server work here, with these settings? Exit code 0 only when all is well.

It says which formats ImageMagick reads and writes (each output format written and read back), the
resource limits in force, whether local disk, the store and statsd answer, and what is misconfigured.
A bad flag stops it before all this, as it would stop the server (exit code 2).
"""
from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING

from imageserver.core import files, metrics
from imageserver.core.errors import DiskFull, ImageServerError
from imageserver.core.paths import state_folder
from imageserver.core.version import __version__
from imageserver.imaging import formats, magick, pipeline
from imageserver.imaging.source import Limits
from imageserver.storage import build_store

if TYPE_CHECKING:
    from imageserver.core.settings import Settings


class Report:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.problems = 0

    def line(self, topic: str, text: str) -> None:
        print(f"{topic + ':':13} {text}", file=self.out)

    def problem(self, topic: str, text: str) -> None:
        self.problems += 1
        self.line(topic, f"PROBLEM: {text}")


def run_doctor(settings: Settings, out=sys.stdout) -> int:
    report = Report(out)
    report.line("server", f"imageserver {__version__}, Python {sys.version.split()[0]}")
    formats = pipeline.init_worker(Limits.from_settings(settings))
    try:
        _check_imagemagick(settings, formats, report)
    except ImageServerError as error:
        report.problem("imagemagick", error.message)
    _check_disk(settings, report)
    _check_store(settings, report)
    _check_statsd(settings, report)
    _check_ports(settings, report)
    report.line("result", "all is well" if not report.problems else
                f"{report.problems} problem{'s' if report.problems > 1 else ''}")
    return 0 if not report.problems else 1


def _check_imagemagick(settings: Settings, found: formats.Formats, report: Report) -> None:
    if magick.IMPORT_ERROR:
        report.problem("imagemagick", formats.problems()[0])
        return
    build = magick.build()
    report.line("imagemagick", f"{build['version']}; quantum depth {build['quantum_depth']}, "
                f"HDRI {'on' if build['hdri'] else 'off'}, OpenMP {'on' if build['openmp'] else 'off'}"
                f" ({build['library']})")
    support = formats.check_formats(found)
    report.line("reads", " ".join(coder for coder, (reads, _) in support.items() if reads))
    report.line("writes", " ".join(ext for ext, coder in formats.WRITERS.items() if support[coder][1]))
    for ext in settings.extensions:
        if support[formats.WRITERS[ext]][1]:
            continue
        if ext in formats.OPTIONAL_WRITERS:
            report.line("note", f"ImageMagick cannot write {ext.upper()} here: .{ext} outputs are a 404 "
                        "(install libheif's AV1 encoder: libheif-plugin-aomenc on Debian 13)")
        else:
            report.problem("formats", f"{ext} is in --extensions but ImageMagick cannot write it "
                           "here. " + magick.install_hint())
    for problem in formats.problems():
        report.problem("formats", problem)
    limits = magick.resource_limits()
    report.line("limits", ", ".join(f"{name} {_amount(name, value)}" for name, value in limits.items()))
    ours = Limits.from_settings(settings)
    report.line("accepts", f"images up to {ours.maximum_pixels} pixels, {ours.maximum_side} pixels a "
                           f"side, {ours.maximum_frames} frames")
    side = min(limits["width"], limits["height"])
    if side < max(settings.maximum_width, settings.maximum_height):
        report.problem("limits", f"ImageMagick's policy allows {side} pixels a side, less than the "
                                 "--maximum_width/--maximum_height of outputs")
    elif side < ours.maximum_side:
        report.line("note", f"ImageMagick's policy (policy.xml) refuses sources over {side} pixels "
                            f"a side, less than the {ours.maximum_side} accepted otherwise")


def _amount(name: str, value: int) -> str:
    if value >= 2**62:  # ImageMagick's "no limit"
        return "unlimited"
    if name in ("memory", "map", "disk") and value >= 2**20:
        return f"{value / 2**20:g}MiB"
    if name == "time":
        return f"{value}s"
    return str(value)


def _check_disk(settings: Settings, report: Report) -> None:
    base = settings.base_path
    probe = state_folder(base, f"doctor-{os.getpid()}")
    try:
        files.write_atomically(probe, b"doctor")
        os.unlink(probe)
    except OSError as error:
        report.problem("disk", f"{base} is not writable ({error.strerror or error})")
        return
    except DiskFull as error:
        report.problem("disk", f"{base}: {error.message}")
        return
    free = os.statvfs(base)
    free_bytes = free.f_bavail * free.f_frsize
    report.line("disk", f"{base}: writable, {free_bytes / 2**30:.1f} GiB free")
    if free_bytes < settings.minimum_free_bytes:
        report.problem("disk", f"under the reserve of --minimum_free_bytes {settings.minimum_free_bytes}: "
                               "new images and sizes get 507")


def _check_store(settings: Settings, report: Report) -> None:
    try:
        store = build_store(settings)
        problems = store.problems()
    except ImageServerError as error:
        report.problem("store", error.message)
        return
    for problem in problems:
        report.problem("store", problem)
    if problems:
        return
    report.line("store", store.describe())


def _check_statsd(settings: Settings, report: Report) -> None:
    if not settings.statsd_host:
        report.line("statsd", "off (--statsd_host is empty)")
        return
    problem = metrics.probe(settings)
    where = f"{settings.statsd_host}:{settings.statsd_port} prefix {settings.statsd_prefix!r}"
    if problem:
        report.problem("statsd", f"{problem} (set --statsd_host '' to send no metrics)")
    else:
        report.line("statsd", f"{where}: a test counter was sent, no error came back")


def _check_ports(settings: Settings, report: Report) -> None:
    report.line("listens", f"{settings.listen}:{settings.port}, {settings.worker_count} workers"
                + (f", status on port {settings.status_port}" if settings.status_port else "")
                + (f", profiler on 127.0.0.1:{settings.profile_port}" if settings.profile else ""))
    try:
        with socket.socket(socket.AF_INET6 if ":" in settings.listen else socket.AF_INET) as sock:
            sock.bind((settings.listen, 0))
    except OSError as error:
        report.problem("listen", f"--listen {settings.listen} is not an address of this host "
                                 f"({error.strerror or error})")
    cores = os.cpu_count() or 1
    if settings.worker_count > 2 * cores:
        report.line("note", f"{settings.worker_count} workers on {cores} cores: each request is CPU "
                            "work, so more workers than cores mostly add memory")
