"""Sweeping the folder of source records: stale records go, fresh ones stay, a sweep is due once
per period, and leftover temporary and lock files go only when long stale."""
from __future__ import annotations

import os
import time

from imageserver.sources import sweep


def make(folder, name: str, age: float) -> None:
    path = folder / name
    path.write_bytes(b"x")
    then = time.time() - age
    os.utime(path, (then, then))


def test_stale_records_go_and_fresh_ones_stay(tmp_path):
    for i in range(50):
        make(tmp_path, f"stale{i}", 61)
    make(tmp_path, "fresh", 5)
    make(tmp_path, ".fresh.lock", 61)
    make(tmp_path, ".left.behind.tmp", sweep.LEFTOVER_SECONDS + 1)
    assert sweep.now_and_then(str(tmp_path), 60) == 51
    assert sorted(os.listdir(tmp_path)) == [".fresh.lock", sweep.LAST_SWEEP, "fresh"]


def test_a_sweep_is_due_once_per_period(tmp_path):
    assert sweep.now_and_then(str(tmp_path), 60) == 0
    make(tmp_path, "stale", 61)
    assert sweep.now_and_then(str(tmp_path), 60) == 0        # swept a moment ago
    assert os.path.exists(tmp_path / "stale")
    make(tmp_path, sweep.LAST_SWEEP, 61)
    assert sweep.now_and_then(str(tmp_path), 60) == 1
    assert os.listdir(tmp_path) == [sweep.LAST_SWEEP]


def test_no_folder_yet_is_nothing_to_sweep(tmp_path):
    assert sweep.now_and_then(str(tmp_path / "sources"), 60) == 0
    assert not os.path.exists(tmp_path / "sources")
