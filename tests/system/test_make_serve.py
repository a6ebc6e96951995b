"""`make serve`, then the README's curl session, as a new user meets them: real make, real curl."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from imageserver.images.variants import RECORDS
from tests import pictures
from tests.helpers import ROOT, free_port, server_environment, wait_until_up

SAMPLE_HASH = "825eb7ec0c3a5b1376aa9fa6ba35c0f2"


@pytest.fixture
def served(tmp_path):
    port = free_port()
    public = tmp_path / "public"
    with open(tmp_path / "make.log", "wb") as log:
        # No status port: its default (7002) may be taken by another server on this machine.
        process = subprocess.Popen(["make", "-s", "serve", f"PORT={port}", f"PUBLIC={public}"],
                                   cwd=ROOT, env={**server_environment(), "IMG_STATUS_PORT": "0"}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(f"http://localhost:{port}/status_check", process, seconds=120)
        yield f"http://localhost:{port}", public
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def curl(*args: str, cwd=ROOT) -> bytes:
    return subprocess.run(["curl", "-sS", "--fail-with-body", *args], cwd=cwd, check=True,
                          capture_output=True, timeout=120).stdout


@pytest.mark.slow
def test_the_readme_session_with_make_serve_and_curl(served, tmp_path):
    url, public = served
    posted = json.loads(curl("--data-binary", "@examples/sample.jpg", "-X", "POST",
                             f"{url}/p?outputs=x300.jpg,x300.webp"))
    assert posted == {"hash": SAMPLE_HASH, "height": 600, "width": 800, "content_type": "image/jpeg"}
    folder = "p/825/eb7/ec0/c3a5b1376aa9fa6ba35c0f2"
    assert sorted(n for n in os.listdir(public / folder) if not n.startswith(RECORDS)) == [
        "info.json", "original", "x300.jpg", "x300.webp"]
    assert json.loads(curl(f"{url}/{folder}/info.json")) == posted
    for name, size in [("w200.jpg", (200, 150)), ("x200.jpg", (200, 200)), ("300x200.jpg", (300, 200)),
                       ("x200-q30.jpg", (200, 200)), ("full_size.webp", (800, 600))]:
        curl("-O", f"{url}/{folder}/{name}", cwd=tmp_path)
        image = pictures.decode((tmp_path / name).read_bytes())
        assert (image.width, image.height) == size, name
    curl("-F", "file=@examples/sample.jpg", f"{url}/avatars")
    curl("-X", "POST", f"{url}/{folder}/process?outputs=w640.jpg,x100.webp")
    assert {"w640.jpg", "x100.webp"} <= set(os.listdir(public / folder))
