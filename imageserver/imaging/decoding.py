"""Handing bytes to ImageMagick: always with the coder named (never its own format guessing), and
its errors and warnings turned into ours (422 cut short or corrupt, 413 a resource run out), under
the backstop's stopwatch."""
from __future__ import annotations

import warnings
from contextlib import contextmanager

from imageserver.core.errors import (
    PayloadTooLarge,
    Unprocessable,
)
from imageserver.imaging import cost, magick
from imageserver.imaging.decoded import DECODED
from imageserver.imaging.magick import WandException, WandWarning


@contextmanager
def decoding(what: str, work: cost.Work | None = None):
    """Turn ImageMagick's errors, and its warnings of a cut-short file, into our errors: 413 only for
    a resource run out (see magick.exhausted), 422 for the rest. With the `work`'s price, ImageMagick
    is stopped once it has spent far more CPU than the price (the backstop behind the cost model:
    magick.Stopwatch), a 413 too."""
    priced_ms = work.milliseconds if work else None
    limit_ms = cost.stop_after_ms(priced_ms) if priced_ms is not None else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            try:
                with magick.Stopwatch(limit_ms):
                    yield
            except magick.Stopped as stopped:
                raise PayloadTooLarge(
                    f"{what}: stopped after {stopped.milliseconds:,.0f} ms of CPU, well past the "
                    f"{priced_ms:,.0f} ms it was priced at: the image costs more work than its "
                    "header says") from None
            except (WandException, MemoryError, RuntimeError) as error:
                if magick.exhausted(error):
                    raise PayloadTooLarge(f"{what}: the image needs more than a worker's resource "
                                          f"limits ({short(error) or 'out of memory'})") from None
                raise Unprocessable(f"{what}: the image cannot be decoded ({short(error)})") from None
        except BaseException:
            DECODED.clear()    # nothing kept that after_failure could take for a failed image's
            magick.after_failure()
            raise
    for warning in caught:
        if issubclass(warning.category, WandWarning) and is_truncation(str(warning.message)):
            raise Unprocessable(f"{what}: the image is cut short ({short(warning.message)})")


def is_truncation(message: str) -> bool:
    message = message.lower()
    return any(sign in message for sign in ("premature end", "truncat", "insufficient image data",
                                            "unexpected end", "corrupt image", "read error"))


def short(error) -> str:
    text = str(error)
    if text.startswith("MagickReadImage returns false"):    # Wand's words when the coder gave up
        return "no picture in it"
    return text.split(" @ ")[0].replace("`buffer' ", "").replace(" `buffer'", "").strip()


def open_image(data: bytes, coder: str, first_frame_only: bool = False, size_hint: str = "",
               ping: bool = False):
    """Decode `data` with the named coder only; refuse it when the decoder warned that it is cut short
    (ImageMagick still gives the part it read), or failed on it and gave pixels all the same
    (ImageMagick 6 gives the picture of a GIF with an invalid colour index, then fails every output
    made of it; 7 fails at the read)."""
    image = magick.open_blob(data, coder, first_frame_only, size_hint, ping)
    try:
        severity, problem = (0, "") if ping else magick.decoder_problem(image)
        if problem and is_truncation(problem):
            raise Unprocessable(f"the image is cut short ({short(problem)})")
        if severity >= magick.ERROR:
            raise Unprocessable(f"the image cannot be decoded ({short(problem)})")
        if not magick.frame_count(image):
            raise Unprocessable("the image cannot be decoded: its header is corrupt, or its size is "
                                "over ImageMagick's limits")
    except BaseException:
        image.close()
        raise
    return image
