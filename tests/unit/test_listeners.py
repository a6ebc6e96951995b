"""The listeners in this process: the stop flag shared with forked children, and the bounds every
listener keeps (connections, time, nothing inherited by a fork)."""
import os
import socket
import threading
import time

import pytest
import requests

from imageserver.core.shared import StopFlag
from imageserver.serving import listeners
from imageserver.serving.listeners import MAX_CONNECTIONS, REQUEST_SECONDS
from tests.helpers import port_inodes, socket_inodes, wait_until


@pytest.mark.spawns
def test_the_stop_flag_is_shared_with_forked_children():
    flag = StopFlag()
    pid = os.fork()
    if pid == 0:
        flag.set()
        os._exit(0)
    os.waitpid(pid, 0)
    assert flag.is_set()


@pytest.fixture
def status_port():
    """A status listener in this process, on a free loopback port."""
    sock = listeners.bind("127.0.0.1", 0, "--status_port")
    server = listeners.serve_in_thread(sock, listeners.status_routes(StopFlag(), lambda: 2), "status")
    yield sock.getsockname()[1]
    server.shutdown()
    server.server_close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def test_idle_connections_keep_neither_threads_nor_a_health_check(status_port):
    before = threading.active_count()
    idle = [connect(status_port) for _ in range(10 * MAX_CONNECTIONS)]
    try:
        started = time.monotonic()
        answer = requests.get(f"http://127.0.0.1:{status_port}/status_check", timeout=3)
        seconds = time.monotonic() - started
        threads = threading.active_count() - before
        print(f"\n{len(idle)} idle connections: {threads} threads more, /status_check in "
              f"{seconds * 1000:.0f} ms")
        assert answer.status_code == 200 and answer.json()["message"] == "OK"
        assert threads <= MAX_CONNECTIONS
    finally:
        for connection in idle:
            connection.close()


@pytest.mark.quiet
def test_a_client_that_sends_nothing_or_trickles_is_dropped(status_port):
    idle, trickling = connect(status_port), connect(status_port)
    trickling.sendall(b"GET /status_check HTTP/1.0\r\nX-Slow: ")
    trickling.settimeout(0.5)
    started = time.monotonic()
    while time.monotonic() - started < REQUEST_SECONDS + 5:
        try:
            trickling.send(b"a")               # one byte every half second, a header never ended
            if trickling.recv(1) == b"":
                break
        except TimeoutError:
            continue
        except OSError:
            break
    seconds = time.monotonic() - started
    print(f"\nthe trickling client dropped after {seconds:.1f} s")
    assert seconds < REQUEST_SECONDS + 1.5
    idle.settimeout(1)
    assert idle.recv(1) == b""                 # dropped as well, having sent nothing
    idle.close()
    trickling.close()


@pytest.mark.spawns
def test_a_forked_child_holds_none_of_the_connections(status_port):
    held = [connect(status_port) for _ in range(5)]
    accepted = wait_until(lambda: len(ours := port_inodes(status_port) & socket_inodes(os.getpid())) == 6
                          and ours, "five connections accepted (and the listening socket)", 5)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, str(len(socket_inodes(os.getpid()) & accepted)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(write_end)
    inherited = int(os.read(read_end, 100))
    os.close(read_end)
    for connection in held:
        connection.close()
    assert inherited == 0
