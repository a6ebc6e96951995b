"""Remote stores for the tests, on loopback: moto's S3 server (a subprocess), a faithful Manta test
server, a gate that cuts a store off, and SSH key pairs made for the occasion."""
from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tests.helpers import stop_process, wait_until_up

# -- SSH keys --------------------------------------------------------------------------------------


@dataclass
class KeyPair:
    """A private key on disk (OpenSSH format) and what Manta knows of it."""
    kind: str                  # "rsa" or "ecdsa"
    private_path: str
    public_key: object         # cryptography public key
    fingerprint: str           # MD5, aa:bb:...
    public_line: str           # "ssh-rsa AAAA..."

    def write_encrypted(self, path: str, passphrase: bytes) -> str:
        """The same key in a file that needs a passphrase."""
        with open(self.private_path, "rb") as f:
            key = serialization.load_ssh_private_key(f.read(), None)
        with open(path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                      serialization.BestAvailableEncryption(passphrase)))
        os.chmod(path, 0o600)
        return path


def make_key_pair(folder: str, kind: str) -> KeyPair:
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    path = os.path.join(folder, f"id_{kind}")
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                  serialization.NoEncryption()))
    os.chmod(path, 0o600)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    digest = hashlib.md5(base64.b64decode(line.split()[1])).digest()
    fingerprint = ":".join(f"{byte:02x}" for byte in digest)
    return KeyPair(kind, path, key.public_key(), fingerprint, line)


# -- the Manta test server ------------------------------------------------------------------------

SKEW_SECONDS = 300
DIRECTORY_TYPE = "application/json; type=directory"
SIGNATURE_FIELDS = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class MantaState:
    """What the Manta test server holds: one account, its keys, its tree; and a switch to refuse."""
    login: str
    keys: dict                                   # fingerprint -> KeyPair
    tree: dict = field(default_factory=dict)     # path -> {"type": ..., ...}
    requests: list = field(default_factory=list)  # (method, path, status)
    refuse_with: int = 0                         # answer every request with this status when set
    fail_next: int = 0                           # answer this many next requests with 503
    refuse_puts_with: int = 0                    # answer every PUT of an object with this status
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        for path in (f"/{self.login}", f"/{self.login}/stor", f"/{self.login}/public"):
            self.tree[path] = {"type": "directory", "mtime": _now()}

    def object(self, path: str) -> dict | None:
        entry = self.tree.get(path)
        return entry if entry and entry["type"] == "object" else None


