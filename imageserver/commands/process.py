"""`images process`: make and store the configured outputs of originals given as files, hashes or
source URLs, for batch work beside (or instead of) the server.

    images --outputs x300.jpg process public/p/6e0/072/682/e66287b662827da75b244a3/original
    printf '%s\n' HASH URL "HASH<TAB>URL" | images --outputs x300.jpg process -

Each item's folder in the store is listed first: an item whose original, info.json and outputs are
all there is skipped at the cost of that listing (and its info.json). Prints
`hash<TAB>url<TAB>width<TAB>height` per item on stdout, in the order given, and each failure's
reason on stderr; exits 1 if any item failed. A progress line is kept on stderr when it is a terminal.
"""
from __future__ import annotations

import hashlib
import json
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tqdm import tqdm

from imageserver.core import files
from imageserver.core.errors import BadRequest, ImageServerError
from imageserver.core.metrics import build_metrics
from imageserver.core.names import parse_output_list
from imageserver.core.paths import HASH, INFO, ORIGINAL, ImageKey
from imageserver.images.service import Images
from imageserver.images.setup import init_worker
from imageserver.storage import build_store

if TYPE_CHECKING:
    from imageserver.core.settings import Settings


@dataclass(frozen=True)
class Item:
    """One thing to process, as given: a local original, a hash, a source URL, or a hash and URL."""
    text: str
    path: str | None = None
    hash: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Result:
    item: Item
    line: str = ""               # hash<TAB>url<TAB>width<TAB>height
    error: str = ""
    skipped: bool = False        # everything was in the store already


def run_process(settings: Settings, args: list[str]) -> int:
    set_up = init_worker(settings)
    metrics = build_metrics(settings)
    service = Images(settings, build_store(settings, metrics), metrics, set_up=set_up)
    outputs = parse_output_list(",".join(settings.outputs), settings)
    if args and args != ["-"]:
        items: Iterable[Item] = [Item(path, path=path) for path in args]
        total = len(args)
    else:
        items = (parse_line(line) for line in sys.stdin if line.strip())
        total = None
    progress = Progress(sys.stderr, total)
    failed = 0
    for result in run_all(items, lambda item: process_item(service, outputs, item),
                          settings.processor_concurrency):
        if result.error:
            failed += 1
            progress.say(f"images: {result.item.text}: {result.error}")
        else:
            print(result.line, flush=True)
        progress.count(result)
    progress.close()
    return 1 if failed else 0


def parse_line(line: str) -> Item:
    """`HASH`, `URL`, `HASH<TAB>URL` or `URL<TAB>HASH`; anything else is taken as a file path."""
    text = line.strip()
    fields = [field.strip() for field in text.split("\t") if field.strip()]
    hashes = [field for field in fields if HASH.fullmatch(field)]
    urls = [field for field in fields if "://" in field]
    if hashes or urls:
        return Item(text, hash=hashes[0] if hashes else None, url=urls[0] if urls else None)
    return Item(text, path=text)


def run_all(items: Iterable[Item], work, concurrency: int) -> Iterator[Result]:
    """Results in the order of `items`, `concurrency` at work at once, reading items as it goes."""
    window: deque[tuple[Item, Future]] = deque()
    with ThreadPoolExecutor(concurrency) as pool:
        for item in items:
            window.append((item, pool.submit(work, item)))
            if len(window) >= 2 * concurrency:
                yield window.popleft()[1].result()
        while window:
            yield window.popleft()[1].result()


def process_item(service: Images, outputs, item: Item) -> Result:
    settings = service.settings
    try:
        key, skipped = _make(service, outputs, item)
        info = json.loads(service.info(key))
    except ImageServerError as error:
        return Result(item, error=error.message)
    except Exception as error:  # one bad item must not stop the batch
        return Result(item, error=f"{type(error).__name__}: {error}")
    url = service.store.url(key.remote_file(settings.remote_base_path, "").rstrip("/"),
                            settings.remote_base_url)
    return Result(item, f"{key.hash}\t{url}\t{info['width']}\t{info['height']}", skipped=skipped)


def _make(service: Images, outputs, item: Item) -> tuple[ImageKey, bool]:
    """Store what the item's folder lacks; returns its key, and whether nothing was lacking."""
    namespace = service.settings.namespace
    if item.path:
        key = ImageKey.from_path(item.path, namespace)
    elif item.hash:
        key = ImageKey(namespace, item.hash)
    elif item.url:
        info = service.create_from_source(namespace, item.url, outputs)
        return ImageKey(namespace, json.loads(info)["hash"]), False
    else:
        raise BadRequest(f"{item.text!r} names no file, hash or URL")
    missing = service.missing(key, outputs)
    if not missing:
        return key, True
    if {ORIGINAL, INFO} & missing:
        _store_original(service, key, item, outputs)
    else:
        service.process(key, outputs)
    return key, False


def _store_original(service: Images, key: ImageKey, item: Item, outputs) -> None:
    """Store the original (and info.json, and the outputs) from the file, the URL or local disk."""
    if item.path:
        data = _read(item.path)
    elif item.url:
        info = service.create_from_source(key.namespace, item.url, outputs)
        _check_hash(key, json.loads(info)["hash"], item.url)
        return
    else:
        local = _read_if_there(key.local_file(service.base, ORIGINAL))
        if local is None:
            service.info(key)          # NotFound: neither the store nor local disk has the image
            service.process(key, outputs)
            return
        data = local
    _check_hash(key, hashlib.md5(data).hexdigest(), item.path or "the local original")
    service.create(key.namespace, data, outputs)


def _read(path: str) -> bytes:
    data = _read_if_there(path)
    if data is None:
        raise BadRequest(f"cannot read {path}: no such file")
    return data


def _read_if_there(path: str) -> bytes | None:
    """The file's bytes, or None if there is no such file."""
    try:
        return files.read(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BadRequest(f"cannot read {path}: {error.strerror}") from None


def _check_hash(key: ImageKey, actual: str, where: str) -> None:
    if actual != key.hash:
        raise BadRequest(f"the image at {where} has hash {actual}, not {key.hash}")


class Progress:
    """A progress bar on stderr when it is a terminal (tqdm's, which draws nothing otherwise); a
    failure's reason is a line of its own above it, terminal or not."""

    def __init__(self, stream, total: int | None):
        self.stream = stream
        self.failed = self.skipped = 0
        self.bar = tqdm(total=total, file=stream, disable=None, unit="image")

    def count(self, result: Result) -> None:
        self.failed += bool(result.error)
        self.skipped += result.skipped
        self.bar.set_postfix_str(f"{self.failed} failed, {self.skipped} skipped", refresh=False)
        self.bar.update()

    def say(self, message: str) -> None:
        tqdm.write(message, file=self.stream)

    def close(self) -> None:
        self.bar.close()
