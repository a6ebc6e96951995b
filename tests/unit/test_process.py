"""The process command's pieces: reading stdin lines, and running items concurrently in order."""
from __future__ import annotations

import threading
import time

from imageserver.commands.process import Item, Result, parse_line, run_all

H = "6e0072682e66287b662827da75b244a3"


def test_lines_are_hashes_urls_both_or_paths():
    assert parse_line(f"{H}\n") == Item(H, hash=H)
    assert parse_line("https://example.com/a.jpg") == Item("https://example.com/a.jpg",
                                                           url="https://example.com/a.jpg")
    assert parse_line(f"{H}\thttps://e.com/a.jpg") == Item(f"{H}\thttps://e.com/a.jpg", hash=H,
                                                            url="https://e.com/a.jpg")
    assert parse_line(f"https://e.com/a.jpg\t{H}").hash == H
    assert parse_line("public/p/6e0/072/682/e66287b662827da75b244a3/original").path == \
        "public/p/6e0/072/682/e66287b662827da75b244a3/original"


def test_results_come_in_input_order_with_at_most_concurrency_items_at_work():
    items = [Item(str(n)) for n in range(12)]
    running, most = [0], [0]
    lock = threading.Lock()

    def work(item: Item) -> Result:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02 * (2 - int(item.text) % 3))      # later items of each three finish first
        with lock:
            running[0] -= 1
        return Result(item, line=item.text)

    results = list(run_all(items, work, concurrency=3))
    assert [result.line for result in results] == [str(n) for n in range(12)]
    assert most[0] <= 3
