"""Ways of running the server: plain gunicorn with IMG_* variables, graceful stops, `images process`."""
import signal
import subprocess
import threading
import time

import pytest
import requests

from imageserver.paths import ImageKey
from tests import pictures
from tests.helpers import IMAGES, plain_gunicorn, wait_until


def test_gunicorn_with_settings_from_the_environment(tmp_path):
    variables = {"IMG_LOCAL_BASE_PATH": str(tmp_path), "IMG_OUTPUTS": "x40.webp", "IMG_WORKERS": "1"}
    with plain_gunicorn(variables) as (url, process):
        response = requests.post(url + "/p", data=pictures.photo(80, 60), timeout=30)
        assert response.status_code == 200
        h = response.json()["hash"]
        made = tmp_path / ImageKey("p", h).folder / "x40.webp"
        assert pictures.decode(made.read_bytes()).width == 40
    assert process.returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_lets_the_request_in_flight_finish(start_server, source_server, sig):
    data = pictures.photo(60, 40)

    def slow_body():
        time.sleep(2)
        return data

    source_server.routes["/slow.jpg"] = (200, {}, slow_body)
    server = start_server()
    result = {}

    def post():
        result["response"] = server.post("/p", params={"source": source_server.url + "/slow.jpg"})

    client = threading.Thread(target=post)
    client.start()
    wait_until(lambda: source_server.hits, "the slow request")
    server.process.send_signal(sig)
    client.join(30)
    assert result["response"].status_code == 200
    assert server.process.wait(30) == 0
    with pytest.raises(requests.ConnectionError):
        server.get("/status_check")


def test_process_command_makes_outputs_for_a_local_original(tmp_path):
    base = tmp_path / "public"
    data = pictures.photo(90, 60)
    import hashlib
    h = hashlib.md5(data).hexdigest()
    original = tmp_path / "incoming" / ImageKey("p", h).folder / "original"
    original.parent.mkdir(parents=True)
    original.write_bytes(data)
    result = subprocess.run([IMAGES, "--outputs", "x30.jpg,w45.webp", "--local_base_path", str(base),
                             "--namespace", "p", "process", str(original)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    fields = result.stdout.strip().split("\t")
    assert fields[0] == h and fields[2:] == ["90", "60"]
    folder = base / ImageKey("p", h).folder
    assert pictures.decode((folder / "x30.jpg").read_bytes()).width == 30
    assert pictures.decode((folder / "w45.webp").read_bytes()).height == 30
    missing = subprocess.run([IMAGES, "--outputs", "x30.jpg", "--local_base_path", str(base), "process",
                              str(tmp_path / "nothing" / "original")], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("images: ")
