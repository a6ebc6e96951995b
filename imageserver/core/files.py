"""Local files that appear whole or not at all, and claims on them that several processes share.

A file is written to a temporary name in its own folder and renamed into place, so that a reader (this
server, or nginx serving the same folder) never sees half of it. Temporary files (claims too) start
with a dot, which the generated nginx block refuses to serve; those a crash leaves are cleared
after start-up (clear_leftovers), or taken over by the next process to claim the same file.

Durable before acknowledged: the file is flushed to disk (fsync) before the rename, and its folder
after it (and the parent of every folder made for it), so that a power cut after the reply cannot
leave it empty or missing. --no_fsync turns that off: each writer passes `durable=False`. Every file the
server writes goes through here; a full disk is a DiskFull (507), with nothing left behind.

Folders are made on demand and removed again by a request that found no image (remove_empty_folders),
so creating a file in a folder retries if that removal won the race between makedirs and the create.
"""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from contextlib import contextmanager

from imageserver.core.errors import DiskFull, Unavailable

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def write_atomically(path: str, data: bytes, *, durable: bool = True) -> None:
    with replacing(path, durable=durable) as temp:
        with open(temp, "wb") as out:
            out.write(data)


@contextmanager
def replacing(path: str, *, durable: bool = True):
    """Yield a temporary path beside `path`; when the block succeeds it becomes `path`, else it goes.

    Lets the caller fill the file (and store it remotely) before anyone can see it under its name.
    When `durable` (not --no_fsync), the file is flushed before the rename, its folder after it.
    """
    folder, name = os.path.split(os.path.abspath(path))
    fd, temp = _in_folder(folder, lambda: tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder),
                          durable)
    os.close(fd)
    try:
        yield temp
        os.chmod(temp, 0o644)
        _flush(temp, durable)
        os.replace(temp, path)
        _flush(folder, durable)
    except BaseException as error:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        if _no_space(error):
            raise _not_stored(name) from error
        raise


@contextmanager
def whole_or_not_at_all(folder: str, names: list[str], stop: str, timeout: float, *, durable: bool = True):
    """Make several files of `folder` as one: one process at a time, and when the block fails the
    files of `names` that it made go again (and the folder, up to `stop`, if that empties it)."""
    try:
        with exclusive(os.path.join(folder, "whole"), timeout, durable=durable):
            absent = [os.path.join(folder, name) for name in names
                      if not os.path.exists(os.path.join(folder, name))]
            try:
                yield
            except BaseException:
                for path in absent:
                    _remove(path)
                raise
    except BaseException:
        remove_empty_folders(folder, stop)
        raise


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@contextmanager
def exclusive(path: str, timeout: float, *, durable: bool = True):
    """Hold the right to make `path`, against every other process, for one piece of work; yield
    the Claim, whose `write` puts the file in place (or use it as a lock only: see below).

    The claim is the file `.<name>.tmp` beside `path`, created with O_EXCL and held with flock: the
    temporary file a render is written to is the lock too (one file made and renamed, where a lock
    file beside a temporary file took two, and a removal). Another process waits until the holder
    lets go (at most `timeout`), then makes the file or finds it made. flock goes with its holder,
    so a claim that no one holds any more is the leftover of a process killed mid-work (or one
    just made and not yet locked, whose maker then finds it gone): the waiter removes it and
    claims afresh, at once, as it would have taken a lock file that flock had let go of.

    When the work leaves the claim unwritten (the file was made meanwhile, came from the store, or
    the claim only guards other work), the claim file is removed on the way out, still held.
    """
    folder, name = os.path.split(path)
    claim = Claim(path, os.path.join(folder, claim_name(name)), durable)
    claim.fd = _claim(folder, claim.temp, name, time.monotonic() + timeout, durable)
    try:
        yield claim
    finally:
        try:
            if not claim.written:
                _remove(claim.temp)
        finally:
            os.close(claim.fd)


def claim_name(name: str) -> str:
    """The name of the file that claims the file `name` (see `exclusive`)."""
    return f".{name}.tmp"


