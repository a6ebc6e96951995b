"""Local files that appear whole or not at all, and locks that several worker processes share.

A file is written to a temporary name in its own folder and renamed into place, so that a reader (this
server, or nginx serving the same folder) never sees half of it. Temporary and lock files start with
a dot, which the generated nginx block refuses to serve.
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
    os.makedirs(folder, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
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
    os.makedirs(folder, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
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
