import pytest

from imageserver.core.errors import DiskFull, SettingsError
from imageserver.core.settings import Settings, parse_command_line
from imageserver.images import space


def test_the_reserve_refuses_what_would_take_the_disk_under_it(tmp_path):
    free = space.free_bytes(str(tmp_path))
    space.check_reserve(str(tmp_path), minimum=0, needed=0)
    space.check_reserve(str(tmp_path / "not" / "made" / "yet"), minimum=free // 2)
    with pytest.raises(DiskFull) as refused:
        space.check_reserve(str(tmp_path), minimum=free // 2, needed=free)
    assert refused.value.status == 507 and refused.value.message.startswith("the disk is full")
    report = space.report(str(tmp_path), free * 2)
    assert (report["minimum_free_bytes"], report["full"]) == (free * 2, True)
    assert not space.report(str(tmp_path), 0)["full"]


def test_the_settings_of_durability():
    assert (Settings().minimum_free_bytes, Settings().no_fsync) == (100_000_000, False)
    _, _, settings = parse_command_line(["--no_fsync", "--minimum_free_bytes", "0", "server"], {})
    assert (settings.minimum_free_bytes, settings.no_fsync) == (0, True)
    with pytest.raises(SettingsError):
        Settings(minimum_free_bytes=-1)
