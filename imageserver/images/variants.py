"""What requests may cost one image, kept beside it on local disk (so shared by every worker, and by
every server on that disk): a budget of variants, and its failed renders remembered.

- The budget (--maximum_variants): the canonical names of the outputs made of an image (or tried:
  a failed render keeps its place, so that failing names cannot be cycled for free) are listed in
  its folder's `.variants`. A new name past the budget is refused with a 403; names already listed
  are made again freely (eviction removes outputs, not their place), outputs on disk are served.
  Exempt: the --outputs names (made for every image anyway), and every request of a server with
  --signing_key (all are signed: the site chose their names).
- Failures (--failure_seconds): a render refused as too large (413) or unreadable (422) leaves
  `.failed-<name>` with its answer; the same output asked again gets that answer at once, without
  reading the original, until it expires or the settings the answer depended on change.

Both are dot files: nginx refuses to serve them, eviction never removes them, and they go with the
image's folder.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from typing import TYPE_CHECKING

from imageserver.core import files
from imageserver.core.errors import Forbidden, ImageServerError, PayloadTooLarge, Unprocessable
from imageserver.core.paths import INFO, ORIGINAL, ImageKey

if TYPE_CHECKING:
    from imageserver.core.settings import Settings
    from imageserver.imaging.pipeline import Limits

RECORD = ".variants"
FAILED = ".failed-"
# How the names of an image's records start (its files that are neither outputs nor temporary).
RECORDS = (RECORD, FAILED)
# The failures that depend on the original and the settings alone, so stay the same when asked
# again; a 5xx (a store, a lock, a full disk) is transient, and never remembered.
REMEMBERED = {error.status: error for error in (PayloadTooLarge, Unprocessable)}


class VariantBudget:
    def __init__(self, settings: Settings, exempt: set[str]):
        self.base = settings.base_path
        self.maximum = 0 if settings.signing_key else settings.maximum_variants
        self.exempt = exempt

    def admit(self, key: ImageKey, names: list[str]) -> None:
        """Record `names` (canonical) as variants of the image, or refuse them all (Forbidden) if
        the new ones would take it past the budget. One process at a time per image (flock), so a
        burst of workers never goes past it. The image's folder exists (its original is there)."""
        names = [name for name in dict.fromkeys(names) if name not in self.exempt]
        if not self.maximum or not names:
            return
        folder = key.local_folder(self.base)
        fd = os.open(os.path.join(folder, RECORD), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            listed = os.read(fd, 1 << 20).decode().split()
            if not listed:   # a new record: the outputs made before it (by an earlier version) count
                listed = [name for name in os.listdir(folder) if name not in self.exempt
                          and name not in (ORIGINAL, INFO) and not name.startswith(".")]
            new = [name for name in names if name not in listed]
            if new and len(listed) + len(new) > self.maximum:
                raise Forbidden(
                    f"{new[0]!r}: image {key.hash} has {len(listed)} outputs, and may have at most "
                    f"{self.maximum} (--maximum_variants); the outputs made are served, a new one "
                    f"needs a signed URL (--signing_key) or a place in --outputs")
            if new:
                # Not flushed to disk: a record cut short by a power cut only loosens the budget.
                os.write(fd, "".join(f"{name}\n" for name in
                                     (new if os.fstat(fd).st_size else listed + new)).encode())
        finally:
            os.close(fd)


class Failures:
    def __init__(self, settings: Settings, limits: Limits):
        self.base = settings.base_path
        self.seconds = settings.failure_seconds
        self.durable = not settings.no_fsync     # files flushed to disk before they count as written
        # A remembered answer holds only under the settings that gave it: a limit raised (or a
        # new default quality) by a restart renders again.
        self.fingerprint = hashlib.md5(repr((limits, settings.default_quality)).encode()).hexdigest()

    def check(self, key: ImageKey, name: str) -> None:
        """Raise the remembered failure of this output, if there is one still in force."""
        path = key.local_file(self.base, FAILED + name)
        try:
            record = json.loads(files.read(path))
        except FileNotFoundError:
            return
        except (OSError, ValueError):   # being written: as if not there yet
            return
        kind = REMEMBERED.get(record.get("status"))
        if kind is None or record.get("settings") != self.fingerprint or record.get("until", 0) < time.time():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        raise kind(record["error"])

    def remember(self, key: ImageKey, name: str, error: ImageServerError) -> None:
        """Write the failure down, if it is one that asking again would only repeat."""
        if not self.seconds or type(error) not in REMEMBERED.values():
            return
        record = {"status": error.status, "error": error.message, "settings": self.fingerprint,
                  "until": time.time() + self.seconds}
        try:
            files.write_atomically(key.local_file(self.base, FAILED + name), json.dumps(record).encode(),
                                   durable=self.durable)
        except ImageServerError:   # a full disk: the failure is answered all the same
            pass
