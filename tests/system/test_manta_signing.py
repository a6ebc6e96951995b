"""Manta signing against the test server: what it accepts and refuses, so that the backend's tests
mean something; and the test server's own faithfulness (directories, JSON-lines listings)."""
from __future__ import annotations

import base64
import json
import time
from email.utils import formatdate

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from imageserver.core.errors import SettingsError
from imageserver.storage.manta import Signer, fingerprints, load_key

DIRECTORY = {"Content-Type": "application/json; type=directory"}


def signed(key, date: str, key_id: str | None = None, algorithm: str | None = None) -> dict:
    """Headers signed by hand with the key's private half (or any other key passed in)."""
    with open(key.private_path, "rb") as f:
        private = serialization.load_ssh_private_key(f.read(), None)
    line = f"date: {date}".encode()
    if key.kind == "rsa":
        signature = private.sign(line, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = private.sign(line, ec.ECDSA(hashes.SHA256()))
    algorithm = algorithm or ("rsa-sha256" if key.kind == "rsa" else "ecdsa-sha256")
    return {"Date": date, "Authorization":
            f'Signature keyId="/tester/keys/{key_id or key.fingerprint}",algorithm="{algorithm}",'
            f'signature="{base64.b64encode(signature).decode()}"'}


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_the_backends_signature_is_accepted(manta_server, manta_keys, kind):
    key = manta_keys[kind]
    signer = Signer("tester", key.fingerprint, key.private_path)
    date = formatdate(usegmt=True)
    header = signer.authorize(date)
    assert header.startswith(f'Signature keyId="/tester/keys/{key.fingerprint}",algorithm="'
                             f'{"rsa" if kind == "rsa" else "ecdsa"}-sha256",signature="')
    answer = requests.get(manta_server.url + "/tester/stor", timeout=10,
                          headers={"Date": date, "Authorization": header})
    assert answer.status_code == 200


def test_unsigned_requests_are_401(manta_server):
    answer = requests.get(manta_server.url + "/tester/stor", timeout=10,
                          headers={"Date": formatdate(usegmt=True)})
    assert answer.status_code == 401 and answer.json()["code"] == "AuthorizationRequired"


def test_a_signature_by_another_key_is_403(manta_server, manta_keys, tmp_path):
    from tests.storage_servers import make_key_pair
    other = make_key_pair(str(tmp_path), "rsa")
    date = formatdate(usegmt=True)
    forged = signed(other, date, key_id=manta_keys["rsa"].fingerprint)
    answer = requests.get(manta_server.url + "/tester/stor", headers=forged, timeout=10)
    assert answer.status_code == 403 and answer.json()["code"] == "InvalidSignature"
    genuine = signed(manta_keys["rsa"], date)
    assert requests.get(manta_server.url + "/tester/stor", headers=genuine, timeout=10).ok


def test_a_signature_of_another_date_is_403(manta_server, manta_keys):
    now = time.time()
    headers = signed(manta_keys["ecdsa"], formatdate(now, usegmt=True))
    headers["Date"] = formatdate(now + 10, usegmt=True)
    answer = requests.get(manta_server.url + "/tester/stor", headers=headers, timeout=10)
    assert answer.status_code == 403 and answer.json()["code"] == "InvalidSignature"
    headers = signed(manta_keys["ecdsa"], formatdate(now - 3600, usegmt=True))
    answer = requests.get(manta_server.url + "/tester/stor", headers=headers, timeout=10)
    assert answer.status_code == 403 and answer.json()["code"] == "RequestTimeTooSkewed"


def test_the_wrong_algorithm_name_is_403(manta_server, manta_keys):
    headers = signed(manta_keys["ecdsa"], formatdate(usegmt=True), algorithm="rsa-sha256")
    answer = requests.get(manta_server.url + "/tester/stor", headers=headers, timeout=10)
    assert answer.status_code == 403 and answer.json()["code"] == "InvalidAlgorithm"


def test_an_object_needs_its_directory_and_listings_are_json_lines(manta_server, manta_keys):
    key = manta_keys["rsa"]

    def put(path: str, headers: dict, body: bytes = b""):
        return requests.put(manta_server.url + path, data=body, timeout=10,
                            headers={**headers, **signed(key, formatdate(usegmt=True))})

    assert put("/tester/stor/a/b", DIRECTORY).json()["code"] == "DirectoryDoesNotExist"
    refused = put("/tester/stor/a/object", {"Content-Type": "text/plain"}, b"hello")
    assert refused.status_code == 404 and refused.json()["code"] == "DirectoryDoesNotExist"
    assert put("/tester/stor/a", DIRECTORY).status_code == 204
    assert put("/tester/stor/a/b", DIRECTORY).status_code == 204
    assert put("/tester/stor/a/object", {"Content-Type": "text/plain"}, b"hello").status_code == 204
    listing = requests.get(manta_server.url + "/tester/stor/a", timeout=10,
                           headers=signed(key, formatdate(usegmt=True)))
    assert listing.headers["Content-Type"] == "application/x-json-stream; type=directory"
    entries = [json.loads(line) for line in listing.text.splitlines()]
    assert [(entry["name"], entry["type"]) for entry in entries] == \
        [("b", "directory"), ("object", "object")]


def test_a_key_file_of_another_fingerprint_stops_start_up(manta_keys):
    with pytest.raises(SettingsError, match="fingerprint"):
        load_key(manta_keys["rsa"].fingerprint, manta_keys["ecdsa"].private_path)


def test_the_key_may_be_named_by_md5_or_sha256(manta_keys):
    key = load_key(manta_keys["ecdsa"].fingerprint, manta_keys["ecdsa"].private_path)
    named = fingerprints(key)
    assert f"MD5:{manta_keys['ecdsa'].fingerprint}" in named
    assert any(name.startswith("SHA256:") for name in named)
    assert load_key(f"MD5:{manta_keys['ecdsa'].fingerprint}", manta_keys["ecdsa"].private_path)
