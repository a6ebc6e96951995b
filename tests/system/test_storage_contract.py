"""One contract, every backend: nothing remote, S3 (moto's server) and Manta (the test server, with an
RSA and with an ECDSA key). Stores are built from Settings, as the server builds them.

With AWS_BUCKET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_SECRET_KEY) set, as the
original's README has it, the contract also runs against that real bucket ("s3 live"; AWS_REGION and
AWS_ENDPOINT_URL when given), under a prefix of its own that each test removes; else it is skipped.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import boto3
import pytest

from imageserver.core.errors import NotFound, StoreError, Unavailable
from imageserver.core.settings import Settings
from imageserver.storage import NoRemoteStore, Store, build_store

FOLDER = "images/p/6e0/072/682/e66287b662827da75b244a3"
BACKENDS = ["nothing remote", "s3", "s3 live", "manta rsa", "manta ecdsa"]
LIVE_PREFIX = "imageserver-contract-tests"


@dataclass
class Backend:
    name: str
    store: Store
    #: the same store reached through a gate that the test can shut; None for nothing remote
    behind_gate: Callable[[], tuple[Store, object]] | None = None
    #: where this run's objects go in a real bucket, which other things share
    prefix: str = ""

    @property
    def keeps(self) -> bool:
        return not isinstance(self.store, NoRemoteStore)


def settings_for(name: str, endpoint: str, request, base_path: str) -> Settings:
    common = {"local_base_path": base_path, "store_retries": 0, "store_timeout": 5.0}
    if name == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        return Settings(aws_bucket=bucket, s3_endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_key="testing", remote_base_path="images", **common)
    key = request.getfixturevalue("manta_keys")[name.split()[1]]
    return Settings(manta_url=endpoint, manta_user="tester", manta_key_id=key.fingerprint,
                    sdc_identity=key.private_path, remote_base_path="public/images", **common)


def live_bucket() -> dict:
    """The real bucket's settings from the original's variables, or {} when they are not all set."""
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("AWS_SECRET_KEY")
    if not (os.environ.get("AWS_BUCKET") and os.environ.get("AWS_ACCESS_KEY_ID") and secret):
        return {}
    # No ACL: the test's objects stay private, and buckets that refuse ACLs work as well.
    return {"aws_bucket": os.environ["AWS_BUCKET"], "aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "aws_secret_key": secret, "aws_region": os.environ.get("AWS_REGION", "us-east-1"),
            "s3_endpoint_url": os.environ.get("AWS_ENDPOINT_URL", ""), "s3_acl": "none"}


def remove_prefix(settings: Settings, prefix: str) -> list[str]:
    """Delete every object under the prefix; return what is left (nothing, when all went)."""
    client = boto3.session.Session().client(
        "s3", region_name=settings.aws_region, endpoint_url=settings.s3_endpoint_url or None,
        aws_access_key_id=settings.aws_access_key_id, aws_secret_access_key=settings.aws_secret_key)

    def keys() -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=settings.aws_bucket,
                                                                 Prefix=prefix + "/")
        return [item["Key"] for page in pages for item in page.get("Contents", ())]

    found = keys()
    for start in range(0, len(found), 1000):
        client.delete_objects(Bucket=settings.aws_bucket, Delete={
            "Objects": [{"Key": key} for key in found[start:start + 1000]], "Quiet": True})
    return keys()


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, gate) -> Backend:
    name = request.param
    if name == "nothing remote":
        yield Backend(name, build_store(Settings(local_base_path=str(tmp_path))))
        return
    if name == "s3 live":
        live = live_bucket()
        if not live:
            pytest.skip("no real bucket: set AWS_BUCKET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        settings = Settings(local_base_path=str(tmp_path), store_retries=2, **live)
        prefix = f"{LIVE_PREFIX}/{uuid.uuid4().hex}"
        yield Backend(name, build_store(settings), prefix=prefix)
        assert remove_prefix(settings, prefix) == []
        return
    server = request.getfixturevalue("moto_server" if name == "s3" else "manta_server")
    settings = settings_for(name, server.url, request, str(tmp_path))

    def behind_gate():
        g = gate(int(server.url.rsplit(":", 1)[1]))
        return build_store(settings_for(name, g.url, request, str(tmp_path))), g

    yield Backend(name, build_store(settings), behind_gate)


def remote(folder: str, backend: Backend) -> str:
    """Manta keeps images under public/ (or stor/); S3 anywhere (a real bucket: under the run's prefix)."""
    if backend.name.startswith("manta"):
        return f"public/{folder}"
    return f"{backend.prefix}/{folder}" if backend.prefix else folder


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / "made" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


def leftovers(folder) -> list[str]:
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


class TestStoreContract:
    def test_put_then_get_gives_the_same_bytes(self, backend, tmp_path):
        folder = remote(FOLDER, backend)
        backend.store.make_folder(folder)
        backend.store.put(write(tmp_path, "x", b"\xff\xd8\xff jpeg bytes"), f"{folder}/x300.jpg",
                          "image/jpeg")
        target = tmp_path / "back" / "deeper" / "x300.jpg"
        if backend.keeps:
            backend.store.get(f"{folder}/x300.jpg", str(target))
            assert target.read_bytes() == b"\xff\xd8\xff jpeg bytes"
            assert leftovers(target.parent) == ["x300.jpg"]
        else:
            with pytest.raises(NotFound):
                backend.store.get(f"{folder}/x300.jpg", str(target))

    def test_put_makes_missing_folders_itself(self, backend, tmp_path):
        folder = remote("images/q/111/222/333/44444444444444444444444", backend)
        backend.store.put(write(tmp_path, "i", b'{"a": 1}'), f"{folder}/info.json", "application/json")
        assert backend.store.list(folder) == (["info.json"] if backend.keeps else [])

    def test_put_again_replaces_the_object(self, backend, tmp_path):
        folder = remote(FOLDER, backend)
        backend.store.make_folder(folder)
        backend.store.put(write(tmp_path, "a", b"first"), f"{folder}/info.json", "application/json")
        backend.store.put(write(tmp_path, "b", b"second"), f"{folder}/info.json", "application/json")
        if backend.keeps:
            backend.store.get(f"{folder}/info.json", str(tmp_path / "got"))
            assert (tmp_path / "got").read_bytes() == b"second"
            assert backend.store.list(folder) == ["info.json"]
        else:
            # Nothing remote keeps nothing: no object to get back, none listed, no file written.
            with pytest.raises(NotFound):
                backend.store.get(f"{folder}/info.json", str(tmp_path / "got"))
            assert backend.store.list(folder) == []
            assert not (tmp_path / "got").exists()
        # Whatever the store, the server's local files stay as they were.
        assert [(tmp_path / "made" / name).read_bytes() for name in "ab"] == [b"first", b"second"]

    def test_get_of_a_missing_object_is_not_found_and_leaves_nothing(self, backend, tmp_path):
        target = tmp_path / "back" / "original"
        with pytest.raises(NotFound):
            backend.store.get(f"{remote(FOLDER, backend)}/original", str(target))
        assert not target.exists()
        assert leftovers(target.parent) == []

    def test_list_names_only_the_objects_directly_in_the_folder(self, backend, tmp_path):
        folder = remote(FOLDER, backend)
        backend.store.make_folder(folder)
        for name in ("original", "info.json", "x300.jpg", "w200-q80.webp"):
            backend.store.put(write(tmp_path, name, name.encode()), f"{folder}/{name}", "image/jpeg")
        sibling = folder[:-1] + "b"      # same prefix, another folder
        backend.store.put(write(tmp_path, "s", b"s"), f"{sibling}/original", "image/jpeg")
        backend.store.put(write(tmp_path, "d", b"d"), f"{folder}/deeper/original", "image/jpeg")
        expected = ["info.json", "original", "w200-q80.webp", "x300.jpg"] if backend.keeps else []
        assert sorted(backend.store.list(folder)) == expected
        assert sorted(backend.store.list(folder + "/")) == expected

    def test_list_of_a_missing_folder_is_empty(self, backend):
        assert backend.store.list(remote("images/p/000/000/000/00000000000000000000000", backend)) == []

    def test_make_folder_twice_is_fine_and_leaves_it_empty(self, backend):
        folder = remote("images/z/999/999/999/99999999999999999999999", backend)
        backend.store.make_folder(folder)
        backend.store.make_folder(folder)
        assert backend.store.list(folder) == []

    def test_url_is_under_the_base_url(self, backend):
        url = backend.store.url(f"{FOLDER}/x300.jpg", "https://cdn.example.com/")
        assert url == f"https://cdn.example.com/{FOLDER}/x300.jpg"

    def test_problems_are_none_when_the_store_answers(self, backend):
        assert backend.store.problems() == []

    def test_a_store_that_is_down_says_so_and_leaves_nothing(self, backend, tmp_path):
        if backend.behind_gate is None:
            pytest.skip("only a store on loopback can be cut off (the gate forwards to loopback)")
        folder = remote(FOLDER, backend)
        backend.store.make_folder(folder)
        backend.store.put(write(tmp_path, "o", b"bytes"), f"{folder}/original", "image/jpeg")
        store, g = backend.behind_gate()
        assert store.list(folder) == ["original"]
        g.shut()
        target = tmp_path / "back" / "original"
        with pytest.raises((Unavailable, StoreError)):
            store.get(f"{folder}/original", str(target))
        assert leftovers(target.parent) == []
        with pytest.raises((Unavailable, StoreError)):
            store.put(write(tmp_path, "n", b"new"), f"{folder}/x300.jpg", "image/jpeg")
        with pytest.raises((Unavailable, StoreError)):
            store.list(folder)
        assert store.problems() != []
        g.open()
        assert store.list(folder) == ["original"]

    def test_delete_removes_the_object_and_is_fine_twice(self, backend, tmp_path):
        folder = remote(FOLDER, backend)
        backend.store.make_folder(folder)
        for name in ("original", "x300.jpg"):
            backend.store.put(write(tmp_path, name, b"bytes"), f"{folder}/{name}", "image/jpeg")
        assert backend.store.exists(f"{folder}/original") is backend.keeps
        backend.store.delete(f"{folder}/original")
        backend.store.delete(f"{folder}/original")
        backend.store.delete(f"{folder}/never-was")
        assert not backend.store.exists(f"{folder}/original")
        assert backend.store.list(folder) == (["x300.jpg"] if backend.keeps else [])
        with pytest.raises(NotFound):
            backend.store.get(f"{folder}/original", str(tmp_path / "back" / "original"))

    def test_remove_folder_leaves_a_folder_that_holds_something(self, backend, tmp_path, request):
        folder = remote(FOLDER, backend)
        backend.store.make_folder(folder)
        backend.store.put(write(tmp_path, "o", b"bytes"), f"{folder}/original", "image/jpeg")
        parent = folder.rsplit("/", 1)[0]
        backend.store.remove_folder(parent)     # not empty (Manta: DirectoryNotEmpty): left as it is
        backend.store.remove_folder(folder)
        assert backend.store.list(folder) == (["original"] if backend.keeps else [])
        backend.store.delete(f"{folder}/original")
        backend.store.remove_folder(folder)
        backend.store.remove_folder(folder)     # gone already: nothing to do
        assert backend.store.list(folder) == []
        if backend.name.startswith("manta"):   # the folder itself is gone, its parent is still there
            tree = request.getfixturevalue("manta_server").state.tree
            assert f"/tester/{folder}" not in tree and tree[f"/tester/{parent}"]["type"] == "directory"