class Claim:
    """The right to make one file, held (see `exclusive`)."""

    def __init__(self, path: str, temp: str, durable: bool = True):
        self.path, self.temp, self.durable = path, temp, durable
        self.fd = -1
        self.written = False

    def write(self, data: bytes) -> None:
        """Put `data` in place as the file, as `write_atomically` does: the claim file is filled,
        flushed, renamed into place, and the folder flushed."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            os.fchmod(self.fd, 0o644)
            if self.durable:
                os.fsync(self.fd)
            os.replace(self.temp, self.path)
        except OSError as error:
            if _no_space(error):
                raise _not_stored(os.path.basename(self.path)) from error
            raise
        self.written = True
        _flush(os.path.dirname(self.path), self.durable)


def _claim(folder: str, temp: str, name: str, deadline: float, durable: bool) -> int:
    """Create and lock the claim file `temp`, or wait for its holder; the descriptor held."""
    while True:
        try:
            fd = _in_folder(folder, lambda: os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644),
                            durable)
            made = True
        except FileExistsError:
            try:
                fd = os.open(temp, os.O_RDONLY)
            except FileNotFoundError:
                continue        # let go of meanwhile: claim it
            made = False
        try:
            _lock(fd, deadline, name)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(temp))
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same and made:
            return fd
        if same:
            # Unheld and still there: its maker is dead (or will find it gone and claim again).
            _remove(temp)
        os.close(fd)
        # Renamed into place or removed by its holder: the caller finds the file made, or not.
        if time.monotonic() >= deadline:
            raise _busy(name)


def remove_empty_folders(folder: str, stop: str) -> None:
    """Remove `folder`, then its parents up to `stop` (kept), as long as they are empty: a request for
    an image nobody has leaves no trace (else anyone could fill the disk with empty folders, one per
    made-up hash). A folder in use holds a claim or temporary file, so it is never empty."""
    stop = os.path.abspath(stop)
    folder = os.path.abspath(folder)
    while folder.startswith(stop + os.sep):
        try:
            os.rmdir(folder)
        except OSError:  # not empty, or already gone
            return
        folder = os.path.dirname(folder)


def clear_leftovers(base: str, made_before: float) -> int:
    """Remove the temporary files under `base` that a crash left (and the folders they leave
    empty); the number removed. Only files last written before `made_before` (the time this server
    started) and that no process holds: workers may be running, and what they write now is newer;
    a claim another process holds (an `images process` run) is kept. `.lock` files are the locks of
    earlier versions, removed as well when no process holds them."""
    removed = 0
    for folder, _, names in os.walk(base, topdown=False):
        here = 0
        for name in names:
            if name.startswith(".") and name.endswith((".tmp", ".lock")):
                here += _remove_if_free(os.path.join(folder, name), made_before)
        if here:
            remove_empty_folders(folder, stop=base)
        removed += here
    return removed


def _remove(path: str) -> int:
    try:
        os.unlink(path)
        return 1
    except FileNotFoundError:
        return 0


def _remove_if_free(lock_path: str, made_before: float) -> int:
    """As `exclusive` does with an unheld claim (a waiter that opened it before finds it gone), when
    it was last written before `made_before`."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_mtime >= made_before:
            return 0
        return _remove(lock_path)
    except OSError:     # held by a live process
        return 0
    finally:
        os.close(fd)


def _in_folder(folder: str, create, durable: bool, attempts: int = 5):
    """`create()` a file in `folder`, making the folder first, and again if it vanished meanwhile."""
    for attempt in range(attempts):
        try:
            _make_folders(folder, durable)
            return create()
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
        except OSError as error:
            if _no_space(error):
                raise DiskFull("the disk is full: nothing new can be stored") from error
            raise


def _make_folders(folder: str, durable: bool) -> None:
    """os.makedirs, with the parent of each folder made flushed: a file flushed in a folder that a
    power cut then loses is lost too."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for made in reversed(missing):
        try:
            os.mkdir(made)
        except FileExistsError:
            continue
        _flush(os.path.dirname(made), durable)


def _flush(path: str, durable: bool) -> None:
    """fsync a file (its data, written through another descriptor) or a folder (its entries), when
    `durable`."""
    if not durable:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _not_stored(name: str) -> DiskFull:
    return DiskFull(f"the disk is full: {name} could not be stored")


def _busy(name: str) -> Unavailable:
    return Unavailable(f"{name} is being made by another request; try again")


def _no_space(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in NO_SPACE


def _lock(fd: int, deadline: float, name: str) -> None:
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise _busy(name)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
