import subprocess

import pytest

from imageserver.core.errors import SettingsError
from imageserver.core.settings import Settings, parse_command_line
from tests.helpers import IMAGES


def test_defaults_are_the_original_servers():
    s = Settings.from_env({})
    assert (s.listen, s.port, s.local_base_path) == ("127.0.0.1", 7000, "public")
    assert s.extensions == ("jpg", "png", "gif", "webp", "avif")
    assert (s.maximum_width, s.maximum_height, s.default_quality, s.http_timeout) == (1000, 1000, 75, 5.0)
    assert s.allow_private_sources is False


def test_flags_before_and_after_the_command():
    command, args, s = parse_command_line(["--port", "7100", "server", "--outputs", "x300.jpg,w200.webp"], {})
    assert (command, args, s.port, s.outputs) == ("server", [], 7100, ("x300.jpg", "w200.webp"))
    command, args, s = parse_command_line(["process", "a/original", "--namespace", "avatars"], {})
    assert (command, args, s.namespace) == ("process", ["a/original"], "avatars")


def test_environment_then_flags():
    env = {"IMG_PORT": "7200", "IMG_OUTPUTS": "x100.jpg", "IMG_ALLOW_PRIVATE_SOURCES": "true"}
    _, _, s = parse_command_line(["server"], env)
    assert (s.port, s.outputs, s.allow_private_sources) == (7200, ("x100.jpg",), True)
    _, _, s = parse_command_line(["--port", "7300", "server"], env)
    assert s.port == 7300


@pytest.mark.parametrize("values", [
    {"port": 0}, {"default_quality": 0}, {"default_quality": 101}, {"extensions": ("bmp",)},
    {"outputs": ("x0.jpg",)}, {"maximum_width": -1}, {"workers": -1}, {"http_timeout": 0},
    {"decoded_cache_pixels": -1},
])
def test_bad_values_stop(values):
    with pytest.raises(SettingsError):
        Settings(**values)


@pytest.mark.spawns
def test_bad_value_is_one_line_and_exit_2():
    result = subprocess.run([IMAGES, "--port", "seven", "server"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["images: --port: 'seven' is not a valid int"]
    result = subprocess.run([IMAGES, "server"], capture_output=True, text=True,
                            env={"IMG_DEFAULT_QUALITY": "0", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "default_quality" in result.stderr


@pytest.mark.spawns
def test_help_lists_every_flag_with_its_default():
    result = subprocess.run([IMAGES, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag, default in [("--listen", "127.0.0.1"), ("--port", "7000"), ("--local_base_path", "public"),
                          ("--extensions", "jpg,png,gif,webp,avif"), ("--maximum_width", "1000"),
                          ("--maximum_height", "1000"), ("--default_quality", "75"),
                          ("--http_timeout", "5.0"), ("--outputs", ""), ("--namespace", "p"),
                          ("--allow_private_sources", "off")]:
        assert flag in text
        assert f"(default: {default})" in text.split(flag, 2)[-1][:400], flag


@pytest.mark.spawns
def test_version():
    from imageserver import __version__
    for argv in (["version"], ["--version"]):
        result = subprocess.run([IMAGES, *argv], capture_output=True, text=True)
        assert result.stdout.strip() == __version__
