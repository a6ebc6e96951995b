"""The servers the bench drives: `images server` with 2 workers, and nginx in front of it when the
`images nginx_config` command exists. Also the CPU time and peak RSS of any server's workers, from
/proc (the peer's too: bench/peer.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

from tests.helpers import IMAGES, free_port, stop_process, wait_until_up  # as the soak test does
from tests.nginx_server import workers_user

WORKERS = 2


class Workers:
    """The /proc figures of a server's worker processes (the children of `self.process`)."""

    process: subprocess.Popen
    workers: list[int]

    def stop(self) -> None:
        """Stop the server gracefully, or kill it after 40 s."""
        stop_process(self.process, 40)

    def _wait_for_workers(self, count: int) -> list[int]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = self._live_workers()
            if len(children) == count:
                return sorted(children)
            time.sleep(0.1)
        raise RuntimeError(f"the {count} workers did not start")

    def reset_peak_rss(self) -> None:
        """Start counting each worker's peak RSS afresh (Linux: 5 > /proc/PID/clear_refs)."""
        for pid in self._live_workers():
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")

    def peak_rss_mib(self) -> list[float]:
        """Each live worker's peak resident set since the last reset, in MiB."""
        peaks = []
        for pid in sorted(self._live_workers()):
            with open(f"/proc/{pid}/status") as f:
                line = next(line for line in f if line.startswith("VmHWM:"))
            peaks.append(round(int(line.split()[1]) / 1024, 1))
        return peaks

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the workers have used so far: a cost per request that other
        programs on a shared machine do not inflate, unlike the wall-clock figures. The workers
        live now, and those that were retired and reaped (a gunicorn worker is replaced after
        max_requests): the master's children's times."""
        ticks = _children_ticks(self.process.pid)
        for pid in self._live_workers():
            try:
                ticks += _own_ticks(pid)
            except FileNotFoundError:
                pass    # retired since it was listed: counted in its parent's children's times
        return ticks / os.sysconf("SC_CLK_TCK")

    def _live_workers(self) -> set[int]:
        """The server's worker processes now (the children of any of its threads)."""
        children = set()
        for task in os.listdir(f"/proc/{self.process.pid}/task"):
            with open(f"/proc/{self.process.pid}/task/{task}/children") as f:
                children.update(int(pid) for pid in f.read().split())
        return children


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _own_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12])          # utime, stime


def _children_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[13]) + int(fields[14])          # cutime, cstime: reaped children


class ImageServer(Workers):
    """`images server` on a free loopback port, storing under `base`, with these `flags`."""

    def __init__(self, base: str, log_path: str, *flags: str):
        self.base, self.port = base, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # No budget of outputs per image: the workloads ask for hundreds of sizes of one source.
        self.flags = ["--listen", "127.0.0.1", "--port", str(self.port), "--local_base_path", base,
                      "--workers", str(WORKERS), "--maximum_variants", "0", *flags]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen([IMAGES, *self.flags, "server"], stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_until_up(self.url + "/status_check", self.process)
        self.workers = self._wait_for_workers(WORKERS)


NGINX_CONF = """\
{user}worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{block}
}}
"""


class Nginx:
    """Debian's nginx with the block printed by `images nginx_config`, in front of `server`."""

    def __init__(self, server: ImageServer, prefix: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        usage = subprocess.run([IMAGES, "--help"], capture_output=True, text=True, timeout=30).stdout
        if "nginx_config" not in usage:
            raise Unavailable("this build has no `images nginx_config` command")
        block = subprocess.run(
            [IMAGES, *server.flags, "--nginx_listen", f"127.0.0.1:{self.port}", "nginx_config"],
            capture_output=True, text=True, timeout=30)
        if block.returncode != 0:
            raise Unavailable("`images nginx_config` is not available here ("
                              + (block.stderr.strip().splitlines() or ["no output"])[-1] + ")")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise Unavailable("nginx is not installed")
        shutil.rmtree(prefix, ignore_errors=True)
        os.makedirs(prefix)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(user=workers_user(), workers=WORKERS, prefix=prefix,
                                      block=block.stdout))
        with open(os.path.join(prefix, "nginx.log"), "wb") as log:
            self.process = subprocess.Popen([nginx, "-p", prefix, "-c", conf], stdout=log,
                                            stderr=subprocess.STDOUT)
        try:
            wait_until_up(self.url + "/status_check", self.process, 10)
        except RuntimeError as error:
            raise Unavailable(f"nginx with the generated block did not start: {error}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


class Unavailable(Exception):
    """A part of the bench that cannot run here; its row is skipped with this note."""
