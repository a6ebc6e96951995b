import multiprocessing
import os
import time

import pytest

from imageserver import files
from imageserver.errors import Unavailable


def test_write_atomically_leaves_only_the_file(tmp_path):
    path = str(tmp_path / "a" / "b" / "x300.jpg")
    files.write_atomically(path, b"one")
    files.write_atomically(path, b"two")
    assert files.read(path) == b"two"
    assert os.listdir(tmp_path / "a" / "b") == ["x300.jpg"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def _hold(path, seconds, started):
    with files.exclusive(path, 5):
        started.set()
        time.sleep(seconds)


def test_exclusive_keeps_other_processes_out_then_lets_them_in(tmp_path):
    path = str(tmp_path / "x300.jpg")
    started = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(path, 1.0, started))
    holder.start()
    assert started.wait(10)
    with pytest.raises(Unavailable):
        with files.exclusive(path, 0.2):
            pass
    with files.exclusive(path, 10):
        assert not holder.is_alive()
    holder.join()
    assert os.listdir(tmp_path) == []


def test_a_lock_is_released_when_its_holder_dies(tmp_path):
    path = str(tmp_path / "x300.jpg")
    started = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(path, 60, started))
    holder.start()
    assert started.wait(10)
    holder.kill()
    holder.join()
    with files.exclusive(path, 5):
        pass
