"""Every setting, declared once: name, default, help text, environment variable and validation.

A setting is a field of `Settings`. `parse_command_line` builds the flags (`--port`) from these fields,
and each flag can also come from the environment as `IMG_<NAME>` (`IMG_PORT`), so that gunicorn can
load the app with `wsgi.py` alone. Flags win over the environment, which wins over the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from imageserver.core.errors import SettingsError
from imageserver.core.names import EXTENSIONS, parse_output_list

# A host name (or IP address) in lower case, or a suffix of one that starts with a dot.
HOST_PATTERN = re.compile(r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def setting(default, help: str):
    """A settings field: its default and its help line."""
    return field(default=default, metadata={"help": help})


S3_ACLS = ("none", "private", "public-read", "public-read-write", "authenticated-read",
           "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control")


@dataclass(frozen=True)
class Settings:
    listen: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(7000, "port to listen on")
    workers: int = setting(0, "gunicorn worker processes (0: one per core)")
    local_base_path: str = setting("public", "folder where originals and outputs are kept")
    outputs: tuple = setting((), "outputs made for every upload, e.g. x300.jpg,w200.webp")
    extensions: tuple = setting(("jpg", "png", "gif", "webp", "avif"),
                                "output formats allowed (avif where ImageMagick writes it)")
    maximum_width: int = setting(1000, "largest output width")
    maximum_height: int = setting(1000, "largest output height")
    default_quality: int = setting(75, "quality of outputs whose name has no -q<N>")
    namespace: str = setting("p", "namespace of images given to the process command")
    remote_base_path: str = setting("", "path prefix of images in the remote store")
    remote_base_url: str = setting("", "public URL prefix of the remote store, printed by process")
    http_timeout: float = setting(5.0, "seconds allowed to download a source URL")
    allow_private_sources: bool = setting(
        False, "allow source URLs on loopback, private and link-local addresses (development only)")
    maximum_upload_bytes: int = setting(50_000_000, "largest upload body accepted")
    maximum_source_bytes: int = setting(50_000_000, "largest source download accepted")
    lock_timeout: float = setting(60.0, "seconds a request waits for another to finish the same output")
    maximum_local_bytes: int = setting(
        0, "keep --local_base_path under this size, least recently used files first (0: no limit)")
    # -- running it in production: statsd, status port, profiling, access log, nginx, drain ------
    statsd_host: str = setting("127.0.0.1", "statsd host (empty: send no metrics)")
    statsd_port: int = setting(8125, "statsd UDP port")
    statsd_prefix: str = setting("image_server.", "prefix of every metric name")
    status_port: int = setting(7002, "port of the separate /status_check listener (0: none)")
    drain_seconds: float = setting(
        0.0, "on SIGTERM/SIGINT, seconds to keep serving while /status_check reports the shutdown")
    profile: bool = setting(False, "serve CPU profiles and heap tops on localhost:--profile_port")
    profile_port: int = setting(6060, "port of the --profile debug listener, on localhost only")
    access_log: str = setting("-", "file for access log lines ('-': standard output, empty: none)")
    nginx_listen: str = setting("80", "listen address of the block printed by nginx_config")
    nginx_access_log: str = setting("/var/log/nginx/imageserver.access.log",
                                    "access log of the block printed by nginx_config")
    # -- cloud storage (S3, Manta) and the process command ------------------------------------------
    aws_access_key_id: str = setting("", "S3 access key (else boto3's chain: environment, profile, role)")
    aws_secret_key: str = setting("", "S3 secret key, with --aws_access_key_id")
    # A store is switched on by a flag or an IMG_* variable only: the original's bare AWS_BUCKET,
    # MANTA_URL, ... are read by the dev-server-* make targets, so that one left in a shell cannot
    # send a server's images somewhere.
    aws_bucket: str = setting("", "S3 bucket that keeps every image (S3 is used when set)")
    aws_region: str = setting("us-east-1", "S3 region")
    s3_endpoint_url: str = setting("", "URL of an S3-compatible store (MinIO, Ceph, R2), else AWS")
    s3_acl: str = setting("public-read", "canned ACL of stored objects, or none to send no ACL")
    manta_url: str = setting("", "Manta URL (Manta is used when set)")
    manta_user: str = setting("", "Manta account login")
    manta_key_id: str = setting("", "MD5 fingerprint of the Manta signing key")
    sdc_identity: str = setting("", "private key file for Manta (else the ssh-agent's key with "
                                    "--manta_key_id)")
    # A request waits at most about (store_retries + 1) x store_timeout plus back-off on a store that
    # is down: kept well inside gunicorn's 60 s worker timeout.
    store_timeout: float = setting(5.0, "seconds allowed for one request to the remote store")
    store_retries: int = setting(2, "retries of a remote store request that was throttled or failed")
    upload_retry_seconds: float = setting(
        30.0, "seconds between retries of outputs made for a GET whose upload failed")
    processor_concurrency: int = setting(4, "items the process command works on at once")
    # -- hardening: limits on sources, and on what may be made ---------------------------------------
    maximum_source_pixels: int = setting(50_000_000, "largest source image accepted, in pixels")
    maximum_source_side: int = setting(16000, "largest width or height of a source image accepted")
    maximum_frames: int = setting(300, "most frames of an animated source accepted")
    maximum_full_size_pixels: int = setting(
        25_000_000, "largest source that a full_size output is made of, in pixels (else 413)")
    maximum_request_ms: int = setting(
        4000, "most milliseconds of CPU one request's image work is priced at (an upload's check and "
        "the outputs it asks for, POST .../process, a new output's GET), else 413 before any of it")
    maximum_scans: int = setting(100, "most scans of a progressive JPEG accepted")
    decoded_cache_pixels: int = setting(
        4_000_000, "pixels of decoded sources a worker keeps in memory for the next sizes of the same "
        "image (8 bytes a pixel: 32 MB at the default; 0: none)")
    allowed_source_hosts: tuple = setting(
        (), "hosts that source URLs may name (.example.com: any host under it); empty: any public host")
    allowed_outputs: tuple = setting(
        (), "patterns of the output names that may be made, e.g. x300.*,w200.jpg; empty: any")
    maximum_variants: int = setting(
        50, "most outputs of one image, by canonical name; past it a new name gets 403 unless signed "
        "(--signing_key) or in --outputs (0: no limit)")
    failure_seconds: float = setting(
        300.0, "seconds an output whose render failed with 413 or 422 answers that again without "
        "rendering (0: not remembered)")
    signing_key: str = setting("", "when set, outputs need ?sig=, the HMAC-SHA256 of the path "
                                   "(see `images sign`)")
    # -- purge: DELETE of an image, everywhere -------------------------------------------------------
    purge_key: str = setting("", "when set, DELETE /<ns>/<folder> with `Authorization: Bearer <key>` "
                                 "removes the image everywhere; else DELETE is a 405")
    purge_poll_seconds: float = setting(
        5.0, "seconds between looks at the store's purge tombstones (each server removes its local "
             "copies of the images purged by any server within about this)")
    purge_tombstone_seconds: float = setting(
        7 * 86400.0, "seconds a purge's tombstone is kept in the store once a server has seen it: a "
                     "server stopped for longer keeps local copies of images purged meanwhile")
    # durability and disk space
    no_fsync: bool = setting(
        False, "do not flush files to disk before answering (faster; a power cut can then lose "
               "images already acknowledged)")
    minimum_free_bytes: int = setting(
        100_000_000, "free space kept on local disk: under it, new images and sizes get 507")

    def __post_init__(self):
        positive = ("port", "maximum_width", "maximum_height", "http_timeout",
                    "maximum_upload_bytes", "maximum_source_bytes", "lock_timeout",
                    "maximum_source_pixels", "maximum_source_side", "maximum_frames",
                    "maximum_full_size_pixels", "maximum_request_ms", "maximum_scans")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"--{name} must be positive, not {getattr(self, name)}")
        for name in ("maximum_variants", "failure_seconds", "decoded_cache_pixels"):
            if getattr(self, name) < 0:
                raise SettingsError(f"--{name} must be 0 (none) or more, not {getattr(self, name)}")
        if self.maximum_local_bytes < 0:
            raise SettingsError("--maximum_local_bytes must be 0 (no limit) or more, "
                                f"not {self.maximum_local_bytes}")
        if self.workers < 0:
            raise SettingsError("--workers must be 0 (one per core) or more")
        if not 1 <= self.default_quality <= 100:
            raise SettingsError(f"--default_quality must be 1..100, not {self.default_quality}")
        unknown = set(self.extensions) - set(EXTENSIONS)
        if not self.extensions or unknown:
            raise SettingsError(
                f"--extensions must be some of {','.join(EXTENSIONS)}, not {','.join(self.extensions)}")
        self._check_operations()
        try:
            parse_output_list(",".join(self.outputs), self)
        except Exception as error:
            raise SettingsError(f"--outputs: {error}") from None
        for host in self.allowed_source_hosts:
            if not HOST_PATTERN.fullmatch(host):
                raise SettingsError(f"--allowed_source_hosts: {host!r} is not a host name or .suffix")
        for name in ("signing_key", "purge_key"):
            if getattr(self, name) and len(getattr(self, name)) < 16:
                raise SettingsError(f"--{name} must be at least 16 characters")
        self._check_storage()

    def _check_storage(self) -> None:
        for name in ("store_timeout", "upload_retry_seconds", "processor_concurrency",
                     "purge_poll_seconds", "purge_tombstone_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"--{name} must be positive, not {getattr(self, name)}")
        if self.minimum_free_bytes < 0:
            raise SettingsError(f"--minimum_free_bytes must be 0 or more, not {self.minimum_free_bytes}")
        if self.store_retries < 0:
            raise SettingsError(f"--store_retries must be 0 or more, not {self.store_retries}")
        if self.s3_acl not in S3_ACLS:
            raise SettingsError(f"--s3_acl must be one of {','.join(S3_ACLS)}, not {self.s3_acl!r}")
        # Checks across settings of the store are made by storage.build_store: gunicorn_conf reads
        # the environment alone, where a setting given as a flag is missing.

    def _check_operations(self) -> None:
        for name in ("statsd_port", "status_port", "profile_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise SettingsError(f"--{name} must be a port number, not {getattr(self, name)}")
        if self.statsd_host and self.statsd_port == 0:
            raise SettingsError("--statsd_port must be set when --statsd_host is")
        if self.status_port and self.status_port == self.port:
            raise SettingsError(f"--status_port must differ from --port ({self.port})")
        if self.profile and self.profile_port in (0, self.port, self.status_port):
            raise SettingsError(f"--profile_port must be a free port of its own, not {self.profile_port}")
        if self.drain_seconds < 0:
            raise SettingsError(f"--drain_seconds must be 0 or more, not {self.drain_seconds}")
        if not self.nginx_listen.strip() or any(c in self.nginx_listen for c in ";{}\"'\n"):
            raise SettingsError(f"--nginx_listen {self.nginx_listen!r} is not an nginx listen address")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Settings from the environment (IMG_PORT, ...), then keyword overrides, then defaults."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            name = env_name(f)
            if name in environ:
                values[f.name] = convert(f, environ[name], name)
        values.update(overrides)
        return cls(**values)

    @property
    def base_path(self) -> str:
        return os.path.abspath(self.local_base_path)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


def env_name(f: dataclasses.Field) -> str:
    return "IMG_" + f.name.upper()


def field_type(f: dataclasses.Field):
    return typing.get_type_hints(Settings)[f.name]


def convert(f: dataclasses.Field, text: str, source: str):
    """Turn the text of a flag or variable into the field's type, or stop with a one-line message."""
    kind = field_type(f)
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if kind is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return kind(text)
    except ValueError:
        raise SettingsError(f"{source}: {text!r} is not a valid {kind.__name__}") from None


