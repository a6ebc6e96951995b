"""--maximum_local_bytes: a sweep that keeps the local folder under that size, least recently used
files first.

It runs in a thread of the gunicorn master (`start`, from `images server` and from gunicorn.conf.py's
`when_ready`), beside the status listener: no request waits for it, and nothing here loads
ImageMagick (the master must never load it). Its figures reach /status_check, answered by the
workers, through a small state file (`read_status`).

What may go: outputs always (they are made again on request); originals and info.json only when a
remote store keeps them (they are fetched back on the next request), and never while an upload of
theirs is pending. Never: temporary files and claims (names starting with a dot), a file whose claim
(`files.exclusive`) exists (it is being made, fetched or uploaded), anything under `.imageserver/`.

"Use" is the file's access time, as nginx and the app leave it by reading the file. Under the
usual `relatime` mount the kernel records the first read after a write, then at most one read a
day; so before removing a file the sweep sets its access time back to its modification time
("arms" it), which makes the kernel record the very next read, waits ARM_SECONDS, and spares the
files read meanwhile. A file being read when it is removed is fine: the reader keeps the inode.
"""
from __future__ import annotations

import json
import logging
import os
import stat as file_modes
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imageserver.core import files
from imageserver.core.metrics import Metrics, build_metrics
from imageserver.core.paths import INFO, ORIGINAL, PARTITIONED, STATE_FOLDER

if TYPE_CHECKING:
    from imageserver.core.settings import Settings

log = logging.getLogger(__name__)

STATUS_FILE = "eviction.json"
# A sweep that finds the folder over the limit brings it down to this share of it, so that the next
# few new files do not start another sweep at once.
LOW_WATER = 0.9
# Seconds between sweeps: at least MIN_INTERVAL, and long enough that scanning a large folder takes
# at most 1/SCAN_SHARE of the time.
MIN_INTERVAL = 1.0
SCAN_SHARE = 20
ARM_SECONDS = 0.5
KEPT_NAMES = (ORIGINAL, INFO)


@dataclass(frozen=True)
class LocalFile:
    path: str
    bytes: int          # allocated on disk (st_blocks), as du counts it
    last_use: int       # ns: the later of its access and modification times
    evictable: bool


def has_remote_store(settings: Settings) -> bool:
    return bool(settings.aws_bucket or settings.manta_url)


