"""The operations settings (statsd, status port, profiler, drain, nginx) and their commands."""
import pytest

from imageserver.core.errors import SettingsError
from imageserver.core.settings import parse_command_line


@pytest.mark.parametrize("flags, message", [
    (["--status_port", "7000"], "--status_port must differ"),
    (["--statsd_port", "-1"], "--statsd_port must be a port number"),
    (["--profile", "--profile_port", "7002"], "--profile_port must be a free port"),
    (["--drain_seconds", "-1"], "--drain_seconds must be 0 or more"),
    (["--nginx_listen", "80; evil"], "--nginx_listen"),
])
def test_bad_operation_settings(flags, message):
    with pytest.raises(SettingsError, match=message):
        parse_command_line([*flags, "server"], environ={})


def test_new_commands_and_environment():
    command, _, settings = parse_command_line(["nginx_config"], environ={"IMG_STATUS_PORT": "0"})
    assert (command, settings.status_port) == ("nginx_config", 0)
    assert parse_command_line(["doctor"], environ={})[0] == "doctor"
