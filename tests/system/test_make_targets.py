"""`make dev-server-s3` and `make dev-server-manta`, configured by the original's environment variables."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests

from tests import pictures
from tests.conftest import free_port, server_environment, wait_until_up
from tests.system.remote import MantaView, S3View, folder_of

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def make_server(tmp_path):
    """make_server(target, variables): run the make target; yields its URL once it answers."""
    started = []

    def start(target: str, variables: dict) -> str:
        port = free_port()
        env = {**server_environment(), **variables, "IMG_PORT": str(port), "IMG_WORKERS": "1",
               "IMG_STATUS_PORT": "0",
               "IMG_LOCAL_BASE_PATH": str(tmp_path / "public")}
        with open(tmp_path / "make.log", "wb") as log:
            process = subprocess.Popen(["make", "-s", target], cwd=ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        wait_until_up(f"http://127.0.0.1:{port}/status_check", process, 120)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)


def test_dev_server_s3(make_server, moto_server, s3_bucket):
    url = make_server("dev-server-s3", {
        "AWS_BUCKET": s3_bucket, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_KEY": "testing",
        "IMG_S3_ENDPOINT_URL": moto_server.url, "IMG_REMOTE_BASE_PATH": "images",
        "IMG_REMOTE_BASE_URL": "https://cdn.example.com"})
    posted = requests.post(url + "/p?outputs=x100.jpg", data=pictures.photo(200, 150, "jpeg"), timeout=60)
    assert posted.status_code == 200, posted.text
    folder = folder_of(posted.json()["hash"])
    assert S3View(moto_server, s3_bucket).names(folder) == ["info.json", "original", "x100.jpg"]


def test_dev_server_manta(make_server, manta_server, manta_keys):
    key = manta_keys["ecdsa"]
    url = make_server("dev-server-manta", {
        "MANTA_URL": manta_server.url, "MANTA_USER": "tester", "MANTA_KEY_ID": key.fingerprint,
        "SDC_IDENTITY": key.private_path, "IMG_MANTA_BASE_PATH": "public/images"})
    posted = requests.post(url + "/p?outputs=x100.jpg", data=pictures.photo(200, 150, "jpeg"), timeout=60)
    assert posted.status_code == 200, posted.text
    folder = folder_of(posted.json()["hash"])
    assert MantaView(manta_server).names(folder) == ["info.json", "original", "x100.jpg"]


def test_a_missing_variable_is_named(tmp_path):
    done = subprocess.run(["make", "-s", "dev-server-manta"], cwd=ROOT, env=server_environment(),
                          capture_output=True, timeout=300)
    assert done.returncode != 0
    assert b"needs the environment variable MANTA_URL" in done.stderr
