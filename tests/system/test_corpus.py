"""Real-world images, not made here: every JPEG, PNG, GIF and WebP of two public test corpora from
Debian's packages (scripts/install-system-packages installs them), uploaded to one real server and
rendered. GDK Pixbuf's installed tests hold its loaders' test images: photographs, Robert Ancell's
GIF test suite (every odd corner of the format), fuzzed, cut short and hostile files. Go's
golang.org/x/image test data holds lossy, lossless and alpha WebPs and the PNGs they decode to.

Nothing may get a 5xx or take 15 s, nothing that ImageMagick and Pillow both read whole may be
refused, and an image accepted must render."""
from __future__ import annotations

import os
import subprocess
import time
import warnings

import pytest
import requests
from PIL import Image as PillowImage

from tests.helpers import assert_healthy, folder_of, server_environment

CORPORA = ("/usr/libexec/installed-tests/gdk-pixbuf",                 # Debian's gdk-pixbuf-tests
           "/usr/share/gocode/src/golang.org/x/image/testdata")       # golang-golang-x-image-dev
SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
OUTPUTS = ("x100.jpg", "w200.webp")
MOST_SECONDS = 15


def corpus() -> list[str]:
    return sorted(os.path.join(folder, name) for root in CORPORA for folder, _, names in os.walk(root)
                  for name in names if name.lower().endswith(SUFFIXES))


def imagemagick_reads_whole(path: str) -> bool:
    """ImageMagick's own command (its own policy, not ours) decodes every frame without a word."""
    run = subprocess.run(["/usr/bin/convert", path, "null:"], capture_output=True, timeout=60,
                         env=server_environment())
    return run.returncode == 0 and not run.stderr.strip()


def pillow_reads_whole(path: str) -> bool:
    """Pillow decodes every frame (it refuses a file cut short: LOAD_TRUNCATED_IMAGES is off)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PillowImage.open(path) as image:
                for frame in range(getattr(image, "n_frames", 1)):
                    image.seek(frame)
                    image.load()
        return True
    except Exception:  # noqa: BLE001 (any failure of Pillow's is a file it does not read)
        return False


def answers(server, data: bytes) -> list:
    """(what, response, seconds) of the upload of `data` and, once it is accepted, of each output."""
    found = [("upload", *_timed(server.post, "/p", data=data))]
    if found[0][1].status_code == 200:
        folder = folder_of(found[0][1].json()["hash"])
        found += [(output, *_timed(server.get, f"{folder}/{output}")) for output in OUTPUTS]
    return found


@pytest.mark.slow
@pytest.mark.quiet
def test_a_public_corpus_renders_without_a_5xx_a_slow_answer_or_a_false_refusal(shared_server):
    missing = [root for root in CORPORA if not os.path.isdir(root)]
    assert not missing, f"not installed (scripts/install-system-packages installs them): {missing}"
    paths = corpus()
    times, server_errors, refused, wrongly_refused, unrenderable = [], [], [], [], []
    for path in paths:
        name = os.path.relpath(path, "/usr")
        with open(path, "rb") as f:
            data = f.read()
        for what, response, seconds in answers(shared_server, data):
            times.append((seconds, f"{name} {what}"))
            if response.status_code >= 500:
                server_errors.append((name, what, response.status_code, response.text[:200]))
            elif response.status_code >= 400:
                refused.append((name, what, response.status_code, _error(response)))
                if what != "upload":  # an image accepted must render
                    unrenderable.append(refused[-1])
                elif imagemagick_reads_whole(path) and pillow_reads_whole(path):
                    wrongly_refused.append(refused[-1])
    times.sort(reverse=True)
    print(f"\n{len(paths)} files, {len(times)} requests; slowest: "
          + ", ".join(f"{name} {seconds:.2f} s" for seconds, name in times[:5]))
    print(f"refused ({len(refused)}):\n" + "\n".join(f"  {entry}" for entry in refused))
    assert not server_errors, server_errors
    assert times[0][0] < MOST_SECONDS, times[:5]
    assert not wrongly_refused, wrongly_refused
    assert not unrenderable, unrenderable
    assert_healthy(shared_server)


def _timed(call, *arguments, **options) -> tuple:
    started = time.monotonic()
    response = call(*arguments, **options)
    return response, time.monotonic() - started


def _error(response: requests.Response) -> str:
    try:
        return response.json()["error"]
    except ValueError:
        return response.text[:200]
