"""Cache hits answered by the worker itself, before gunicorn reads the request.

A cache hit is the most common request and the cheapest: a stat, a few headers, a small file. Through
gunicorn, most of its CPU goes to gunicorn's pure-Python request parser, the WSGI environ, the
response object and its checks. So the worker first looks at what the client sent without taking it
(MSG_PEEK): when that is a whole plain request (GET or HEAD, no body, a path and query of plain
characters, well-formed headers within gunicorn's limits) and the Outputs layer has the output on
disk, the worker answers it here, as gunicorn would have: the same status line and headers, the same
body, access log line and metrics. Anything else (a miss, a request split over several packets, any
unusual character, any header that asks for more than a plain GET) is left unread, for gunicorn to
read and answer as it always has.
"""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import BinaryIO, Optional

from gunicorn import SERVER
from gunicorn.util import http_date

# What a worker looks at: a plain request's head fits in it (gunicorn's request line limit is 8190).
HEAD_LIMIT = 8192
# An output up to this size leaves in one write with its headers; a larger one by sendfile.
IN_ONE_WRITE = 256 * 1024

_REQUEST_LINE = re.compile(
    rb"(GET|HEAD) (/[A-Za-z0-9/._-]*)(?:\?([A-Za-z0-9/._~=&%+-]*))? HTTP/1\.([01])")
# A header: a token for a name (without "_": gunicorn drops such headers, and their WSGI name could
# pass for another's), visible ASCII for a value; no obsolete line folding.
_HEADER = re.compile(rb"([!#$%&'*+.^`|~0-9A-Za-z-]+):[ \t]*((?:[\x21-\x7e][\x20-\x7e\t]*)?)")
# Headers that ask for more than a plain GET: a body, an expectation, a change of protocol, a path
# prefix. Their requests are gunicorn's to read.
_NOT_PLAIN = {"CONTENT-LENGTH", "TRANSFER-ENCODING", "EXPECT", "UPGRADE", "HTTP2-SETTINGS",
              "CONTENT-TYPE"}


@dataclass
class PlainRequest:
    """A plain GET or HEAD: its WSGI environ (what the Outputs layer and the access log read), and
    how many bytes of the connection it takes."""
    environ: dict
    length: int


def plain_request(data: bytes, client_address, field_limit: int) -> Optional[PlainRequest]:
    """The plain request at the start of `data`, or None for anything gunicorn should read."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    first = _REQUEST_LINE.fullmatch(lines[0])
    if first is None or len(lines) - 1 > field_limit:
        return None
    method, path, query, minor = (part.decode("ascii") if part is not None else None
                                  for part in first.groups())
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query or "",
               "RAW_URI": path if query is None else f"{path}?{query}",
               "SERVER_PROTOCOL": f"HTTP/1.{minor}", "SCRIPT_NAME": ""}
    if isinstance(client_address, tuple):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client_address[0], str(client_address[1])
    else:
        environ["REMOTE_ADDR"] = client_address or ""
    for line in lines[1:]:
        header = _HEADER.fullmatch(line)
        if header is None:
            return None
        name = header.group(1).decode("ascii").upper()
        if name in _NOT_PLAIN:
            return None
        key = "HTTP_" + name.replace("-", "_")
        value = header.group(2).decode("ascii").rstrip(" \t")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return PlainRequest(environ, end + 4)


def reply_head(protocol: str, status: str, headers: list[tuple[str, str]]) -> bytes:
    """The status line and headers gunicorn writes for this answer (it closes every connection)."""
    lines = [f"{protocol} {status}", f"Server: {SERVER}", f"Date: {http_date()}",
             "Connection: close", *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def send(client: socket.socket, head: bytes, body: Optional[BinaryIO]) -> None:
    """The head, then the body's file; one write for a small file (one segment for the client)."""
    if body is None:
        client.sendall(head)
    elif os.fstat(body.fileno()).st_size <= IN_ONE_WRITE:
        client.sendall(head + body.read())
    else:
        client.sendall(head)
        client.sendfile(body)
