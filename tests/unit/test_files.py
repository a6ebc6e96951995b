import multiprocessing
import os
import time

import pytest

from imageserver.core import files
from imageserver.core.errors import DiskFull, Unavailable


def test_write_atomically_leaves_only_the_file(tmp_path):
    path = str(tmp_path / "a" / "b" / "x300.jpg")
    files.write_atomically(path, b"one")
    files.write_atomically(path, b"two")
    assert files.read(path) == b"two"
    assert os.listdir(tmp_path / "a" / "b") == ["x300.jpg"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def _hold(path, seconds, started, done=None):
    with files.exclusive(path, 5):
        started.set()
        time.sleep(seconds)
        if done is not None:    # the holder's work is over; it lets go next
            done.set()


def holding(target, path, seconds, *more) -> multiprocessing.Process:
    """A process running `target(path, seconds, started, *more)`, once it holds the claim."""
    started = multiprocessing.Event()
    holder = multiprocessing.Process(target=target, args=(path, seconds, started, *more))
    holder.start()
    assert started.wait(10)
    return holder


@pytest.mark.spawns
def test_exclusive_keeps_other_processes_out_then_lets_them_in(tmp_path):
    path = str(tmp_path / "x300.jpg")
    done = multiprocessing.Event()
    holder = holding(_hold, path, 1.0, done)
    with pytest.raises(Unavailable):
        with files.exclusive(path, 0.2):
            pass
    with files.exclusive(path, 10):
        assert done.is_set()
    holder.join()
    assert os.listdir(tmp_path) == []


@pytest.mark.spawns
def test_a_claim_is_taken_over_at_once_when_its_holder_dies(tmp_path):
    path = str(tmp_path / "x300.jpg")
    holder = holding(_hold, path, 60)
    holder.kill()
    holder.join()
    assert os.listdir(tmp_path) == [".x300.jpg.tmp"]     # what a worker killed mid-render leaves
    with files.exclusive(path, 2) as claim:     # not a wait for the dead holder's timeout
        claim.write(b"whole")
    assert os.listdir(tmp_path) == ["x300.jpg"] and files.read(path) == b"whole"


def test_an_unheld_claim_file_is_taken_over(tmp_path):
    # Left by a process killed between creating its claim and locking it, or by an older crash.
    (tmp_path / ".x300.jpg.tmp").write_bytes(b"half an image")
    with files.exclusive(str(tmp_path / "x300.jpg"), 0.5) as claim:
        claim.write(b"whole")
    assert os.listdir(tmp_path) == ["x300.jpg"]
    assert files.read(str(tmp_path / "x300.jpg")) == b"whole"


def test_a_claim_written_puts_the_file_in_place_with_nothing_beside_it(tmp_path):
    path = str(tmp_path / "a" / "b" / "x300.jpg")
    with files.exclusive(path, 5) as claim:
        assert os.listdir(tmp_path / "a" / "b") == [".x300.jpg.tmp"]
        claim.write(b"one")
    assert files.read(path) == b"one"
    assert os.listdir(tmp_path / "a" / "b") == ["x300.jpg"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def _make(path, seconds, started):
    with files.exclusive(path, 5) as claim:
        started.set()
        time.sleep(seconds)
        claim.write(b"made by the holder")


@pytest.mark.spawns
def test_a_waiter_finds_the_file_its_holder_made(tmp_path):
    path = str(tmp_path / "x300.jpg")
    holder = holding(_make, path, 0.5)
    with files.exclusive(path, 10):
        assert files.read(path) == b"made by the holder"
    holder.join()
    assert holder.exitcode == 0
    assert os.listdir(tmp_path) == ["x300.jpg"]


def test_a_claim_that_fails_leaves_nothing(tmp_path):
    path = str(tmp_path / "x300.jpg")
    with pytest.raises(RuntimeError):
        with files.exclusive(path, 5):
            raise RuntimeError("the render failed")
    assert os.listdir(tmp_path) == []


def test_remove_empty_folders_removes_the_empty_chain_and_keeps_the_rest(tmp_path):
    base = tmp_path / "p"
    (base / "aaa" / "bbb" / "ccc" / "ddd").mkdir(parents=True)
    (base / "aaa" / "bbb" / "other").mkdir()
    files.remove_empty_folders(str(base / "aaa" / "bbb" / "ccc" / "ddd"), stop=str(base))
    assert sorted(os.listdir(base / "aaa" / "bbb")) == ["other"]
    files.remove_empty_folders(str(base / "aaa" / "bbb" / "other"), stop=str(base))
    assert os.listdir(base) == [] and base.is_dir()


def test_remove_empty_folders_leaves_a_folder_in_use(tmp_path):
    folder = tmp_path / "p" / "aaa"
    with files.exclusive(str(folder / "x100.jpg"), 5):
        files.remove_empty_folders(str(folder), stop=str(tmp_path / "p"))
        assert folder.is_dir()
    assert os.listdir(folder) == []


def test_a_file_is_made_even_when_its_folder_is_removed_under_it(tmp_path):
    # A request for an unknown image removes its empty folder; another request may have just made
    # that folder for a lock or a temporary file, and must make it again rather than fail.
    folder = str(tmp_path / "a" / "b")
    removals = []

    def create():
        if not removals:
            removals.append(files.remove_empty_folders(folder, stop=str(tmp_path)))
        return open(os.path.join(folder, "made"), "x").close()

    files._in_folder(folder, create, durable=True)
    assert len(removals) == 1 and os.listdir(folder) == ["made"]


@pytest.mark.spawns
def test_clear_leftovers_removes_temporary_and_free_lock_files_only(tmp_path):
    folder = tmp_path / "p" / "aaa" / "bbb"
    folder.mkdir(parents=True)
    (folder / "original").write_bytes(b"kept")
    (folder / ".x300.jpg.k2j4.tmp").write_bytes(b"half an image")
    (folder / ".x300.jpg.lock").write_bytes(b"")
    lonely = tmp_path / "p" / "ccc"
    lonely.mkdir()
    (lonely / ".original.abcd.tmp").write_bytes(b"half")
    held = str(tmp_path / "p" / "ddd" / "w10.jpg")
    holder = holding(_hold, held, 60)
    try:
        started = time.time() + 1    # the server started after all of those were written
        assert files.clear_leftovers(str(tmp_path), made_before=started) == 3
        assert os.listdir(folder) == ["original"]
        assert not lonely.exists()      # emptied by the clean-up, so gone
        assert os.listdir(tmp_path / "p" / "ddd") == [".w10.jpg.tmp"]   # in use: kept
    finally:
        holder.kill()
        holder.join()
    assert files.clear_leftovers(str(tmp_path), made_before=started) == 1
    assert files.clear_leftovers(str(tmp_path / "none"), made_before=started) == 0


def test_clear_leftovers_keeps_what_was_written_since_the_server_started(tmp_path):
    folder = tmp_path / "p" / "aaa"
    folder.mkdir(parents=True)
    for name in (".x300.jpg.k2j4.tmp", ".w10.jpg.tmp", ".x300.jpg.lock"):
        (folder / name).write_bytes(b"being written")
    old = folder / ".x300.jpg.k2j4.tmp"
    os.utime(old, (time.time() - 60, time.time() - 60))
    assert files.clear_leftovers(str(tmp_path), made_before=time.time() - 30) == 1
    assert sorted(os.listdir(folder)) == [".w10.jpg.tmp", ".x300.jpg.lock"]


def test_whole_or_not_at_all_removes_what_a_failed_block_made_and_keeps_what_was_there(tmp_path):
    folder = str(tmp_path / "p" / "aaa")
    files.write_atomically(os.path.join(folder, "original"), b"there before")
    with pytest.raises(RuntimeError):
        with files.whole_or_not_at_all(folder, ["original", "info.json", "x10.jpg"], str(tmp_path), 5):
            files.write_atomically(os.path.join(folder, "info.json"), b"{}")
            raise RuntimeError("the disk is full")
    assert os.listdir(folder) == ["original"]

    other = str(tmp_path / "p" / "bbb")
    with pytest.raises(RuntimeError):
        with files.whole_or_not_at_all(other, ["original"], str(tmp_path / "p"), 5):
            files.write_atomically(os.path.join(other, "original"), b"new")
            raise RuntimeError("the disk is full")
    assert sorted(os.listdir(tmp_path / "p")) == ["aaa"]

    with files.whole_or_not_at_all(other, ["original"], str(tmp_path / "p"), 5):
        files.write_atomically(os.path.join(other, "original"), b"new")
    assert os.listdir(other) == ["original"]


def test_a_full_disk_is_a_disk_full_error_with_nothing_left(tmp_path):
    # /dev/full answers every write with ENOSPC, as a full disk does.
    folder = tmp_path / "a"
    with pytest.raises(DiskFull) as raised:
        with files.replacing(str(folder / "x300.jpg")):
            with open("/dev/full", "wb") as out:
                out.write(b"x" * 10)
                out.flush()
    assert raised.value.status == 507 and "disk is full" in raised.value.message
    assert os.listdir(folder) == []
