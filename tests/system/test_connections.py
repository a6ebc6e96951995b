"""How a worker ends a connection after its reply, over raw sockets against a real gunicorn: at once
when the client has sent nothing more (the worker is free for the next connection), gracefully (the
rest drained, no reset) when the client sent more than was read, so that every reply arrives whole."""
from __future__ import annotations

import socket
import struct
from urllib.parse import urlsplit

import pytest

from tests import pictures
from tests.helpers import image_url, wait_until

TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8


@pytest.fixture(scope="module")
def output(shared_server) -> tuple[str, bytes]:
    """The URL path of an output already made, and its bytes."""
    digest = shared_server.post("/p", data=pictures.photo(120, 80)).json()["hash"]
    path = image_url(digest, "x40.jpg")
    made = shared_server.get(path)
    assert made.status_code == 200
    return path, made.content


def connect(url: str) -> socket.socket:
    address = urlsplit(url)
    return socket.create_connection((address.hostname, address.port), timeout=30)


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def read_to_the_end(sock: socket.socket) -> bytes:
    """Everything the server sent, until it closed its side; raises if the connection was reset."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def body_of(reply: bytes) -> bytes:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    assert len(body) == length
    return body


def tcp_state(sock: socket.socket) -> int:
    return struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0]


def test_a_plain_client_gets_its_reply_and_the_connection_closed_at_once(shared_server, output):
    path, expected = output
    with connect(shared_server.url) as sock:
        sock.sendall(request(path))
        assert body_of(read_to_the_end(sock)) == expected
        # The server closed, and did not wait for this client to close first (a worker waiting
        # would drain the byte below and keep its side open): a socket closed for good answers it
        # with a reset.
        assert tcp_state(sock) == TCP_CLOSE_WAIT
        sock.send(b"x")
        wait_until(lambda: tcp_state(sock) == TCP_CLOSE, "the server closing", seconds=10, step=0.01)


def test_a_client_that_sent_more_than_was_read_still_gets_its_whole_reply(shared_server, output):
    path, expected = output
    # Pipelined requests, more than gunicorn reads with the first: unread bytes are left in the
    # socket when the reply is sent. Closing then would reset the connection; the server drains.
    pipelined = request(path) * 400
    assert 16384 < len(pipelined) < 65536     # gunicorn drains up to 64 KB
    with connect(shared_server.url) as sock:
        sock.sendall(pipelined)
        reply = read_to_the_end(sock)      # raises ConnectionResetError on a reset
        assert body_of(reply) == expected   # the first reply, whole; the rest were not answered
