"""Debian's nginx on a free loopback port, with the block from `images nginx_config` in front of a
running `images server`: for the nginx tests and `python -m tests.chaos`."""
from __future__ import annotations

import os
import shutil
import subprocess

import requests

from tests.helpers import IMAGES, free_port, wait_until_up

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """nginx in front of `app`, with the block `images nginx_config` writes for the app's settings and
    `flags`; everything it keeps (config, pid, logs, temporary bodies) is in `folder`."""

    def __init__(self, app, folder, *flags: str, worker_connections: int = 64):
        self.folder = str(folder)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        block = subprocess.run(
            [IMAGES, "--listen", "127.0.0.1", "--port", app.url.rsplit(":", 1)[1],
             "--local_base_path", app.base_path, "--nginx_listen", f"127.0.0.1:{self.port}",
             "--nginx_access_log", self._path("access.log"), *flags, "nginx_config"],
            capture_output=True, text=True, check=True).stdout
        with open(self._path("imageserver.conf"), "w") as f:
            f.write(block)
        with open(self._path("nginx.conf"), "w") as f:
            f.write(nginx_conf(self.folder, worker_connections))
        self.process = subprocess.Popen([NGINX, "-p", self.folder, "-c", "nginx.conf",
                                         "-e", self._path("error.log"), "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_until_up(self.url + "/status_check", self.process)
        except RuntimeError as error:
            self.stop()
            with open(self._path("error.log"), errors="replace") as f:
                raise RuntimeError(f"nginx: {error}; its error log:\n{f.read()}") from error

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=60, **kwargs)

    def access_log(self) -> list[str]:
        with open(self._path("access.log")) as f:
            return f.read().splitlines()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def workers_user() -> str:
    """nginx's `user` line. Test and bench folders are private to their owner (under /root in the
    Debian 13 root): when the master runs as root, so must its workers, who would otherwise run as
    nobody, fail to read the store, and pass every request for a file on to the app."""
    return "user root;\n" if os.geteuid() == 0 else ""


def nginx_conf(folder, worker_connections: int = 64) -> str:
    """A whole nginx.conf that keeps everything (pid, logs, temporary bodies) in `folder`."""
    user = workers_user()
    temp = "\n".join(f"    {kind}_temp_path {folder}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections {worker_connections}; }}
http {{
{temp}
    include {folder}/imageserver.conf;
}}
"""
