"""Local disk alone (no remote store): what is missing, what is kept, and an unknown image leaves
nothing on disk. Local disk in front of S3 or Manta is tested against those stores, in
tests/system (test_remote_storage, test_store_outage)."""
from __future__ import annotations

import os

import pytest

from imageserver.core.errors import NotFound
from imageserver.core.metrics import NullMetrics
from imageserver.core.paths import INFO, ORIGINAL, ImageKey
from imageserver.core.settings import Settings
from imageserver.images import cache
from imageserver.storage import NoRemoteStore

KEY = ImageKey("p", "6e0072682e66287b662827da75b244a3")


@pytest.fixture
def disk(tmp_path):
    return cache.local_disk(Settings(local_base_path=str(tmp_path)), NoRemoteStore(), NullMetrics())


def test_without_a_remote_store_local_disk_is_the_only_copy(disk):
    assert type(disk) is cache.LocalOnly
    assert disk.fetch(KEY, "x300.jpg", "/nowhere") == cache.ABSENT


def test_an_unknown_image_is_refused_and_leaves_nothing_on_disk(disk):
    with pytest.raises(NotFound, match="no image 6e0072682e66287b662827da75b244a3"):
        disk.check_known(KEY)
    with pytest.raises(NotFound):
        disk.local_copy(KEY, INFO)
    assert os.listdir(disk.base) == []


def test_what_is_missing_is_kept_and_found_again(disk):
    assert disk.missing(KEY, [ORIGINAL, INFO]) == {ORIGINAL, INFO}
    disk.keep(KEY, {ORIGINAL: (b"original", "image/jpeg"), INFO: (b"{}", "application/json")},
              {ORIGINAL, INFO})
    assert disk.missing(KEY, [ORIGINAL, INFO, "x300.jpg"]) == {"x300.jpg"}
    with open(disk.local_copy(KEY, ORIGINAL), "rb") as f:
        assert f.read() == b"original"
    folder = KEY.local_folder(disk.base)
    assert sorted(name for name in os.listdir(folder) if not name.startswith(".")) == [INFO, ORIGINAL]