COMMANDS = ("server", "process", "sign", "version", "doctor", "nginx_config")


def parse_command_line(argv: Sequence[str], environ: Mapping[str, str] | None = None,
                       commands: Sequence[str] = COMMANDS):
    """Parse `images [flags] COMMAND [args] [flags]` into (command, args, Settings)."""
    parser = argparse.ArgumentParser(
        prog="images", description="An image server: upload once, get any size on demand.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    for f in dataclasses.fields(Settings):
        help_text = f"{f.metadata['help']} (env {env_name(f)})"
        if field_type(f) is bool:
            parser.add_argument(f"--{f.name}", action="store_const", const="true", default=None,
                                help=f"{help_text} (default: off)")
        else:
            shown = ",".join(f.default) if isinstance(f.default, tuple) else f.default
            parser.add_argument(f"--{f.name}", metavar=f.name.upper(), default=None,
                                help=f"{help_text} (default: {shown})")
    parser.add_argument("command", nargs="?", choices=commands, help="what to do")
    parser.add_argument("args", nargs="*", help="arguments of the command")
    parsed = parser.parse_intermixed_args(list(argv))
    given = {}
    for f in dataclasses.fields(Settings):
        text = getattr(parsed, f.name)
        if text is not None:
            given[f.name] = convert(f, text, f"--{f.name}")
    command = "version" if parsed.version else parsed.command
    if command is None:
        parser.error("a command is needed: " + ", ".join(commands))
    return command, parsed.args, Settings.from_env(environ, **given)
