"""Amazon S3, or any S3-compatible store (MinIO, Ceph, R2), through boto3.

botocore retries throttling, 5xx answers and dropped connections itself ("standard" mode, with
exponential back-off); what still fails is turned into our errors here, so nothing above storage/
sees botocore.
"""
from __future__ import annotations

import builtins
import shutil
from contextlib import contextmanager

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
)

from imageserver.core import files
from imageserver.core.errors import NotFound, SettingsError, StoreError, Unavailable
from imageserver.core.paths import CACHE_CONTROL
from imageserver.core.settings import Settings
from imageserver.storage.base import Store

MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Store(Store):
    def __init__(self, settings: Settings):
        if bool(settings.aws_access_key_id) != bool(settings.aws_secret_key):
            raise SettingsError("--aws_access_key_id and --aws_secret_key go together")
        self.bucket = settings.aws_bucket
        self.durable = not settings.no_fsync     # files flushed to disk before they count as written
        self.acl = None if settings.s3_acl == "none" else settings.s3_acl
        self.endpoint_url = settings.s3_endpoint_url or None
        self.region = settings.aws_region
        credentials = {}
        if settings.aws_access_key_id:
            credentials = {"aws_access_key_id": settings.aws_access_key_id,
                           "aws_secret_access_key": settings.aws_secret_key}
        config = Config(connect_timeout=settings.store_timeout, read_timeout=settings.store_timeout,
                        retries={"mode": "standard", "total_max_attempts": settings.store_retries + 1})
        self.client = boto3.session.Session().client(
            "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=config,
            **credentials)

    def put(self, local_path: str, remote_path: str, content_type: str) -> None:
        extra = {"ContentType": content_type, "CacheControl": CACHE_CONTROL}
        if self.acl:
            extra["ACL"] = self.acl
        with _translated(f"storing {remote_path}"), open(local_path, "rb") as body:
            self.client.put_object(Bucket=self.bucket, Key=remote_path, Body=body, **extra)

    def get(self, remote_path: str, local_path: str) -> None:
        with (_translated(f"fetching {remote_path}"),
              files.replacing(local_path, durable=self.durable) as temp):
            answer = self.client.get_object(Bucket=self.bucket, Key=remote_path)
            with answer["Body"] as body, open(temp, "wb") as out:
                shutil.copyfileobj(body, out, 1 << 20)

    def list(self, remote_folder: str) -> list[str]:
        prefix = remote_folder.rstrip("/") + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        with _translated(f"listing {prefix}"):
            return [item["Key"][len(prefix):] for page in pages for item in page.get("Contents", ())]

    def make_folder(self, remote_folder: str) -> None:
        """S3 has no folders: keys with slashes are enough."""

    def delete(self, remote_path: str) -> None:
        """S3 answers a delete of a missing key as one of a present key."""
        with _translated(f"deleting {remote_path}"):
            self.client.delete_object(Bucket=self.bucket, Key=remote_path)

    def exists(self, remote_path: str) -> bool:
        try:
            with _translated(f"looking up {remote_path}"):
                self.client.head_object(Bucket=self.bucket, Key=remote_path)
        except NotFound:
            return False
        return True

    def remove_folder(self, remote_folder: str) -> None:
        """S3 has no folders: nothing is left once its keys are deleted."""

    def url(self, remote_path: str, base_url: str) -> str:
        if base_url:
            return super().url(remote_path, base_url)
        if self.endpoint_url:
            return f"{self.endpoint_url.rstrip('/')}/{self.bucket}/{remote_path}"
        return f"https://{self.bucket}.s3.amazonaws.com/{remote_path}"

    def problems(self) -> builtins.list[str]:
        try:
            with _translated(f"reaching bucket {self.bucket}"):
                self.client.head_bucket(Bucket=self.bucket)
        except (StoreError, Unavailable, NotFound) as error:
            return [error.message]
        return []


@contextmanager
def _translated(doing: str):
    """botocore's errors, as ours: NotFound, StoreError (refused or failed), Unavailable (unreachable)."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in MISSING or (status == 404 and code != "NoSuchBucket"):
            raise NotFound(f"S3: {doing}: not found") from None
        message = error.response.get("Error", {}).get("Message", "") or code
        if code == "AccessControlListNotSupported":
            message += " (the bucket refuses ACLs: start with --s3_acl none)"
        raise StoreError(f"S3 refused {doing}: {code}: {message}") from None
    except NoCredentialsError:
        raise StoreError(f"S3: {doing}: no credentials (give --aws_access_key_id and "
                         f"--aws_secret_key, or set up boto3's credentials)") from None
    except (ConnectionError, HTTPClientError) as error:
        raise Unavailable(f"S3 cannot be reached: {doing}: {type(error).__name__}") from None
    except BotoCoreError as error:
        raise StoreError(f"S3: {doing}: {error}") from None
