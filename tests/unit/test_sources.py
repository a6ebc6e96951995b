"""A source URL asked for again within a minute: the image made from it is reused, not downloaded
again (many requests at once, across servers: tests/system/test_sources.py)."""
from __future__ import annotations

import hashlib
import os
import time

import pytest

from imageserver.core.errors import Forbidden
from imageserver.core.metrics import NullMetrics
from imageserver.core.paths import INFO, ImageKey, state_folder
from imageserver.core.settings import Settings
from imageserver.sources.downloads import REUSE_SECONDS, SourceDownloads

URL = "http://images.example.com/a.jpg"
KEY = ImageKey("p", "6e0072682e66287b662827da75b244a3")


def downloads_with_a_record(tmp_path, age: float) -> SourceDownloads:
    """A record of URL, `age` seconds old, naming an image on disk. --allowed_source_hosts refuses
    URL's host before any lookup: a download tried is a Forbidden, and nothing leaves the machine."""
    record = state_folder(str(tmp_path), "sources", hashlib.md5(URL.encode()).hexdigest())
    os.makedirs(os.path.dirname(record))
    with open(record, "w") as f:
        f.write(KEY.hash)
    os.utime(record, (time.time() - age,) * 2)
    info = KEY.local_file(str(tmp_path), INFO)
    os.makedirs(os.path.dirname(info))
    with open(info, "w") as f:
        f.write("{}")
    settings = Settings(local_base_path=str(tmp_path), allowed_source_hosts=("elsewhere.example",))
    return SourceDownloads(settings, NullMetrics())


def never(data: bytes) -> bytes:
    raise AssertionError("downloaded again")


def reused(key: ImageKey) -> bytes:
    return key.hash.encode()


def test_a_fresh_record_gives_its_image(tmp_path):
    downloads = downloads_with_a_record(tmp_path, age=1)
    assert downloads.once("p", URL, create=never, reuse=reused) == KEY.hash.encode()


def test_a_stale_record_or_one_of_another_namespace_is_downloaded_again(tmp_path):
    stale = downloads_with_a_record(tmp_path / "stale", age=REUSE_SECONDS + 1)
    with pytest.raises(Forbidden, match="allowed_source_hosts"):
        stale.once("p", URL, create=never, reuse=reused)
    fresh = downloads_with_a_record(tmp_path / "fresh", age=1)
    with pytest.raises(Forbidden, match="allowed_source_hosts"):
        fresh.once("avatars", URL, create=never, reuse=reused)
