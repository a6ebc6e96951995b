"""Joyent's Manta, through its REST API with requests; requests signed with an SSH key (paramiko).

Each request carries `Date` and `Authorization: Signature keyId="/<user>/keys/<fingerprint>",
algorithm="rsa-sha256",signature="<base64>"`, the signature being of the line `date: <Date>`. The key
is the file --sdc_identity or, when that cannot be loaded (a passphrase, say), the ssh-agent's key
with the fingerprint --manta_key_id. Objects live at `/<user>/<remote path>`, and an object's folder
must exist before it is written (PutDirectory, parents first). The signing is the session's auth
(`Signer`), and a request that Manta throttles or fails is tried again by urllib3 (`Backoff`).
"""
from __future__ import annotations

import base64
import builtins
import hashlib
import json
import random
import threading
from email.utils import formatdate

import paramiko
import requests
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.util.retry import Retry

from imageserver.core import files
from imageserver.core.errors import NotFound, SettingsError, StoreError, Unavailable
from imageserver.core.paths import CACHE_CONTROL
from imageserver.core.settings import Settings
from imageserver.storage.base import Store

DIRECTORY_TYPE = "application/json; type=directory"
RETRIED_STATUSES = {429, 500, 502, 503, 504}
PAGE = 1000
# How Manta refuses to delete a directory that still holds entries.
NOT_EMPTY = {"DirectoryNotEmpty", "DirectoryNotEmptyError"}
# The http-signature algorithm for each SSH key type Manta accepts.
ALGORITHMS = {"ssh-rsa": "rsa-sha256", "ecdsa-sha2-nistp256": "ecdsa-sha256",
              "ecdsa-sha2-nistp384": "ecdsa-sha384", "ecdsa-sha2-nistp521": "ecdsa-sha512"}


