"""`make chaos` (not part of `make test`): faults injected into a live server under load, then a
check that nothing acknowledged was lost and no file is partial.

    python -m tests.chaos [--seconds 20] [--only crash,disk_full,...]

Faults: worker kills (SIGKILL), crash and restart (SIGKILL of master and workers, started again on
the same folder), disk full (a small tmpfs filled, then freed), store outage (S3 on the moto server,
cut off and back), slow clients (50 trickling connections through nginx). Prints one row per
fault: faults injected, requests, the 503/507 the fault explains, other 5xx, requests left with no
answer, files checked, files lost or partial. Exits 1 unless the last two columns and "other 5xx"
are 0 (and nothing went unanswered where the fault cuts no connection).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

from imageserver.core.paths import ImageKey
from tests import faults
from tests.helpers import free_port, wait_until, worker_pids
from tests.nginx_server import Nginx
from tests.storage_servers import Gate, MotoServer


@dataclass
class Row:
    fault: str
    injected: int = 0
    requests: int = 0
    explained: int = 0          # 503 or 507, as the fault explains
    other_5xx: int = 0
    unanswered: int = 0         # cut, refused or timed out
    checked: int = 0
    lost: list = field(default_factory=list)
    cuts_connections: bool = False

    def count(self, load: faults.Load, explained: tuple = ()) -> None:
        self.requests += load.requests
        self.unanswered += load.errors
        for status, number in load.statuses.items():
            if status in explained:
                self.explained += number
            elif status >= 500:
                self.other_5xx += number

    @property
    def ok(self) -> bool:
        return not self.lost and not self.other_5xx and (self.cuts_connections or not self.unanswered)


class Chaos:
    def __init__(self, folder: str, seconds: float):
        self.folder, self.seconds = folder, seconds
        self.rng = random.Random(7)

    def phase_folder(self, name: str) -> str:
        path = os.path.join(self.folder, name)
        os.makedirs(path)
        return path

    # -- the faults -------------------------------------------------------------------------------

    def worker_kills(self) -> Row:
        row = Row("worker kills (SIGKILL mid-request)", cuts_connections=True)
        folder = self.phase_folder("workers")
        base, log = os.path.join(folder, "public"), os.path.join(folder, "server.log")
        server = faults.launch(base, log)
        load = faults.Load(server.url)
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(self.rng.uniform(0.5, 2))
            workers = worker_pids(server.process.pid)
            if workers:
                os.kill(self.rng.choice(workers), 9)
                row.injected += 1
        load.stop()
        self.finish(row, server, load, base, log)
        return row

    def crash_and_restart(self) -> Row:
        row = Row("crash and restart (SIGKILL master and workers)", cuts_connections=True)
        folder = self.phase_folder("crash")
        base, log = os.path.join(folder, "public"), os.path.join(folder, "server.log")
        port = free_port()
        server = faults.launch(base, log, port=port)
        load = faults.Load(server.url)
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(self.rng.uniform(1, 3))
            faults.kill_everything(server)
            row.injected += 1
            server = faults.launch(base, log, port=port)
        load.stop()
        self.finish(row, server, load, base, log)
        return row

    def disk_full(self) -> Row:
        row = Row("disk full (tmpfs filled, then freed)")
        folder = self.phase_folder("disk")
        disk = os.path.join(folder, "disk")
        with faults.tmpfs(disk, "64m"):
            base, log = os.path.join(disk, "public"), os.path.join(folder, "server.log")
            # No reserve: the disk truly fills, and uploads under way must be rolled back whole.
            server = faults.launch(base, log, "--minimum_free_bytes", "0")
            load = faults.Load(server.url)
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                time.sleep(self.rng.uniform(0.5, 1.5))
                filler = faults.fill(disk, leave=self.rng.choice((0, 100_000, 400_000)))
                row.injected += 1
                time.sleep(self.rng.uniform(1, 2))
                os.unlink(filler)
            load.stop()
            self.finish(row, server, load, base, log, explained=(507,))
        return row

    def store_outage(self) -> Row:
        row = Row("store outage (S3 cut off, then back)")
        folder = self.phase_folder("store")
        moto = MotoServer(free_port(), os.path.join(folder, "moto.log"))
        gate = Gate(int(moto.url.rsplit(":", 1)[1]))
        bucket = f"images-{uuid.uuid4().hex[:12]}"
        client = moto.client()
        client.create_bucket(Bucket=bucket)
        try:
            base, log = os.path.join(folder, "public"), os.path.join(folder, "server.log")
            server = faults.launch(
                base, log, "--aws_bucket", bucket, "--s3_endpoint_url", gate.url,
                "--aws_access_key_id", "testing", "--aws_secret_key", "testing",
                "--remote_base_path", "images", "--upload_retry_seconds", "1",
                "--store_timeout", "2", "--store_retries", "1")
            load = faults.Load(server.url)
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                time.sleep(self.rng.uniform(1, 2))
                gate.shut()
                row.injected += 1
                time.sleep(self.rng.uniform(1, 3))
                gate.open()
            load.stop()
            try:
                wait_until(lambda: server.get("/status_check").json()["pending_uploads"] == 0,
                           seconds=60, step=0.5)
            except AssertionError:
                row.lost.append("uploads still pending a minute after the store came back")
            row.lost += stored_lost(client, bucket, load)
            self.finish(row, server, load, base, log, explained=(503,), local_copies=False)
        finally:
            gate.stop()
            moto.stop()
        return row

    def slow_clients(self) -> Row:
        row = Row("slow clients (50 trickling through nginx)")
        folder = self.phase_folder("slow")
        base, log = os.path.join(folder, "public"), os.path.join(folder, "server.log")
        server = faults.launch(base, log)
        nginx = Nginx(server, folder, worker_connections=1024)
        slow = faults.SlowClients("127.0.0.1", nginx.port, 50)
        row.injected = 50
        try:
            # A request not answered within 15 s counts as unanswered: a held worker would take 60.
            load = faults.Load(nginx.url, timeout=15)
            time.sleep(self.seconds)
            load.stop()
        finally:
            slow.stop()
            nginx.stop()
        row.lost += [f"{slow.cut} slow clients cut off"] if slow.cut else []
        self.finish(row, server, load, base, log)
        return row

    # -- after each fault -------------------------------------------------------------------------

    def finish(self, row: Row, server, load: faults.Load, base: str, log: str, explained=(),
               local_copies: bool = True) -> None:
        """Stop the server, start it again on the same folder (which clears what a killed worker
        left), then check every file and every acknowledged one."""
        server.stop()
        again = faults.launch(base, log)
        again.stop()
        row.count(load, explained)
        row.checked, partial = faults.check_files(base)
        row.lost += partial
        if local_copies:
            row.lost += load.lost(base)
        with open(log, errors="replace") as f:
            tracebacks = f.read().count("Traceback")
        if tracebacks:
            row.lost.append(f"{tracebacks} tracebacks in the server log")


def stored_lost(client, bucket: str, load: faults.Load) -> list[str]:
    """Acknowledged images and outputs missing from the store, or not byte for byte."""
    lost = []
    for digest in load.uploads:
        key = ImageKey("p", digest).remote_file("images", "original")
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            lost.append(f"not in the store: {key}")
            continue
        if hashlib.md5(body).hexdigest() != digest:
            lost.append(f"not byte for byte in the store: {key}")
    for digest, name in [*((d, n) for d in load.uploads for n in ("info.json", *load.OUTPUTS)),
                         *load.made]:
        key = ImageKey("p", digest).remote_file("images", name)
        try:
            client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError:
            lost.append(f"not in the store: {key}")
    return lost


FAULTS = {"worker_kills": Chaos.worker_kills, "crash": Chaos.crash_and_restart,
          "disk_full": Chaos.disk_full, "store_outage": Chaos.store_outage,
          "slow_clients": Chaos.slow_clients}


def print_table(rows: list[Row]) -> None:
    print("\n| fault | faults injected | requests | 503/507 explained | other 5xx | unanswered "
          "| files checked | lost or partial |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row.fault} | {row.injected} | {row.requests:,} | {row.explained:,} | "
              f"{row.other_5xx} | {row.unanswered}{' (cut by the fault)' if row.cuts_connections else ''} "
              f"| {row.checked:,} | {len(row.lost)} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="seconds of load per fault")
    parser.add_argument("--only", default=",".join(FAULTS), help="faults to run, by name")
    options = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="imageserver-chaos-")
    rows = []
    try:
        chaos = Chaos(folder, options.seconds)
        for name in options.only.split(","):
            print(f"{name} ...", flush=True)
            rows.append(FAULTS[name](chaos))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_table(rows)
    problems = [f"{row.fault}: {problem}" for row in rows for problem in row.lost[:10]]
    problems += [f"{row.fault}: {row.other_5xx} unexplained 5xx" for row in rows if row.other_5xx]
    problems += [f"{row.fault}: {row.unanswered} requests unanswered" for row in rows
                 if row.unanswered and not row.cuts_connections]
    print("\nOK" if not problems else "\nPROBLEMS:\n  " + "\n  ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