class MantaHandler(BaseHTTPRequestHandler):
    """Manta's REST API, the part the server uses: PutDirectory, PutObject, GetObject, ListDirectory,
    HEAD, DeleteObject, DeleteDirectory; every request signed (http-signature over the Date line)
    with a key of the account."""
    protocol_version = "HTTP/1.1"
    # Headers and body in one write: written apart, Nagle and delayed ACKs hold each answer ~40 ms.
    wbufsize = 1 << 16

    def do_PUT(self):
        self._answer(self._put)

    def do_GET(self):
        self._answer(self._get)

    def do_HEAD(self):
        self._answer(self._get)

    def do_DELETE(self):
        self._answer(self._delete)

    def log_message(self, *args):
        pass

    # -- dispatch ----------------------------------------------------------------------------

    def _answer(self, operation):
        state: MantaState = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0].rstrip("/")
        with state.lock:
            failing = state.refuse_with or (503 if state.fail_next else 0)
            if self.command == "PUT" and self.headers.get("Content-Type") != DIRECTORY_TYPE:
                failing = failing or state.refuse_puts_with
            state.fail_next = max(0, state.fail_next - 1)
        if failing:
            status, headers, payload = _error(failing, "ServiceUnavailable", "down for tests")
        else:
            status, headers, payload = self._authenticate(state, path) or operation(state, path, body)
        with state.lock:
            state.requests.append((self.command, path, status))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _authenticate(self, state: MantaState, path: str):
        """None when the request is signed by a key of the account; else the error to answer."""
        authorization = self.headers.get("Authorization", "")
        date = self.headers.get("Date")
        if not authorization.startswith("Signature "):
            return _error(401, "AuthorizationRequired", "Authorization header missing")
        if not date:
            return _error(400, "BadRequest", "Date header missing")
        try:
            sent = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return _error(400, "BadRequest", "Date header invalid")
        if abs(sent - time.time()) > SKEW_SECONDS:
            return _error(403, "RequestTimeTooSkewed", "Date is too far from now")
        fields = dict(SIGNATURE_FIELDS.findall(authorization))
        match = re.fullmatch(r"/([^/]+)/keys/(.+)", fields.get("keyId", ""))
        if not match or match.group(1) != state.login or match.group(2) not in state.keys:
            return _error(403, "KeyDoesNotExist", f"no key {fields.get('keyId')!r}")
        key = state.keys[match.group(2)]
        expected = "rsa-sha256" if key.kind == "rsa" else "ecdsa-sha256"
        if fields.get("algorithm", "").lower() != expected:
            return _error(403, "InvalidAlgorithm", f"{key.kind} keys sign with {expected}")
        lines = []
        for name in fields.get("headers", "date").lower().split():
            if name == "(request-target)":
                lines.append(f"(request-target): {self.command.lower()} {self.path}")
            else:
                lines.append(f"{name}: {self.headers.get(name, '')}")
        try:
            signature = base64.b64decode(fields.get("signature", ""), validate=True)
            if key.kind == "rsa":
                key.public_key.verify(signature, "\n".join(lines).encode(), padding.PKCS1v15(),
                                      hashes.SHA256())
            else:
                key.public_key.verify(signature, "\n".join(lines).encode(), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return _error(403, "InvalidSignature", "the signature does not verify")
        if path != f"/{state.login}" and not path.startswith(f"/{state.login}/"):
            return _error(403, "AuthorizationFailed", f"{path} is not in this account")
        return None

    # -- operations --------------------------------------------------------------------------

    def _put(self, state: MantaState, path: str, body: bytes):
        parent = path.rsplit("/", 1)[0]
        with state.lock:
            if path.count("/") < 3:
                return _error(400, "OperationNotAllowedOnRootDirectory", f"{path} is a root")
            if state.tree.get(parent, {}).get("type") != "directory":
                return _error(404, "DirectoryDoesNotExist", f"{parent} does not exist")
            existing = state.tree.get(path)
            if self.headers.get("Content-Type") == DIRECTORY_TYPE:
                if existing and existing["type"] != "directory":
                    return _error(400, "ParentNotDirectory", f"{path} is an object")
                if not existing:
                    state.tree[path] = {"type": "directory", "mtime": _now()}
                return 204, {}, b""
            if existing and existing["type"] == "directory":
                return _error(400, "DirectoryOperation", f"{path} is a directory")
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            if self.headers.get("Content-MD5", md5) != md5:
                return _error(400, "ContentMD5Mismatch", "Content-MD5 does not match the body")
            state.tree[path] = {"type": "object", "data": body, "md5": md5, "mtime": _now(),
                                "content_type": self.headers.get("Content-Type",
                                                                 "application/octet-stream"),
                                "headers": dict(self.headers)}
        return 204, {"Computed-MD5": md5}, b""

    def _delete(self, state: MantaState, path: str, body: bytes):
        """DeleteObject, or DeleteDirectory of an empty directory: as Manta, a directory that holds
        anything is refused (DirectoryNotEmpty), and so are the account's root directories."""
        with state.lock:
            entry = state.tree.get(path)
            if entry is None:
                return _error(404, "ResourceNotFound", f"{path} was not found")
            if path.count("/") < 3:
                return _error(400, "OperationNotAllowedOnRootDirectory", f"{path} is a root")
            if entry["type"] == "directory" and any(name.rsplit("/", 1)[0] == path for name in state.tree):
                return _error(400, "DirectoryNotEmpty", f"{path} is not empty")
            del state.tree[path]
        return 204, {}, b""

    def _get(self, state: MantaState, path: str, body: bytes):
        with state.lock:
            entry = state.tree.get(path)
            if entry is None:
                return _error(404, "ResourceNotFound", f"{path} was not found")
            if entry["type"] == "object":
                return 200, {"Content-Type": entry["content_type"], "Content-MD5": entry["md5"]}, \
                    entry["data"]
            children = sorted((name[len(path) + 1:], value) for name, value in state.tree.items()
                              if name.rsplit("/", 1)[0] == path and name != path)
        query = dict(part.split("=", 1) for part in self.path.partition("?")[2].split("&") if "=" in part)
        limit = min(int(query.get("limit", 256)), 1024)
        marker = requests.utils.unquote(query.get("marker", ""))
        listed = [(name, value) for name, value in children if name >= marker][:limit]
        lines = []
        for name, value in listed:
            entry = {"name": name, "type": value["type"], "mtime": value["mtime"]}
            if value["type"] == "object":
                entry.update(size=len(value["data"]), etag=value["md5"])
            lines.append(json.dumps(entry))
        payload = "".join(line + "\n" for line in lines).encode()
        return 200, {"Content-Type": "application/x-json-stream; type=directory",
                     "Result-Set-Size": str(len(children))}, payload


def _error(status: int, code: str, message: str):
    return status, {"Content-Type": "application/json"}, \
        json.dumps({"code": code, "message": message}).encode()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class MantaTestServer:
    def __init__(self, login: str, keys: list[KeyPair]):
        self.state = MantaState(login, {key.fingerprint: key for key in keys})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), MantaHandler)
        self.httpd.daemon_threads = True
        self.httpd.state = self.state
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def names(self, folder: str) -> list[str]:
        """Objects directly in `/<login>/<folder>`."""
        prefix = f"/{self.state.login}/{folder.strip('/')}/"
        with self.state.lock:
            return sorted(path[len(prefix):] for path, entry in self.state.tree.items()
                          if path.startswith(prefix) and "/" not in path[len(prefix):]
                          and entry["type"] == "object")

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# -- moto's S3 server -----------------------------------------------------------------------------


