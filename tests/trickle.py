"""A source that answers one byte at a time, on loopback: the slow-headers attack on a real socket.

Each connection gets `reply` a byte every `interval` seconds once its request has come; the server
notes how many bytes each connection took before its client went away, and whether it ever did.
"""
from __future__ import annotations

import select
import socket
import threading

# A status line and headers, never finished at one byte a tenth of a second within any test's wait.
SLOW_HEADERS = (b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"a" * 200 +
                b"\r\nContent-Length: 10\r\n\r\n0123456789")
# A TLS record header announcing 16 KB of handshake, then its body: a handshake that never ends.
SLOW_HANDSHAKE = b"\x16\x03\x03\x40\x00" + b"\x02" * 16384


class Trickler:
    def __init__(self, reply: bytes = SLOW_HEADERS, interval: float = 0.1):
        self.reply, self.interval = reply, interval
        self.sent: list[int] = []           # bytes sent to each connection whose client went away
        self.finished = 0                   # connections that got all of `reply`
        self.accepted = 0
        self.gone = threading.Condition()
        self.stopping = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def wait_for_clients_gone(self, count: int, seconds: float) -> list[int]:
        """The byte counts of the first `count` connections whose client went away (fewer if
        `seconds` pass first)."""
        with self.gone:
            self.gone.wait_for(lambda: len(self.sent) >= count, seconds)
            return list(self.sent)

    def wait_for_connections(self, count: int, seconds: float) -> bool:
        with self.gone:
            return self.gone.wait_for(lambda: self.accepted >= count, seconds)

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with self.gone:
                self.accepted += 1
                self.gone.notify_all()
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(10)
            request = b""
            try:
                # A TLS client speaks first too (its hello): the first bytes are enough.
                while b"\r\n\r\n" not in request and not request.startswith(b"\x16"):
                    data = connection.recv(65536)
                    if not data:
                        return self._went_away(0)
                    request += data
            except OSError:
                return self._went_away(0)
            for sent in range(len(self.reply)):
                if self.stopping.wait(self.interval) or self._client_gone(connection):
                    return self._went_away(sent)
                try:
                    connection.sendall(self.reply[sent:sent + 1])
                except OSError:
                    return self._went_away(sent)
            with self.gone:
                self.finished += 1

    @staticmethod
    def _client_gone(connection: socket.socket) -> bool:
        """True once the client has closed (or shut down) its end."""
        if not select.select([connection], [], [], 0)[0]:
            return False
        try:
            return connection.recv(65536) == b""
        except OSError:
            return True

    def _went_away(self, sent: int) -> None:
        with self.gone:
            self.sent.append(sent)
            self.gone.notify_all()
