"""The output-name grammar: "x300-q80.webp" <-> OutputSpec.

    w<W>        width W, height in proportion
    x<S>        S x S, cropped to fill, centred
    <W>x<H>     W x H, cropped to fill, centred
    full_size   the original's size
followed by an optional -q<1..100> and an extension. Numbers have no leading zeros, so that one
output has one name (and one file on disk).
"""
from __future__ import annotations

import re
from fnmatch import fnmatchcase
from dataclasses import dataclass
from typing import Optional

from .errors import BadRequest, Forbidden, NotFound

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
                 "avif": "image/avif"}
EXTENSIONS = tuple(CONTENT_TYPES)
MAXIMUM_OUTPUTS_PER_REQUEST = 20
# Longer than any name the grammar allows ("99999x99999-q100.webp" is 21): refused unread.
MAXIMUM_NAME_LENGTH = 40

_NUMBER = r"[1-9][0-9]{0,5}"
_NAME = re.compile(
    rf"(?:w(?P<width>{_NUMBER})|x(?P<square>{_NUMBER})|(?P<fill_w>{_NUMBER})x(?P<fill_h>{_NUMBER})"
    rf"|(?P<full>full_size))(?:-q(?P<quality>{_NUMBER}))?\.(?P<ext>[a-z0-9]{{1,8}})")


@dataclass(frozen=True)
class OutputSpec:
    kind: str                 # "width", "fill" (square included) or "full"
    width: Optional[int]      # None for full_size
    height: Optional[int]     # None for full_size and w<W>
    quality: Optional[int]    # None: the server's default quality
    ext: str
    name: str                 # the file name it was parsed from, e.g. "x300-q80.webp"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.ext]


def parse_output(name: str, settings) -> OutputSpec:
    """Parse and check an output name against the settings' maxima and extensions, or raise NotFound."""
    if len(name) > MAXIMUM_NAME_LENGTH:
        raise NotFound(f"an output name has at most {MAXIMUM_NAME_LENGTH} characters")
    match = _NAME.fullmatch(name)
    if not match:
        raise NotFound(f"{name!r} is not an output name (w200.jpg, x200.jpg, 300x200.jpg, "
                       f"full_size.jpg, optionally with -q<1..100>)")
    g = match.groupdict()
    if g["ext"] not in settings.extensions:
        raise NotFound(f"{name!r}: extension {g['ext']!r} is not one of {','.join(settings.extensions)}")
    quality = int(g["quality"]) if g["quality"] else None
    if quality is not None and quality > 100:
        raise NotFound(f"{name!r}: quality must be 1..100")
    if g["width"]:
        kind, width, height = "width", int(g["width"]), None
    elif g["square"]:
        kind, width, height = "fill", int(g["square"]), int(g["square"])
    elif g["fill_w"]:
        kind, width, height = "fill", int(g["fill_w"]), int(g["fill_h"])
    else:
        kind, width, height = "full", None, None
    if width is not None and width > settings.maximum_width:
        raise NotFound(f"{name!r}: width is over the maximum of {settings.maximum_width}")
    if height is not None and height > settings.maximum_height:
        raise NotFound(f"{name!r}: height is over the maximum of {settings.maximum_height}")
    return OutputSpec(kind, width, height, quality, g["ext"], name)


def parse_output_list(text: str, settings) -> list[OutputSpec]:
    """Parse "x300.jpg,x300.webp" (from ?outputs= or --outputs); a bad name is a 400 here."""
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if len(names) > MAXIMUM_OUTPUTS_PER_REQUEST:
        raise BadRequest(f"at most {MAXIMUM_OUTPUTS_PER_REQUEST} outputs per request, not {len(names)}")
    try:
        return [parse_output(name, settings) for name in names]
    except NotFound as error:
        raise BadRequest(error.message) from None


def check_allowed(spec: OutputSpec, settings) -> None:
    """Raise Forbidden unless --allowed_outputs is empty, or matches the name, or --outputs has it."""
    patterns = settings.allowed_outputs
    if not patterns or spec.name in settings.outputs:
        return
    if not any(fnmatchcase(spec.name, pattern) for pattern in patterns):
        raise Forbidden(f"{spec.name!r} is not one of the outputs made here ({','.join(patterns)})")
