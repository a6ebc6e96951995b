"""`images process`: make the configured outputs of originals given as files, hashes or source URLs.

    images --outputs x300.jpg process public/p/6e0/072/682/e66287b662827da75b244a3/original
    printf '%s\n' HASH URL | images --outputs x300.jpg process -

Prints `hash<TAB>url<TAB>width<TAB>height` for each item; the exit code is 1 if any item failed.
"""
from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from . import files, pipeline
from .errors import ImageServerError
from .images import Images
from .metrics import build_metrics
from .names import parse_output_list
from .paths import HASH, ORIGINAL, ImageKey
from .storage import build_store

CONCURRENCY = 4


def run_process(settings, args: list[str]) -> int:
    pipeline.init_worker(pipeline.Limits.from_settings(settings))
    service = Images(settings, build_store(settings), build_metrics(settings))
    outputs = parse_output_list(",".join(settings.outputs), settings)
    if args and args != ["-"]:
        items = [("file", path) for path in args]
    else:
        items = [_item(line) for line in sys.stdin if line.strip()]
    failed = 0
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for item, result in zip(items, pool.map(lambda i: _process(service, outputs, *i), items)):
            if isinstance(result, ImageServerError):
                failed += 1
                print(f"images: {item[1]}: {result.message}", file=sys.stderr)
            else:
                print(result, flush=True)
    return 1 if failed else 0


def _item(line: str) -> tuple[str, str]:
    text = line.strip().split("\t")[0]
    if HASH.fullmatch(text):
        return "hash", text
    if "://" in text:
        return "url", text
    return "file", text


def _process(service: Images, outputs, kind: str, value: str):
    settings = service.settings
    try:
        if kind == "url":
            info = json.loads(service.create_from_source(settings.namespace, value, outputs))
            key = ImageKey(settings.namespace, info["hash"])
        else:
            key = ImageKey(settings.namespace, value) if kind == "hash" else \
                ImageKey.from_path(value, settings.namespace)
            if kind == "file":
                _adopt(service, key, value)
            service.make_outputs(key, outputs)
            info = json.loads(service.info(key))
    except ImageServerError as error:
        return error
    url = service.store.url(key.remote_file(settings.remote_base_path, "").rstrip("/"),
                            settings.remote_base_url)
    return f"{key.hash}\t{url}\t{info['width']}\t{info['height']}"


def _adopt(service: Images, key: ImageKey, path: str) -> None:
    """Take a local original into --local_base_path, with its info, if it is not there yet."""
    if os.path.exists(key.local_file(service.base, ORIGINAL)):
        return
    try:
        data = files.read(path)
    except OSError as error:
        raise ImageServerError(f"cannot read {path}: {error.strerror}") from None
    service.create(key.namespace, data)
