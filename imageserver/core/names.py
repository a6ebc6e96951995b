"""The output-name grammar: "x300-q80.webp" <-> OutputSpec.

    w<W>        width W, height in proportion
    x<S>        S x S, cropped to fill, centred
    <W>x<H>     W x H, cropped to fill, centred
    full_size   the original's size
followed by an optional -q<1..100> and an extension. Numbers have no leading zeros.

The extension `auto` names no format of its own: `x300.auto` is answered as the smallest format the
request's Accept header takes (`choose_format`), and kept as that format's file (x300.avif, ...).

One output, one file: a name has aliases (`300x300.jpg` and `x300-q75.jpg` are `x300.jpg` when 75 is
--default_quality), and every alias is answered from the one file of its canonical name
(`OutputSpec.file`), the shortest the grammar gives: `x<S>` for a square, no -q at the default
quality. The shortest, so that the names sites use most (and the files already made, on disk, in the
store and behind --remote_base_url) stay the files.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from imageserver.core.errors import BadRequest, Forbidden, NotFound

if TYPE_CHECKING:   # settings is above names: it parses --outputs with them
    from imageserver.core.settings import Settings

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
                 "avif": "image/avif"}
EXTENSIONS = tuple(CONTENT_TYPES)
AUTO = "auto"
# What `.auto` may stand for: AVIF, WebP when the request's Accept names them (best first), else
# JPEG, or PNG for a source with transparency.
AUTO_MODERN = ("avif", "webp")
AUTO_FORMATS = (*AUTO_MODERN, "jpg", "png")
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
    width: int | None         # None for full_size
    height: int | None        # None for full_size and w<W>
    quality: int | None       # None: the server's default quality (-q<default> parses to None)
    ext: str
    # The name it was parsed from, e.g. "300x300-q80.webp": aliases of one output are equal.
    name: str = field(compare=False)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.ext]

    @property
    def is_auto(self) -> bool:
        return self.ext == AUTO

    def as_format(self, ext: str) -> OutputSpec:
        """The same output in the format `ext` (what a `.auto` name stands for); the name stays."""
        return replace(self, ext=ext)

    @property
    def file(self) -> str:
        """The canonical name, of the one file of this output (on disk and in the store)."""
        if self.kind == "full":
            stem = "full_size"
        elif self.kind == "width":
            stem = f"w{self.width}"
        elif self.width == self.height:
            stem = f"x{self.width}"
        else:
            stem = f"{self.width}x{self.height}"
        return stem + (f"-q{self.quality}" if self.quality else "") + f".{self.ext}"

    @property
    def auto_file(self) -> str:
        """The canonical name of the `.auto` output that stands for this one."""
        return self.as_format(AUTO).file


def parse_output(name: str, settings: Settings) -> OutputSpec:
    """Parse and check an output name against the settings' maxima and extensions, or raise NotFound."""
    if len(name) > MAXIMUM_NAME_LENGTH:
        raise NotFound(f"an output name has at most {MAXIMUM_NAME_LENGTH} characters")
    match = _NAME.fullmatch(name)
    if not match:
        raise NotFound(f"{name!r} is not an output name (w200.jpg, x200.jpg, 300x200.jpg, "
                       f"full_size.jpg, optionally with -q<1..100>)")
    g = match.groupdict()
    if g["ext"] not in settings.extensions and not (g["ext"] == AUTO and auto_extensions(settings)):
        raise NotFound(f"{name!r}: extension {g['ext']!r} is not one of {','.join(settings.extensions)}"
                       + (",auto" if auto_extensions(settings) else ""))
    quality = int(g["quality"]) if g["quality"] else None
    if quality is not None and quality > 100:
        raise NotFound(f"{name!r}: quality must be 1..100")
    if quality == settings.default_quality:
        quality = None
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


def parse_output_list(text: str, settings: Settings) -> list[OutputSpec]:
    """Parse "x300.jpg,x300.webp" (from ?outputs= or --outputs), aliases of one output once; a bad
    name is a 400 here."""
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if len(names) > MAXIMUM_OUTPUTS_PER_REQUEST:
        raise BadRequest(f"at most {MAXIMUM_OUTPUTS_PER_REQUEST} outputs per request, not {len(names)}")
    try:
        return list(dict.fromkeys(parse_output(name, settings) for name in names))
    except NotFound as error:
        raise BadRequest(error.message) from None


def check_allowed(spec: OutputSpec, settings: Settings) -> None:
    """Raise Forbidden unless --allowed_outputs is empty, or matches the name or its canonical name,
    or --outputs has either: an alias of an output allowed is answered from the same file. A `.auto`
    name is allowed when one of the formats it stands for is (and stands for those alone)."""
    candidates = [spec.as_format(ext) for ext in auto_extensions(settings)] if spec.is_auto else [spec]
    if not any(is_allowed(candidate, settings) for candidate in candidates):
        raise Forbidden(f"{spec.name!r} is not one of the outputs made here "
                        f"({','.join(settings.allowed_outputs)})")


def is_allowed(spec: OutputSpec, settings: Settings) -> bool:
    """Whether --allowed_outputs (or --outputs) allows this output; allowing `x300.auto` allows the
    formats it stands for."""
    patterns = settings.allowed_outputs
    names = {spec.name, spec.file, spec.auto_file}
    if not patterns or names & set(settings.outputs):
        return True
    return any(fnmatchcase(name, pattern) for name in names for pattern in patterns)


def auto_extensions(settings: Settings) -> list[str]:
    """The formats `.auto` may stand for on a server with these --extensions."""
    return [ext for ext in AUTO_FORMATS if ext in settings.extensions]


def accepted_types(accept: str) -> set[str]:
    """The media types an Accept header names with a quality above 0 (`*/*` and `image/*` name none:
    a client that sends only those is answered in the format every client reads)."""
    named = set()
    for part in accept.split(","):
        media_type, *parameters = [item.strip() for item in part.split(";")]
        quality = next((value for name, _, value in (p.partition("=") for p in parameters)
                        if name.strip().lower() == "q"), "1")
        try:
            if float(quality) <= 0:
                continue
        except ValueError:
            continue
        named.add(media_type.lower())
    return named


def choose_format(accept: str, offered: Iterable[str], transparent: Callable[[], bool]) -> str:
    """The format of a `.auto` output: the first of `offered` (best first, see AUTO_FORMATS) that the
    Accept header names, else JPEG, or PNG when the source has transparency (`transparent` is only
    asked then); the other of the two when only one is offered."""
    offered = [ext for ext in AUTO_FORMATS if ext in offered]
    accepted = accepted_types(accept)
    for ext in AUTO_MODERN:
        if ext in offered and CONTENT_TYPES[ext] in accepted:
            return ext
    for ext in (("png", "jpg") if transparent() else ("jpg", "png")):
        if ext in offered:
            return ext
    if offered:
        return offered[0]
    raise NotFound("no format is offered for a .auto output here (see --extensions and "
                   "--allowed_outputs)")
