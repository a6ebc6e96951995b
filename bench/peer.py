"""The peer the bench runs beside us: thumbor (Pillow engine), installed by the bench into its own
virtualenv under bench/work/ (never the project's), serving the bench's source files with its file
loader, 2 processes, no storage; for cache hits, with its file result storage.

Its settings make the same outputs as ours: quality 75, baseline (not progressive) JPEG, centred
crop-to-fill for WxH; `/unsafe/` URLs, as no signing is measured on either side.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from typing import Optional

from .server import Unavailable, Workers, free_port, wait_until_up

PINNED = "7.8.0"
PROCESSES = 2
CONFIG = """\
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {sources!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = {result_storage!r}
RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {results!r}
RESULT_STORAGE_STORES_UNSAFE = True
ALLOW_UNSAFE_URL = True
QUALITY = 75
PROGRESSIVE_JPEG = False
"""


def install(work: str) -> tuple[str, str]:
    """thumbor in bench/work/thumbor-venv, made once with the Python that runs the bench (thumbor
    7.8.0 wants 3.10 or newer: Debian 12 has 3.11, Debian 13 3.13): (its `thumbor` program, its
    version). The pinned version, else the newest that installs here."""
    venv = os.path.join(work, "thumbor-venv")
    program = os.path.join(venv, "bin", "thumbor")
    marker = os.path.join(venv, "installed-version")
    if not os.path.exists(marker):
        if sys.version_info < (3, 10):
            raise Unavailable("thumbor needs Python 3.10 or newer")
        # From the project's .venv, `-m venv` makes a virtualenv of the interpreter it was made from.
        python = sys.executable
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", venv], check=True)
        pip = [os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check"]
        for requirement in (f"thumbor=={PINNED}", "thumbor"):
            if subprocess.run([*pip, requirement], capture_output=True).returncode == 0:
                break
        else:
            raise Unavailable("thumbor does not install here")
        version = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                                  "import thumbor; print(thumbor.__version__)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        with open(marker, "w") as f:
            f.write(version)
    with open(marker) as f:
        return program, f.read().strip()


class Thumbor(Workers):
    """thumbor on a free loopback port; `results`: a folder for its result storage (cache hits)."""

    def __init__(self, program: str, sources: str, folder: str, results: Optional[str] = None):
        self.program, self.sources = program, sources
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        os.makedirs(folder, exist_ok=True)
        conf = os.path.join(folder, "thumbor.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(
                sources=sources, results=results or "",
                result_storage="thumbor.result_storages.file_storage" if results else None))
        with open(os.path.join(folder, "thumbor.log"), "wb") as log:
            # A session of its own: stopping its group stops the forked processes too.
            self.process = subprocess.Popen(
                [program, "-i", "127.0.0.1", "-p", str(self.port), "-c", conf, "-l", "warning",
                 "--processes", str(PROCESSES)], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            wait_until_up(self.url + "/healthcheck", self.process)
            self.workers = self._wait_for_workers(PROCESSES)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def geometry(spec) -> str:
    """thumbor's size for one of our output specs: WxH (crop to fill, centred), or Wx0 for w<W>."""
    return f"{spec.width}x{spec.height or 0}"


def url_template(source: str, ext: str) -> str:
    """The thumbor path of an output of `source`, its size left as %s; webp through its filter."""
    same_format = source.rsplit(".", 1)[1] in (("jpg", "jpeg") if ext == "jpg" else (ext,))
    filters = "" if same_format else f"filters:format({'jpeg' if ext == 'jpg' else ext})/"
    return f"/unsafe/%s/{filters}{source}"
