"""The original's make targets: `make dev-server-s3` and `make dev-server-manta`, configured by its
environment variables; `make build` and `make release`, run on a copy of this tree."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
import requests

from imageserver import __version__
from imageserver.core.paths import ImageKey
from tests import pictures
from tests.helpers import ROOT, VENV_BIN, free_port, server_environment, wait_until_up
from tests.system.remote import MantaView, S3View


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


@pytest.mark.slow
def test_dev_server_s3(make_server, moto_server, s3_bucket):
    url = make_server("dev-server-s3", {
        "AWS_BUCKET": s3_bucket, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_KEY": "testing",
        "IMG_S3_ENDPOINT_URL": moto_server.url, "IMG_REMOTE_BASE_PATH": "images",
        "IMG_REMOTE_BASE_URL": "https://cdn.example.com"})
    posted = requests.post(url + "/p?outputs=x100.jpg", data=pictures.photo(200, 150, "jpeg"), timeout=60)
    assert posted.status_code == 200, posted.text
    folder = ImageKey("p", posted.json()["hash"]).folder
    assert S3View(moto_server, s3_bucket).names(folder) == ["info.json", "original", "x100.jpg"]


def test_dev_server_manta(make_server, manta_server, manta_keys):
    key = manta_keys["ecdsa"]
    url = make_server("dev-server-manta", {
        "MANTA_URL": manta_server.url, "MANTA_USER": "tester", "MANTA_KEY_ID": key.fingerprint,
        "SDC_IDENTITY": key.private_path, "IMG_MANTA_BASE_PATH": "public/images"})
    posted = requests.post(url + "/p?outputs=x100.jpg", data=pictures.photo(200, 150, "jpeg"), timeout=60)
    assert posted.status_code == 200, posted.text
    folder = ImageKey("p", posted.json()["hash"]).folder
    assert MantaView(manta_server).names(folder) == ["info.json", "original", "x100.jpg"]


def test_a_missing_variable_is_named(tmp_path):
    done = subprocess.run(["make", "-s", "dev-server-manta"], cwd=ROOT, env=server_environment(),
                          capture_output=True, timeout=300)
    assert done.returncode != 0
    assert b"needs the environment variable MANTA_URL" in done.stderr


# -- make build and make release, on a copy of this tree ---------------------------------------------

VENV = os.path.dirname(VENV_BIN)
IDENTITY = {"GIT_AUTHOR_NAME": "Release Test", "GIT_AUTHOR_EMAIL": "release@example.invalid",
            "GIT_COMMITTER_NAME": "Release Test", "GIT_COMMITTER_EMAIL": "release@example.invalid"}


def git(tree, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=tree, env={**os.environ, **IDENTITY}, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def tree(tmp_path):
    """This working tree as it is (tracked and new files, nothing ignored), committed in a new
    repository of its own: make release may tag it, and nothing here is touched."""
    copy = tmp_path / "tree"
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        source = os.path.join(ROOT, name)
        if os.path.isfile(source):
            os.makedirs(copy / os.path.dirname(name), exist_ok=True)
            shutil.copy2(source, copy / name)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "the tree under test")
    return copy


def make(tree, target: str) -> subprocess.CompletedProcess:
    """`make target` in the copy, with this test run's virtualenv (taken as installed already)."""
    done = subprocess.run(["make", "-s", f"VENV={VENV}", "-o", f"{VENV}/.installed", target], cwd=tree,
                          env={**server_environment(), **IDENTITY}, capture_output=True, text=True,
                          timeout=600)
    # The copy must never have been installed into this virtualenv in place of the tree under test.
    where = subprocess.run([os.path.join(VENV_BIN, "python"), "-c",
                            "import imageserver; print(imageserver.__file__)"],
                           capture_output=True, text=True, cwd="/").stdout
    assert where.startswith(ROOT + os.sep), f"make {target} reinstalled the virtualenv from {where}"
    return done


@pytest.mark.slow
def test_make_build_leaves_a_wheel_that_installs_and_runs(tree, tmp_path):
    built = make(tree, "build")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert sorted(os.listdir(tree / "dist")) == [f"imageserver-{__version__}-py3-none-any.whl",
                                                 f"imageserver-{__version__}.tar.gz"]
    assert built.stdout.count("PASSED") == 2          # twine check, on each
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, timeout=120)
    wheel = tree / "dist" / f"imageserver-{__version__}-py3-none-any.whl"
    installed = subprocess.run([str(fresh / "bin" / "pip"), "install", "-q", str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    version = subprocess.run([str(fresh / "bin" / "images"), "--version"], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path)
    assert (version.returncode, version.stdout.strip()) == (0, __version__), version.stderr
    # The API description, the coder policy and nginx's block are in the wheel, where the server
    # looks for them.
    found = subprocess.run([str(fresh / "bin" / "python"), "-c",
                            "import os, imageserver as i; d = os.path.dirname(i.__file__); "
                            "print(os.path.exists(d + '/web/openapi.json'), "
                            "os.path.exists(d + '/imaging/magick/policy.xml'), "
                            "os.path.exists(d + '/commands/nginx.conf.j2'))"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert found.stdout.split() == ["True", "True", "True"], found.stderr
    # So is the nginx block's template.
    block = subprocess.run([str(fresh / "bin" / "images"), "nginx_config"], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path)
    assert block.returncode == 0 and "server {" in block.stdout, block.stderr


@pytest.mark.slow
def test_make_release_tags_a_new_version_once_and_uploads_nothing(tree):
    released = make(tree, "release")
    assert released.returncode == 0, released.stdout[-3000:] + released.stderr[-3000:]
    assert git(tree, "tag", "--list").split() == [f"v{__version__}"]
    assert git(tree, "rev-parse", f"v{__version__}^{{commit}}") == git(tree, "rev-parse", "HEAD")
    assert "twine upload dist/*" in released.stdout
    assert len(os.listdir(tree / "dist")) == 2

    # Each refusal comes before any build: dist/ stays gone.
    shutil.rmtree(tree / "dist")
    again = make(tree, "release")
    assert again.returncode != 0 and f"v{__version__} is tagged already" in again.stderr

    version_file = tree / "imageserver" / "core" / "version.py"
    version_file.write_text(version_file.read_text().replace(__version__, "0.0.1"))
    git(tree, "commit", "-q", "-am", "an older version")
    older = make(tree, "release")
    assert older.returncode != 0 and f"0.0.1 is not newer than v{__version__}" in older.stderr

    version_file.write_text(version_file.read_text().replace("0.0.1", "99.0.0"))
    dirty = make(tree, "release")
    assert dirty.returncode != 0 and "the tree is not clean" in dirty.stderr
    assert "imageserver/core/version.py" in dirty.stderr
    assert not (tree / "dist").exists()
    assert git(tree, "tag", "--list").split() == [f"v{__version__}"]
