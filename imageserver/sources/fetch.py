"""Downloading source URLs for strangers: http(s) only, refused addresses, bounded time and size.

Each hop (the URL, then each redirect) is checked by the address guard (addresses.py), then made
through a transport that connects to the checked address alone (transport.py), within the bounds of
the whole download (bounds.py: --http_timeout, --maximum_source_bytes).
"""
from __future__ import annotations

from urllib.parse import urljoin

import requests
from urllib3.exceptions import HTTPError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from imageserver.core.errors import GatewayTimeout, NotFound, PayloadTooLarge
from imageserver.sources import transport
from imageserver.sources.addresses import check_url
from imageserver.sources.bounds import Deadline, SourceRules

MAXIMUM_REDIRECTS = 5
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
CHUNK = 64 * 1024


def download(url: str, rules: SourceRules) -> bytes:
    """The body at `url`, following up to 5 redirects, each hop's address checked again."""
    with Deadline(rules.timeout) as deadline:
        for _ in range(MAXIMUM_REDIRECTS + 1):
            target = check_url(url, rules, deadline)
            with transport.pinned_session(target, deadline) as session, \
                    transport.get(session, url, target, deadline) as response:
                location = response.headers.get("Location")
                if response.status_code in REDIRECT_STATUSES and location:
                    url = urljoin(url, location)
                    continue
                if response.status_code >= 400:
                    raise NotFound(f"the source answered {response.status_code}")
                if response.status_code != 200:
                    raise NotFound(f"the source answered {response.status_code}, not 200")
                return _read(response, deadline, rules.maximum_bytes)
    raise NotFound(f"the source redirected more than {MAXIMUM_REDIRECTS} times")


def _read(response: requests.Response, deadline: Deadline, maximum_bytes: int) -> bytes:
    """The body as sent (no content decoding: a gzip bomb stays small), within the deadline."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > maximum_bytes:
        raise PayloadTooLarge(f"the source is over the limit of {maximum_bytes} bytes")
    body = bytearray()
    try:
        while True:
            deadline.remaining()
            chunk = response.raw.read1(CHUNK, decode_content=False)
            if not chunk:
                deadline.check()    # an end that the deadline made is no end of the body
                return bytes(body)
            body += chunk
            if len(body) > maximum_bytes:
                raise PayloadTooLarge(f"the source is over the limit of {maximum_bytes} bytes")
    except (TimeoutError, Urllib3Timeout):
        raise GatewayTimeout("the source took too long") from None
    except (HTTPError, OSError) as error:
        deadline.check()
        raise NotFound(f"the source broke off ({transport.reason(error)})") from None
