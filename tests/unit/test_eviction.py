"""The sweep of --maximum_local_bytes: which files it may remove, in what order, and what it leaves."""
import json
import os
import subprocess
import sys

import pytest

from imageserver.core.errors import SettingsError
from imageserver.core.metrics import NullMetrics
from imageserver.core.settings import Settings
from imageserver.images import eviction
from imageserver.images.eviction import LocalFile, choose_victims, scan
from imageserver.storage.local import NoRemoteStore
from imageserver.storage.pending import PendingUploads

FOLDER = os.path.join("p", "6e0", "072", "682", "e66287b662827da75b244a3")


def put(path, size: int, used_at: float | None = None) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x" * size)
    if used_at is not None:
        os.utime(path, (used_at, used_at))
    return str(path)


def test_least_recently_used_go_first_down_to_the_low_water_mark():
    found = [LocalFile(f"/b/{n}", 100, last_use=n, evictable=True) for n in (5, 1, 4, 2, 3)]
    victims, kept = choose_victims(found, limit=400)
    # 500 bytes over a limit of 400: down to 360 (LOW_WATER), the two least recently used.
    assert [v.path for v in victims] == ["/b/1", "/b/2"]
    assert kept == 0


def test_nothing_goes_while_within_the_limit():
    found = [LocalFile(f"/b/{n}", 100, last_use=n, evictable=True) for n in range(4)]
    assert choose_victims(found, limit=400) == ([], 0)


def test_files_that_may_not_go_are_never_chosen_and_are_reported():
    found = [LocalFile("/b/original", 300, last_use=0, evictable=False),
             LocalFile("/b/old.jpg", 100, last_use=1, evictable=True),
             LocalFile("/b/new.jpg", 100, last_use=2, evictable=True)]
    victims, kept = choose_victims(found, limit=200)
    assert [v.path for v in victims] == ["/b/old.jpg", "/b/new.jpg"]
    assert kept == 300


@pytest.mark.parametrize("remote", [False, True])
def test_scan_marks_what_may_go(tmp_path, remote):
    image = tmp_path / FOLDER
    names = ["original", "info.json", "x300.jpg", "w200.webp", "w100.png", ".w100.png.tmp",
             ".x50.jpg.abc.tmp"]
    for name in names:
        put(image / name, 10)
    put(tmp_path / ".imageserver" / "uploads" / "0123", 10)
    put(tmp_path / "p" / "stray.jpg", 10)
    pending = {str(image / "w200.webp")}
    evictable = {os.path.basename(f.path) for f in scan(str(tmp_path), remote, pending) if f.evictable}
    # Not: a file being made (its claim exists), temporary files and claims, a pending upload, the
    # state folder, a file outside an image folder; originals and info.json only with a store.
    assert evictable == {"x300.jpg", *(["original", "info.json"] if remote else [])}
    seen = {f.path for f in scan(str(tmp_path), remote, pending)}
    assert not any(".imageserver" in path for path in seen)


def test_pending_uploads_come_from_the_journal(tmp_path):
    journal = tmp_path / ".imageserver" / "uploads"
    journal.mkdir(parents=True)
    (journal / "a").write_text(json.dumps({"local_path": str(tmp_path / FOLDER / "x1.jpg"),
                                           "remote_path": "p/x", "content_type": "image/jpeg"}))
    (journal / "b").write_text("{half a rec")
    (journal / ".a.lock").write_text("")
    assert eviction.pending_uploads(str(tmp_path)) == {str(tmp_path / FOLDER / "x1.jpg")}


def test_pending_uploads_reads_what_the_upload_journal_writes(tmp_path):
    journal = PendingUploads(NoRemoteStore(), str(tmp_path / ".imageserver" / "uploads"), 30,
                             NullMetrics(), lock_timeout=5)
    output = str(tmp_path / FOLDER / "x300.jpg")
    journal.write_down(output, "p/x300.jpg", "image/jpeg")   # the thread is not started
    assert eviction.pending_uploads(str(tmp_path)) == {output}


@pytest.mark.spawns
def test_a_file_read_after_it_was_armed_is_seen_as_used(tmp_path):
    options = subprocess.run(["findmnt", "-n", "-o", "OPTIONS", "-T", str(tmp_path)],
                             capture_output=True, text=True).stdout
    if "noatime" in options.split(","):
        pytest.skip("a noatime mount records no reads")
    path = put(tmp_path / "x300.jpg", 10, used_at=1_000_000)
    armed = eviction.arm(path)
    assert not eviction.read_since(path, armed)
    with open(path, "rb") as f:
        f.read()
    # The mount's atime policy (relatime here) records the first read after the arming.
    assert eviction.read_since(path, armed)


def test_a_sweep_removes_the_oldest_outputs_and_their_empty_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(eviction, "ARM_SECONDS", 0)
    block = os.statvfs(tmp_path).f_bsize
    old_image = tmp_path / FOLDER
    new_image = tmp_path / "p" / "111" / "222" / "333" / ("4" * 23)
    put(old_image / "x300.jpg", block, used_at=1000)
    put(old_image / "w100.jpg", block, used_at=1001)
    for name in ("original", "info.json", "x300.jpg"):
        put(new_image / name, block, used_at=2000)
    settings = Settings(local_base_path=str(tmp_path), maximum_local_bytes=4 * block)
    sweeper = eviction.Sweeper(settings, NullMetrics())
    assert sweeper.sweep() == 3 * block
    assert not old_image.exists() and not (tmp_path / "p" / "6e0").exists()
    assert sorted(os.listdir(new_image)) == ["info.json", "original", "x300.jpg"]
    status = eviction.read_status(settings)
    assert (status["bytes_used"], status["bytes_limit"], status["files_evicted"]) == (
        3 * block, 4 * block, 2)
    assert status["warning"] == ""


def test_originals_over_the_limit_without_a_store_are_kept_and_warned_of(tmp_path, monkeypatch,
                                                                         caplog):
    monkeypatch.setattr(eviction, "ARM_SECONDS", 0)
    block = os.statvfs(tmp_path).f_bsize
    for name in ("original", "info.json", "x300.jpg"):
        put(tmp_path / FOLDER / name, block, used_at=1000)
    settings = Settings(local_base_path=str(tmp_path), maximum_local_bytes=block)
    eviction.Sweeper(settings, NullMetrics()).sweep()
    assert sorted(os.listdir(tmp_path / FOLDER)) == ["info.json", "original"]
    assert "never removed" in eviction.read_status(settings)["warning"]
    assert "exceed --maximum_local_bytes" in caplog.text


def test_a_negative_limit_stops_start_up():
    with pytest.raises(SettingsError, match="maximum_local_bytes"):
        Settings(maximum_local_bytes=-1)


def test_no_limit_no_status():
    assert eviction.read_status(Settings(maximum_local_bytes=0)) is None


@pytest.mark.spawns
def test_the_sweep_and_the_server_module_do_not_load_imagemagick():
    code = ("import sys, imageserver.images.eviction, imageserver.serving.server; "
            "sys.exit(any(m.split('.')[0] == 'wand' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