def pending_uploads(base: str) -> set[str]:
    """Local paths whose upload is written down in the journal and not yet done."""
    folder = os.path.join(base, STATE_FOLDER, "uploads")
    try:
        names = [name for name in os.listdir(folder) if not name.startswith(".")]
    except FileNotFoundError:
        return set()
    found = set()
    for name in names:
        try:
            record = json.loads(files.read(os.path.join(folder, name)))
            found.add(os.path.abspath(record["local_path"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass   # crossed off meanwhile
    return found


def scan(base: str, remote: bool, pending: set[str]) -> list[LocalFile]:
    """Every file under `base`, each marked evictable or not."""
    found = []
    for folder, folder_names, names in os.walk(base):
        relative = os.path.relpath(folder, base)
        folder_names[:] = [name for name in folder_names if not name.startswith(".")]
        in_image_folder = relative.count(os.sep) == 4 and PARTITIONED.fullmatch(
            "/".join(relative.split(os.sep)[1:])) is not None
        present = set(names)
        for name in names:
            path = os.path.join(folder, name)
            try:
                stat = os.lstat(path)
            except FileNotFoundError:
                continue
            if not file_modes.S_ISREG(stat.st_mode):
                continue
            evictable = (in_image_folder and not name.startswith(".")
                         and files.claim_name(name) not in present and path not in pending
                         and (remote or name not in KEPT_NAMES))
            last_use = max(stat.st_atime_ns, stat.st_mtime_ns)
            found.append(LocalFile(path, stat.st_blocks * 512, last_use, evictable))
    return found


def choose_victims(found: Iterable[LocalFile], limit: int) -> tuple[list[LocalFile], int]:
    """The least recently used evictable files whose removal brings the total to LOW_WATER x limit
    (none while it is within the limit), and the bytes that cannot be removed at all."""
    found = list(found)
    total = sum(f.bytes for f in found)
    kept = sum(f.bytes for f in found if not f.evictable)
    if total <= limit:
        return [], kept
    target = int(limit * LOW_WATER)
    victims = []
    for candidate in sorted((f for f in found if f.evictable), key=lambda f: f.last_use):
        if total <= target:
            break
        victims.append(candidate)
        total -= candidate.bytes
    return victims, kept


def arm(path: str) -> int | None:
    """Set the access time back to the modification time, so that the next read is recorded (see
    the module's docstring); the armed time, or None if the file is gone."""
    try:
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_mtime_ns, stat.st_mtime_ns))
        return stat.st_mtime_ns
    except OSError:
        return None


def read_since(path: str, armed: int) -> bool:
    try:
        return os.stat(path).st_atime_ns > armed
    except OSError:
        return True   # gone already: nothing to remove


class Sweeper:
    def __init__(self, settings: Settings, metrics: Metrics | None = None):
        self.base = settings.base_path
        self.limit = settings.maximum_local_bytes
        self.durable = not settings.no_fsync     # files flushed to disk before they count as written
        self.remote = has_remote_store(settings)
        self.metrics = metrics or build_metrics(settings)
        self.evicted = 0
        self.warning = ""
        self.scan_seconds = 0.0

    def sweep(self) -> int:
        """One sweep: the bytes used once it is done."""
        started = time.monotonic()
        found = scan(self.base, self.remote, pending_uploads(self.base))
        self.scan_seconds = time.monotonic() - started
        victims, kept = choose_victims(found, self.limit)
        used = sum(f.bytes for f in found)
        if victims:
            armed = {f.path: arm(f.path) for f in victims}
            time.sleep(ARM_SECONDS)
            pending = pending_uploads(self.base)
            removed = [victim for victim in victims
                       if (armed_at := armed[victim.path]) is not None
                       and self._remove(victim, armed_at, pending)]
            used -= sum(victim.bytes for victim in removed)
            self.evicted += len(removed)
            if removed:
                self.metrics.incr("local.evicted", len(removed))
        self._warn_if_stuck(kept)
        self.metrics.gauge("local.bytes", used)
        files.write_atomically(os.path.join(self.base, STATE_FOLDER, STATUS_FILE), json.dumps(
            {"bytes_used": used, "bytes_limit": self.limit, "files_evicted": self.evicted,
             "swept_at": time.time(), "warning": self.warning}).encode(), durable=self.durable)
        return used

    def _remove(self, victim: LocalFile, armed: int, pending: set[str]) -> bool:
        folder, name = os.path.split(victim.path)
        if (read_since(victim.path, armed) or victim.path in pending
                or os.path.exists(os.path.join(folder, files.claim_name(name)))):
            return False
        try:
            os.unlink(victim.path)
        except FileNotFoundError:
            return False
        namespace = os.path.join(self.base, os.path.relpath(folder, self.base).split(os.sep)[0])
        files.remove_empty_folders(folder, stop=namespace)
        return True

    def _warn_if_stuck(self, kept: int) -> None:
        """Say, once each time it starts, that what may not be removed is over the limit."""
        if kept <= self.limit:
            self.warning = ""
            return
        what = ("pending uploads and temporary files" if self.remote else
                "originals and info.json (the only copies: no remote store), pending and temporary files")
        warning = (f"{kept} bytes of {what} exceed --maximum_local_bytes {self.limit}: "
                   "they are never removed")
        if not self.warning:
            log.warning("%s", warning)
        self.warning = warning

    def run_forever(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:  # the thread must outlive any one sweep
                log.exception("sweep of %s failed", self.base)
            time.sleep(max(MIN_INTERVAL, SCAN_SHARE * self.scan_seconds))


def start(settings: Settings) -> None:
    """Sweep in a daemon thread of this process (the gunicorn master), when the limit is set."""
    if settings.maximum_local_bytes:
        threading.Thread(target=Sweeper(settings).run_forever, name="eviction", daemon=True).start()


def read_status(settings: Settings) -> dict | None:
    """The last sweep's figures for /status_check, or None when there is no limit."""
    if not settings.maximum_local_bytes:
        return None
    try:
        return json.loads(files.read(os.path.join(settings.base_path, STATE_FOLDER, STATUS_FILE)))
    except (OSError, ValueError):
        return {"bytes_used": None, "bytes_limit": settings.maximum_local_bytes, "files_evicted": 0,
                "swept_at": None, "warning": ""}
