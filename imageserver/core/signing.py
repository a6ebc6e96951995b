"""Signed output URLs (--signing_key): so that only the sizes the site asks for are ever made.

The signature is the HMAC-SHA256 of the URL path with the key, in unpadded URL-safe base64, sent as
`?sig=`. A request that asks for outputs in its query (`POST /p?outputs=x300.jpg`) signs
`<path>?outputs=<value>` instead, so that the list cannot be changed without a new signature.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlsplit

from imageserver.core.errors import BadRequest, Forbidden


def message(path: str, outputs: str | None = None) -> str:
    """What is signed for a request to `path` with this ?outputs= value (None: no outputs)."""
    return path if outputs is None else f"{path}?outputs={outputs}"


def signature(key: str, text: str) -> str:
    digest = hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check(key: str, text: str, given: str | None) -> None:
    """Raise Forbidden unless `given` is the signature of `text` (compared in constant time)."""
    if not given:
        raise Forbidden("this server needs a signed URL: add ?sig= (see `images sign`)")
    if not hmac.compare_digest(signature(key, text).encode(), given.encode("utf-8", "replace")):
        raise Forbidden("the signature (?sig=) does not match the path")


def sign_url(key: str, url: str) -> str:
    """`/p/6e0/.../x300.jpg` -> `/p/6e0/.../x300.jpg?sig=...`; a query keeps its ?outputs=, and a
    whole URL its scheme and host (which are not signed)."""
    parts = urlsplit(url)
    if not parts.path.startswith("/"):
        raise BadRequest(f"{url!r}: give the URL or its path, starting with /")
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    kept = [pair for pair in parts.query.split("&") if pair and not pair.startswith("sig=")]
    outputs = dict(parse_qsl("&".join(kept), keep_blank_values=True)).get("outputs")
    text = message(parts.path, outputs)
    return f"{origin}{parts.path}?{''.join(pair + '&' for pair in kept)}sig={signature(key, text)}"
