"""What the system tests need to look into a remote store from outside, the same for S3 and Manta."""
from __future__ import annotations

import hashlib

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class S3View:
    """A bucket on the moto server, as the server's images/ prefix."""
    name = "s3"
    base = "images"

    def __init__(self, moto_server, bucket: str):
        self.client = moto_server.client()
        self.bucket = bucket

    def names(self, folder: str) -> list[str]:
        prefix = f"{self.base}/{folder}/"
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        return sorted(item["Key"][len(prefix):] for item in listed.get("Contents", ()))

    def read(self, folder: str, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=f"{self.base}/{folder}/{name}")["Body"].read()

    def content_type(self, folder: str, name: str) -> str:
        return self.client.head_object(Bucket=self.bucket, Key=f"{self.base}/{folder}/{name}")["ContentType"]

    def delete(self, folder: str, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=f"{self.base}/{folder}/{name}")

    def public(self, folder: str, name: str) -> bool:
        grants = self.client.get_object_acl(Bucket=self.bucket, Key=f"{self.base}/{folder}/{name}")["Grants"]
        return any(grant["Grantee"].get("URI") == ALL_USERS and grant["Permission"] == "READ"
                   for grant in grants)


class MantaView:
    """The Manta test server's tree, under /tester/public/images."""
    name = "manta"
    base = "public/images"

    def __init__(self, manta_server):
        self.server = manta_server

    def _path(self, folder: str, name: str) -> str:
        return f"/tester/{self.base}/{folder}/{name}"

    def names(self, folder: str) -> list[str]:
        return self.server.names(f"{self.base}/{folder}")

    def read(self, folder: str, name: str) -> bytes:
        return self.server.state.object(self._path(folder, name))["data"]

    def content_type(self, folder: str, name: str) -> str:
        return self.server.state.object(self._path(folder, name))["content_type"]

    def delete(self, folder: str, name: str) -> None:
        with self.server.state.lock:
            del self.server.state.tree[self._path(folder, name)]

    def puts(self, folder: str, name: str) -> int:
        """How many times the object was written."""
        path = self._path(folder, name)
        return sum(1 for method, where, status in self.server.state.requests
                   if method == "PUT" and where == path and status < 300)
