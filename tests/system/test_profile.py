"""--profile: a worker's CPU profile (pstats format) and heap top, on localhost only."""
import pstats
import threading

import requests

from tests.helpers import folder_of, free_port


def test_a_cpu_profile_of_the_requests_and_the_heap_top(start_server, photo_jpeg, tmp_path):
    port = free_port()
    # New sizes for 2 s: more than one image's variant budget.
    server = start_server("--workers", "1", "--profile", "--profile_port", str(port),
                          "--maximum_variants", "0")
    debug = f"http://127.0.0.1:{port}"
    info = server.post("/p", data=photo_jpeg).json()
    folder = folder_of(info["hash"])

    result = {}
    taking = threading.Thread(target=lambda: result.update(
        profile=requests.get(debug + "/debug/profile?seconds=2", timeout=120)))
    taking.start()
    size = 100
    while taking.is_alive():      # outputs made while the profile is being taken
        assert server.get(f"{folder}/x{size}.jpg").status_code == 200
        size += 1
    profile = result["profile"]
    assert profile.status_code == 200
    (tmp_path / "worker.prof").write_bytes(profile.content)
    stats = pstats.Stats(str(tmp_path / "worker.prof"))
    functions = {(file.rsplit("/", 1)[-1], name) for file, _, name in stats.stats}
    assert ("pipeline.py", "render") in functions

    heap = requests.get(debug + "/debug/heap?limit=5", timeout=60)
    assert heap.status_code == 200 and "resident" in heap.text
    assert len([line for line in heap.text.splitlines() if "KiB" in line]) == 5

    assert requests.get(debug + "/debug/profile?seconds=zero", timeout=60).status_code == 400
    assert listening_addresses(port) == {"127.0.0.1"}


def test_no_debug_listener_without_the_flag(start_server):
    port = free_port()
    start_server("--profile_port", str(port))
    assert listening_addresses(port) == set()


def listening_addresses(port: int) -> set:
    """The local addresses with a TCP socket listening on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
                              if len(address) == 8 else address)
    return found
