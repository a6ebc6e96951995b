"""Store settings: what is refused at start-up, with a message that says what to change."""
from __future__ import annotations

import subprocess

import pytest

from imageserver.core.errors import SettingsError
from imageserver.core.settings import Settings, parse_command_line
from imageserver.storage import build_store
from imageserver.storage.local import NoRemoteStore
from tests.helpers import IMAGES, server_environment


def test_nothing_remote_by_default():
    assert isinstance(build_store(Settings()), NoRemoteStore)


@pytest.mark.parametrize("values, message", [
    ({"aws_bucket": "b", "manta_url": "http://m", "manta_user": "u", "manta_key_id": "k",
      "remote_base_path": "stor/x"}, "not both"),
    ({"aws_bucket": "b", "aws_access_key_id": "AKIA"}, "go together"),
    ({"manta_url": "http://m", "manta_key_id": "k", "remote_base_path": "stor/x"}, "--manta_user"),
    ({"manta_url": "http://m", "manta_user": "u", "manta_key_id": "k", "remote_base_path": "images"},
     "stor/ or public/"),
])
def test_bad_store_settings_are_refused(values, message):
    with pytest.raises(SettingsError, match=message):
        build_store(Settings(**values))


@pytest.mark.parametrize("values, message", [
    ({"s3_acl": "everyone"}, "--s3_acl"),
    ({"store_timeout": 0}, "--store_timeout"),
    ({"store_retries": -1}, "--store_retries"),
    ({"processor_concurrency": 0}, "--processor_concurrency"),
])
def test_bad_values_are_refused(values, message):
    with pytest.raises(SettingsError, match=message):
        Settings(**values)


@pytest.mark.spawns
def test_the_server_stops_at_once_on_a_manta_key_it_cannot_have(tmp_path):
    done = subprocess.run([IMAGES, "--manta_url", "http://127.0.0.1:9", "--manta_user", "u",
                           "--manta_key_id", "aa:bb", "--sdc_identity", str(tmp_path / "none"),
                           "--remote_base_path", "stor/images", "server"],
                          capture_output=True, env=server_environment(), timeout=60)
    assert done.returncode == 2
    assert b"no Manta key aa:bb" in done.stderr and b"cannot be loaded" in done.stderr


@pytest.mark.spawns
def test_the_process_command_says_what_is_wrong_with_its_settings():
    done = subprocess.run([IMAGES, "--aws_bucket", "b", "--manta_url", "http://m", "process", "-"],
                          capture_output=True, env=server_environment(), timeout=60)
    assert done.returncode == 2 and b"one store at a time" in done.stderr


def test_the_originals_bare_variables_switch_no_store_on():
    """AWS_BUCKET, MANTA_URL (and their credentials) left in a shell are read by the dev-server-*
    make targets only: a server started there keeps images on local disk, as its flags say."""
    stray = {"AWS_BUCKET": "someone-elses-bucket", "AWS_REGION": "eu-west-1",
             "MANTA_URL": "https://us-east.manta.joyent.com", "MANTA_USER": "u", "MANTA_KEY_ID": "aa:bb",
             "SDC_IDENTITY": "/nowhere"}
    for environ in (stray, {key: value for key, value in stray.items() if "MANTA" not in key}):
        _, _, settings = parse_command_line(["server"], environ)
        assert (settings.aws_bucket, settings.manta_url, settings.aws_region) == ("", "", "us-east-1")
        assert isinstance(build_store(settings), NoRemoteStore)
    _, _, settings = parse_command_line(["server"], {**stray, "IMG_AWS_BUCKET": "mine"})
    assert settings.aws_bucket == "mine"
