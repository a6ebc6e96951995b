"""The oldest versions setup.cfg accepts are enough: a virtualenv with each dependency at its floor
(`name>=X` installed as `name==X`, from the package index) serves an upload and an output."""
from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from tests import pictures
from tests.helpers import ROOT, free_port, image_url, server_environment, stop_process, wait_until_up

pytestmark = pytest.mark.slow


def floors() -> list[str]:
    """setup.cfg's install_requires, each at its floor (a requirement with none as it is)."""
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    required = config["options"]["install_requires"].split()
    return [re.sub(r">=", "==", requirement) for requirement in required]


def test_the_declared_floors_serve_an_output(tmp_path):
    started = time.monotonic()
    venv = tmp_path / "floor"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pins = floors()
    assert "gunicorn==25.3" in pins
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pins],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    consistent = subprocess.run([str(venv / "bin" / "pip"), "check"], capture_output=True, text=True)
    assert consistent.returncode == 0, consistent.stdout
    # The package itself from this tree, on the path (installing it would build in the tree).
    port = free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "python"), "-c", "from imageserver.commands.cli import main; main()",
         "--listen", "127.0.0.1", "--port", str(port), "--status_port", "0", "--workers", "1",
         "--local_base_path", str(tmp_path / "public"), "server"],
        env={**server_environment(), "PYTHONPATH": ROOT}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/status_check", server)
        assert requests.get(url + "/status_check", timeout=30).json()["message"] == "OK"
        h = requests.post(url + "/p", data=pictures.photo(80, 60), timeout=30).json()["hash"]
        made = requests.get(url + image_url(h, "x40.webp"), timeout=30)
        assert (made.status_code, pictures.decode(made.content).width) == (200, 40)
    finally:
        assert stop_process(server, 35) == 0
    print(f"floors {' '.join(pins)}: installed and served in {time.monotonic() - started:.1f} s")
