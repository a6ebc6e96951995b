"""Local files that appear whole or not at all, and locks that several worker processes share.

A file is written to a temporary name in its own folder and renamed into place, so that a reader (this
server, or nginx serving the same folder) never sees half of it. Temporary and lock files start with
a dot, which the generated nginx block refuses to serve.

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

from .errors import Unavailable


def write_atomically(path: str, data: bytes) -> None:
    with replacing(path) as temp:
        with open(temp, "wb") as out:
            out.write(data)


@contextmanager
def replacing(path: str):
    """Yield a temporary path beside `path`; when the block succeeds it becomes `path`, else it goes.

    Lets the caller fill the file (and store it remotely) before anyone can see it under its name.
    """
    folder, name = os.path.split(path)
    fd, temp = _in_folder(folder, lambda: tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder))
    os.close(fd)
    try:
        yield temp
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@contextmanager
def exclusive(path: str, timeout: float):
    """Hold the lock `<folder>/.<name>.lock` against every other process, for one piece of work.

    The lock file is removed when the work is done. A waiter may then hold a lock on a file that is
    gone, so after taking the lock it checks that the path still names the file it locked.
    """
    folder, name = os.path.split(path)
    lock_path = os.path.join(folder, f".{name}.lock")
    deadline = time.monotonic() + timeout
    while True:
        fd = _in_folder(folder, lambda: os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644))
        try:
            _lock(fd, deadline, name)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock_path)
        finally:
            os.close(fd)


def remove_empty_folders(folder: str, stop: str) -> None:
    """Remove `folder`, then its parents up to `stop` (kept), as long as they are empty: a request for
    an image nobody has leaves no trace (else anyone could fill the disk with empty folders, one per
    made-up hash). A folder in use holds a lock or temporary file, so it is never empty."""
    stop = os.path.abspath(stop)
    folder = os.path.abspath(folder)
    while folder.startswith(stop + os.sep):
        try:
            os.rmdir(folder)
        except OSError:  # not empty, or already gone
            return
        folder = os.path.dirname(folder)


def _in_folder(folder: str, create, attempts: int = 5):
    """`create()` a file in `folder`, making the folder first, and again if it vanished meanwhile."""
    for attempt in range(attempts):
        os.makedirs(folder, exist_ok=True)
        try:
            return create()
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise


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
            raise Unavailable(f"{name} is being made by another request; try again")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
