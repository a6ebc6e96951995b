"""Settings, metrics, the stop flag and the nginx block, in process."""
import os
import socket

import pytest

from imageserver import nginx
from imageserver.errors import SettingsError
from imageserver.listeners import StopFlag
from imageserver.metrics import NullMetrics, StatsdMetrics, build_metrics
from imageserver.settings import Settings, parse_command_line


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


def test_statsd_names_and_prefix():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(10)
        metrics = build_metrics(Settings(statsd_port=listener.getsockname()[1]))
        assert isinstance(metrics, StatsdMetrics)
        metrics.incr("image_request.jpg")
        assert listener.recv(100) == b"image_server.image_request.jpg:1|c"
        with pytest.raises(ValueError):
            with metrics.timer("processing.time.jpg"):
                raise ValueError("a failed block is not timed")
        with metrics.timer("processing.time.png"):
            pass
        assert listener.recv(100).startswith(b"image_server.processing.time.png:")
        metrics.client.close()


def test_no_statsd_host_means_no_client():
    assert type(build_metrics(Settings(statsd_host=""))) is NullMetrics


def test_the_stop_flag_is_shared_with_forked_children():
    flag = StopFlag()
    pid = os.fork()
    if pid == 0:
        flag.set()
        os._exit(0)
    os.waitpid(pid, 0)
    assert flag.is_set()


@pytest.mark.parametrize("listen, upstream", [
    ("0.0.0.0", "127.0.0.1:7000"), ("::", "[::1]:7000"), ("10.0.0.5", "10.0.0.5:7000")])
def test_nginx_reaches_the_app_where_it_listens(listen, upstream):
    assert nginx.app_address(Settings(listen=listen)) == upstream
    assert f"proxy_pass http://{upstream};" in nginx.server_block(Settings(listen=listen))


def test_nginx_block_follows_the_settings():
    block = nginx.server_block(Settings(maximum_upload_bytes=1234, nginx_listen="[::]:8080",
                                        nginx_access_log=""))
    assert "client_max_body_size 1234;" in block
    assert "listen [::]:8080;" in block
    assert "access_log off;" in block
    with pytest.raises(SettingsError, match="nginx would misread"):
        nginx.server_block(Settings(local_base_path="/srv/$images"))