class MantaStore(Store):
    def __init__(self, settings: Settings):
        for name in ("manta_user", "manta_key_id"):
            if not getattr(settings, name):
                raise SettingsError(f"--manta_url needs --{name}")
        if settings.remote_base_path.strip("/").split("/")[0] not in ("stor", "public"):
            raise SettingsError("with Manta, --remote_base_path must start with stor/ or public/, "
                                f"not {settings.remote_base_path!r}")
        self.base_url = settings.manta_url.rstrip("/")
        self.durable = not settings.no_fsync     # files flushed to disk before they count as written
        self.user = settings.manta_user
        self.timeout = settings.store_timeout
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.auth = Signer(settings.manta_user, settings.manta_key_id, settings.sdc_identity)
        # Every method is tried again: the store only GETs, HEADs, PUTs and DELETEs whole objects
        # (a DELETE tried again after it was done is a 404, taken as done). A try again is the same
        # request, Date and signature included: Manta allows minutes of clock skew.
        retrying = HTTPAdapter(max_retries=Backoff(
            total=settings.store_retries, status_forcelist=RETRIED_STATUSES, allowed_methods=None,
            raise_on_status=False, respect_retry_after_header=False))
        self.session.mount("http://", retrying)
        self.session.mount("https://", retrying)

    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        path = self._path(remote_path)
        headers = {"Content-Type": content_type, "Content-MD5": _md5_base64(local_path),
                   "Cache-Control": CACHE_CONTROL}
        answer = self._request("PUT", path, headers=headers, body_path=local_path)
        if _missing_parent(answer):
            self._put_directory(path.rsplit("/", 1)[0])
            answer = self._request("PUT", path, headers=headers, body_path=local_path)
        _check(answer, f"storing {path}")

    def get(self, remote_path: str, local_path: str) -> None:
        path = self._path(remote_path)
        answer = self._request("GET", path, stream=True)
        with answer:
            if answer.status_code == 404:
                raise NotFound(f"Manta: {path}: not found")
            _check(answer, f"fetching {path}")
            digest = hashlib.md5()
            with files.replacing(local_path, durable=self.durable) as temp, open(temp, "wb") as out:
                try:
                    for chunk in answer.iter_content(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                except requests.RequestException as error:
                    raise Unavailable(f"Manta broke off {path}: {type(error).__name__}") from None
                expected = answer.headers.get("Content-MD5")
                if expected and expected != base64.b64encode(digest.digest()).decode():
                    raise StoreError(f"Manta sent {path} damaged (its MD5 does not match)")

    def list(self, remote_folder: str) -> list[str]:
        path = self._path(remote_folder.rstrip("/"))
        names: list[str] = []
        marker = None
        while True:
            params = {"limit": PAGE, **({"marker": marker} if marker else {})}
            answer = self._request("GET", path, params=params,
                                   headers={"Accept": "application/x-json-stream"})
            if answer.status_code == 404:
                return names
            _check(answer, f"listing {path}")
            entries = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
            fresh = [entry for entry in entries if entry["name"] != marker]
            names += [entry["name"] for entry in fresh if entry.get("type") == "object"]
            if len(entries) < PAGE or not fresh:
                return names
            marker = entries[-1]["name"]

    def make_folder(self, remote_folder: str) -> None:
        self._put_directory(self._path(remote_folder.rstrip("/")))

    def delete(self, remote_path: str) -> None:
        path = self._path(remote_path)
        answer = self._request("DELETE", path)
        if answer.status_code != 404:   # gone already: a purge may be done twice
            _check(answer, f"deleting {path}")

    def exists(self, remote_path: str) -> bool:
        path = self._path(remote_path)
        answer = self._request("HEAD", path)
        if answer.status_code == 404:
            return False
        _check(answer, f"looking up {path}")
        return True

    def remove_folder(self, remote_folder: str) -> None:
        """DeleteDirectory: Manta refuses it while the folder holds anything (DirectoryNotEmpty),
        which leaves a folder shared with other images (or written again meanwhile) as it is."""
        path = self._path(remote_folder.rstrip("/"))
        answer = self._request("DELETE", path)
        if answer.status_code == 404 or _code(answer) in NOT_EMPTY:
            return
        _check(answer, f"removing folder {path}")

    def url(self, remote_path: str, base_url: str) -> str:
        return super().url(remote_path, base_url or f"{self.base_url}/{self.user}")

    def problems(self) -> builtins.list[str]:
        try:
            _check(self._request("HEAD", f"/{self.user}/stor"), "reaching the account")
        except (StoreError, Unavailable) as error:
            return [error.message]
        return []

    # -- helpers ------------------------------------------------------------------------------

    def _path(self, remote_path: str) -> str:
        return f"/{self.user}/{remote_path.strip('/')}"

    def _put_directory(self, path: str) -> None:
        """PutDirectory, making missing parents first (Manta does not)."""
        headers = {"Content-Type": DIRECTORY_TYPE}
        answer = self._request("PUT", path, headers=headers)
        if _missing_parent(answer) and path.count("/") > 2:
            self._put_directory(path.rsplit("/", 1)[0])
            answer = self._request("PUT", path, headers=headers)
        _check(answer, f"making folder {path}")

    def _request(self, method: str, path: str, headers: dict | None = None,
                 body_path: str | None = None, params: dict | None = None,
                 stream: bool = False) -> requests.Response:
        """One signed request (tried again by the session's adapter while Manta throttles or fails)."""
        url = self.base_url + path
        try:
            if body_path is None:
                answer = self.session.request(method, url, headers=headers, params=params,
                                              stream=stream, timeout=self.timeout)
            else:
                with open(body_path, "rb") as body:
                    answer = self.session.request(method, url, headers=headers, data=body,
                                                  timeout=self.timeout)
        except requests.RequestException as error:
            raise Unavailable(f"Manta cannot be reached: {method} {path}: "
                              f"{type(error).__name__}") from None
        if answer.status_code in RETRIED_STATUSES:
            failure = _refusal(answer, f"{method} {path}")    # still failing after the last try
            answer.close()
            raise failure
        return answer


class Backoff(Retry):
    """urllib3's Retry, waiting 0.2 x 2^n seconds (at most 5) before try n, each wait cut by up to
    half at random so that servers that failed together do not all come back together."""

    def get_backoff_time(self) -> float:
        return min(5.0, 0.2 * 2 ** len(self.history)) * random.uniform(0.5, 1.0)


class Signer(AuthBase):
    """The auth of every request: signs its Date line with the account's SSH key, from its file or
    from the ssh-agent."""

    def __init__(self, user: str, key_id: str, identity_path: str):
        self.key = load_key(key_id, identity_path)
        self.key_id = f"/{user}/keys/{key_id}"
        self.algorithm = ALGORITHMS[self.key.get_name()]
        self.ssh_algorithm = "rsa-sha2-256" if self.key.get_name() == "ssh-rsa" else None
        self.lock = threading.Lock()    # one agent connection: one signing at a time

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        date = formatdate(usegmt=True)
        request.headers["Date"] = date
        request.headers["Authorization"] = self.authorize(date)
        return request

    def authorize(self, date: str) -> str:
        with self.lock:
            signed = self.key.sign_ssh_data(f"date: {date}".encode(), self.ssh_algorithm)
        signature = http_signature(signed if isinstance(signed, bytes) else signed.asbytes())
        return (f'Signature keyId="{self.key_id}",algorithm="{self.algorithm}",'
                f'signature="{base64.b64encode(signature).decode()}"')


def http_signature(ssh_signature: bytes) -> bytes:
    """The SSH signature blob (type name, then signature) as http-signature wants it: raw RSA bytes,
    or ECDSA's (r, s) as DER."""
    message = paramiko.Message(ssh_signature)
    kind = message.get_text()
    blob = message.get_binary()
    if kind.startswith("ecdsa-"):
        numbers = paramiko.Message(blob)
        return encode_dss_signature(numbers.get_mpint(), numbers.get_mpint())
    return blob


def load_key(key_id: str, identity_path: str):
    """The private key with fingerprint `key_id`: from the file, else from the ssh-agent."""
    reason = "no --sdc_identity given"
    if identity_path:
        try:
            key = paramiko.PKey.from_path(identity_path)
        except (OSError, paramiko.SSHException, ValueError, TypeError) as error:
            reason = f"--sdc_identity {identity_path} cannot be loaded ({error})"  # a passphrase, say
        else:
            _check_key(key, key_id, f"the key in {identity_path}")
            return key
    try:
        keys = paramiko.Agent().get_keys()
    except paramiko.SSHException as error:
        keys, reason = (), f"{reason}; the ssh-agent cannot be asked ({error})"
    for key in keys:
        if key_id in fingerprints(key):
            _check_key(key, key_id, "the ssh-agent's key")
            return key
    raise SettingsError(f"no Manta key {key_id}: {reason}, and the ssh-agent has no key with that "
                        f"fingerprint")


def fingerprints(key) -> set:
    """The ways --manta_key_id may name a key: MD5 `aa:bb:...` (with or without `MD5:`), SHA256."""
    md5 = ":".join(f"{byte:02x}" for byte in hashlib.md5(key.asbytes()).digest())
    sha256 = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return {md5, f"MD5:{md5}", f"SHA256:{sha256}"}


def _check_key(key, key_id: str, what: str) -> None:
    if key_id not in fingerprints(key):
        raise SettingsError(f"{what} has fingerprint {sorted(fingerprints(key))[0]}, "
                            f"not --manta_key_id {key_id}")
    if key.get_name() not in ALGORITHMS:
        raise SettingsError(f"{what} is {key.get_name()}: Manta signs with RSA or ECDSA keys")


def _md5_base64(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def _missing_parent(answer: requests.Response) -> bool:
    return answer.status_code == 404 and _code(answer) == "DirectoryDoesNotExist"


def _code(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("code", ""))
    except ValueError:
        return ""


def _check(answer: requests.Response, doing: str) -> None:
    if answer.status_code >= 300:
        raise _refusal(answer, doing)


def _refusal(answer: requests.Response, doing: str):
    """Manta's error answer as ours: 429 and 503 are 503 (try later), others a refusal (502)."""
    try:
        body = answer.json()
        detail = f"{body.get('code', '')}: {body.get('message', '')}"
    except ValueError:
        detail = answer.reason or ""
    kind = Unavailable if answer.status_code in (429, 503) else StoreError
    return kind(f"Manta answered {answer.status_code} to {doing}: {detail}")
