"""The status port (in the master) and the --profile debug port (in each worker) under idle
connections: threads and descriptors stay bounded, nothing they accept reaches a worker, and the
server lives through a worker's replacement meanwhile."""
from __future__ import annotations

import os
import resource
import signal
import socket
import time
from contextlib import contextmanager

import pytest
import requests

from imageserver.serving.listeners import MAX_CONNECTIONS
from tests.helpers import assert_healthy, free_port, port_inodes, socket_inodes, wait_until, worker_pids

# A server's usual limit of open files (the test process may have more): with it, main's status
# listener took the master down after ~1,000 idle connections and a worker's replacement.
SERVER_OPEN_FILES = 1024
# Connections made at once: fewer than a listener's accept queue holds (listeners.bind: 64).
ROUND = 32


@contextmanager
def open_files_limit(soft: int):
    """This process's soft limit of open files set to `soft` (processes started meanwhile keep it)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, before[1]), before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


@contextmanager
def idle_connections(port: int, count: int):
    """Up to `count` connections to `port` that send nothing, held open until the block ends. Made
    in rounds the listener's accept queue can hold (a client on this machine makes them faster than a
    server is given the CPU to accept them), so that none waits for a SYN to be sent again; when the
    listener accepts no more, no more are made."""
    connections = []
    try:
        for number in range(count):
            if number % ROUND == 0 and not taken_in(port, 5):
                break
            connections.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield connections
    finally:
        for connection in connections:
            connection.close()


def taken_in(port: int, seconds: float = 15) -> bool:
    """Wait until the listener on `port` has accepted every connection made (its accept queue is
    empty). False after `seconds`: a listener at its limit of open files accepts no more, and the
    test goes on to show what follows."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if accept_queue(port) == 0:
            return True
        time.sleep(0.01)
    return False


def accept_queue(port: int) -> int:
    """How many connections wait in the accept queue of the socket listening on `port`."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"nothing listens on {port}")


def settled(pids: list[int]) -> dict:
    """Each worker's threads and open files once they have stopped changing: a worker may still be
    starting its listener when the server first answers."""
    before = {pid: threads_and_files(pid) for pid in pids}
    for _ in range(40):
        time.sleep(0.25)
        now = {pid: threads_and_files(pid) for pid in pids}
        if now == before:
            return now
        before = now
    return before


def threads_and_files(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def replace_a_worker(server) -> int:
    """SIGKILL one worker; the pid of the one the master starts in its place, once it has booted (it
    loads ImageMagick as it does). Fails if the master exits instead."""
    master = server.process.pid
    before = wait_until(lambda: len(worker_pids(master)) == 2 and worker_pids(master), "two workers", 30)
    os.kill(before[0], signal.SIGKILL)

    def new_worker_booted():
        if server.process.poll() is not None:
            return True
        new = [pid for pid in worker_pids(master) if pid not in before]
        return new and loaded_imagemagick(new[0]) and new[0]

    new_worker = wait_until(new_worker_booted, "a new worker, or the master's exit", 60)
    assert server.process.poll() is None, "the master exited:\n" + server.log()[-3000:]
    return new_worker


def loaded_imagemagick(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libMagickWand" in f.read()
    except OSError:     # it exited
        return False


def answered_promptly(url: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    answer = requests.get(url, timeout=3)
    return answer, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.quiet
def test_the_status_port_survives_1500_idle_connections_and_a_new_worker(start_server):
    status_port = free_port()
    with open_files_limit(SERVER_OPEN_FILES):
        server = start_server("--status_port", str(status_port))
    master = server.process.pid
    calm = settled([master])[master]

    with open_files_limit(4096), idle_connections(status_port, 1500) as connections:
        all_taken = len(connections) == 1500 and taken_in(status_port)
        held = threads_and_files(master)
        new_worker = replace_a_worker(server)

        answer, seconds = answered_promptly(f"http://127.0.0.1:{status_port}/status_check")
        assert answer.status_code == 200 and answer.json()["workers"] == 2, answer.text
        assert_healthy(server)
        leaked = socket_inodes(new_worker) & port_inodes(status_port)
        print(f"\n{len(connections)} idle connections made, all accepted: {all_taken}; the master's "
              f"threads/fds {calm} before, {held} with them, {threads_and_files(master)} after a "
              f"worker's replacement; /status_check in {seconds * 1000:.0f} ms; the new worker's "
              f"status-port sockets: {len(leaked)}")
        assert not leaked
        assert all_taken
        assert held[0] <= calm[0] + MAX_CONNECTIONS and held[1] <= calm[1] + MAX_CONNECTIONS + 1
        assert server.process.poll() is None and "Too many open files" not in server.log()


@pytest.mark.slow
@pytest.mark.quiet
def test_the_debug_port_survives_400_idle_connections_and_a_new_worker(start_server):
    debug_port = free_port()
    with open_files_limit(SERVER_OPEN_FILES):
        server = start_server("--profile", "--profile_port", str(debug_port))
    debug_url = f"http://127.0.0.1:{debug_port}/debug"
    calm = settled(worker_pids(server.process.pid))

    with idle_connections(debug_port, 400) as connections:
        all_taken = len(connections) == 400 and taken_in(debug_port)
        held = {pid: threads_and_files(pid) for pid in calm}
        answer, seconds = answered_promptly(debug_url)
        assert answer.status_code == 200 and answer.text.startswith("worker "), answer.text
        replace_a_worker(server)
        after, after_seconds = answered_promptly(debug_url)
        assert after.status_code == 200, after.text
        assert_healthy(server)
        print(f"\n{len(connections)} idle connections made, all accepted: {all_taken}; the workers' "
              f"threads/fds {calm} before, {held} with them; /debug in {seconds * 1000:.0f} ms, after "
              f"a worker's replacement in {after_seconds * 1000:.0f} ms")
        assert "can't start new thread" not in server.log()
        assert all_taken
        for pid, (threads, files) in held.items():
            assert threads <= calm[pid][0] + MAX_CONNECTIONS and files <= calm[pid][1] + MAX_CONNECTIONS + 1
