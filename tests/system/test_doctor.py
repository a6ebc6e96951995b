"""`images doctor`, run as a user would, against real ImageMagick, disk and a UDP socket."""
import socket
import subprocess

from tests.helpers import IMAGES


def doctor(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([IMAGES, *flags, "doctor"], capture_output=True, text=True, timeout=120)


def lines(result: subprocess.CompletedProcess) -> dict:
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip()
            for line in result.stdout.splitlines() if ":" in line}


def test_all_is_well(tmp_path, statsd_listener):
    result = doctor("--local_base_path", str(tmp_path), "--statsd_port", str(statsd_listener.port))
    assert result.returncode == 0, result.stdout + result.stderr
    found = lines(result)
    assert set(found["reads"].split()) >= {"jpeg", "png", "gif", "webp"}
    assert found["writes"].split() == ["jpg", "png", "gif", "webp", "avif"]
    for part in ("ImageMagick", "quantum depth 16", "HDRI", "OpenMP", "libMagickWand"):
        assert part in found["imagemagick"], found["imagemagick"]
    assert "memory" in found["limits"] and "thread 1" in found["limits"]
    assert "writable" in found["disk"]
    assert found["store"].startswith("none")
    assert "PROBLEM" not in result.stdout and found["result"] == "all is well"
    statsd_listener.wait_for("image_server.doctor:1|c")


def test_each_problem_is_said_and_fails_the_exit_code(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = doctor("--local_base_path", str(not_a_folder), "--statsd_port", str(nobody),
                    "--listen", "192.0.2.1")
    assert result.returncode == 1
    found = lines(result)
    assert found["listen"].startswith("PROBLEM: --listen 192.0.2.1 is not an address of this host")
    assert found["disk"].startswith("PROBLEM") and "not writable" in found["disk"]
    assert found["statsd"].startswith("PROBLEM: nothing listens")
    assert found["result"] == "3 problems"


def test_statsd_off_and_a_bad_flag(tmp_path):
    result = doctor("--local_base_path", str(tmp_path), "--statsd_host", "")
    assert result.returncode == 0, result.stdout
    assert lines(result)["statsd"].startswith("off")
    bad = doctor("--local_base_path", str(tmp_path), "--status_port", "70000")
    assert bad.returncode == 2 and "--status_port must be a port number" in bad.stderr