class MotoServer:
    """`python -m moto.server` on a free loopback port: a real S3 endpoint in another process."""

    def __init__(self, port: int, log_path: str):
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(self.url + "/moto-api/", self.process, seconds=60)
        except RuntimeError as error:
            raise RuntimeError(f"moto_server: {error}") from error

    def client(self):
        import boto3
        return boto3.session.Session().client(
            "s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing")

    def stop(self):
        stop_process(self.process, 20)
        self.log.close()


# -- a gate that cuts a store off ------------------------------------------------------------------


class Gate:
    """A TCP forwarder on loopback: open, it passes connections to the target; shut, it cuts the
    connections it carries and hangs up on every new one at once, as a store that is down does."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.is_open = True
        self.links: set = set()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def shut(self):
        with self.lock:
            self.is_open = False
            links, self.links = self.links, set()
        for link in links:
            link.cut()

    def open(self):
        self.is_open = True

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.is_open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream, self)
            with self.lock:
                # Shut while this connection was being made: it must not outlive the shutting.
                if not self.is_open:
                    client.close()
                    upstream.close()
                    continue
                self.links.add(link)
            link.start()

    def stop(self):
        self.shut()
        self.listener.close()


class _Link:
    """One forwarded connection: two pumps; the last to end closes both sockets."""

    def __init__(self, client: socket.socket, upstream: socket.socket, gate: Gate):
        self.sockets = (client, upstream)
        self.gate = gate
        self.running = 2
        self.lock = threading.Lock()

    def start(self):
        client, upstream = self.sockets
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def cut(self):
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        self.cut()
        with self.lock:
            self.running -= 1
            last = self.running == 0
        if last:
            for sock in self.sockets:
                sock.close()
            with self.gate.lock:
                self.gate.links.discard(self)
