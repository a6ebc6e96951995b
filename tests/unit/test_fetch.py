"""The source URL guard and downloader, against real HTTP(S) servers on loopback.

Host names other than localhost are given addresses by a stand-in resolver (there is no DNS server
here to play tricks with), but for the name server that never answers (a real lookup, its name
server played on loopback by a silent socket); everything else is real: sockets, TLS, redirects,
slow and huge bodies.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from imageserver.core.errors import BadRequest, Forbidden, GatewayTimeout, NotFound, PayloadTooLarge
from imageserver.sources import addresses, bounds, fetch
from tests import pictures
from tests.trickle import SLOW_HANDSHAKE, SLOW_HEADERS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = bounds.SourceRules(timeout=10, maximum_bytes=1_000_000, allow_private=True)
PUBLIC = bounds.SourceRules(timeout=10, maximum_bytes=1_000_000, allow_private=False)


class Handler(BaseHTTPRequestHandler):
    """/image: a PNG; /redirect/N: N more redirects then /image; /to?u=URL: redirect to URL;
    /big: 64 MB without a Content-Length; /declared: claims 2 MB; /drip: a byte at a time, forever."""
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("Host")))
        if self.path == "/image":
            self._send(200, self.server.image)
        elif self.path.startswith("/redirect/"):
            left = int(self.path.rsplit("/", 1)[1])
            self._redirect("/image" if left == 0 else f"/redirect/{left - 1}")
        elif self.path.startswith("/to?u="):
            self._redirect(self.path[len("/to?u="):])
        elif self.path == "/big":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(1024):
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                self.server.broken.set()
        elif self.path == "/declared":
            self.send_response(200)
            self.send_header("Content-Length", str(2_000_000))
            self.end_headers()
        elif self.path == "/drip":
            self.send_response(200)
            self.end_headers()
            try:
                while not self.server.stopping.wait(0.2):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
            except OSError:
                pass
        else:
            self._send(404, b"no")

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def serve(tls_context: ssl.SSLContext | None = None):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    if tls_context:
        httpd.socket = tls_context.wrap_socket(httpd.socket, server_side=True)
    httpd.image = pictures.solid(20, 10, "red")
    httpd.seen, httpd.broken, httpd.stopping = [], threading.Event(), threading.Event()
    httpd.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def origin():
    httpd = serve()
    yield httpd
    httpd.stopping.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def resolver(monkeypatch):
    """names[host] = [answer, ...]: each lookup of `host` takes the next answer (the last one
    stays); an answer is an address or a list of them. Every lookup is counted in `calls`."""
    real = socket.getaddrinfo
    names, calls = {}, []

    def getaddrinfo(host, port, *args, **kwargs):
        calls.append(host)
        if host not in names:
            return real(host, port, *args, **kwargs)
        answers = names[host]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (address, port)) for address in ([answer] if isinstance(answer, str) else answer)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    getaddrinfo.names, getaddrinfo.calls = names, calls
    return getaddrinfo


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1",
    "169.254.1.1", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "2002:7f00:1::1", "2002:a00:1::1", "64:ff9b::7f00:1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
])
def test_non_public_addresses_are_refused(address):
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(Forbidden):
        addresses.check_url(f"http://{host}/x.jpg", PUBLIC)


# Each IPv6 form that carries an IPv4 address, with the address it carries.
EMBEDDED = [
    ("::127.0.0.1", "127.0.0.1"),                   # IPv4-compatible
    ("::10.1.2.3", "10.1.2.3"),
    ("::ffff:127.0.0.1", "127.0.0.1"),              # IPv4-mapped
    ("::ffff:0:7f00:1", "127.0.0.1"),               # IPv4-translated
    ("::ffff:0:192.168.0.1", "192.168.0.1"),
    ("2002:7f00:1::1", "127.0.0.1"),                # 6to4
    ("2002:a9fe:a9fe:1::1", "169.254.169.254"),
    ("64:ff9b::7f00:1", "127.0.0.1"),               # NAT64
    ("64:ff9b::10.0.0.1", "10.0.0.1"),
    ("64:ff9b:1::a00:1", "10.0.0.1"),               # NAT64 local use, as a /96
    ("64:ff9b:1:a00:0:100::", "10.0.0.1"),          # ... and as a /48 (bits 64-71 skipped)
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),  # Teredo: its client (bits inverted)
    ("2001:0:a00:1:8000:63bf:a247:27dd", "10.0.0.1"),       # Teredo: its server
]


@pytest.mark.parametrize("address, inside", EMBEDDED)
def test_the_ipv4_address_inside_an_ipv6_address_is_found(address, inside):
    assert ipaddress.ip_address(inside) in addresses.embedded_ipv4(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [a for a, _ in EMBEDDED] + ["::", "::1", "::ffff:0:0"])
def test_ipv6_forms_of_non_public_ipv4_addresses_are_refused(address):
    with pytest.raises(Forbidden, match="non-public|metadata"):
        addresses.check_url(f"http://[{address}]:8080/a.jpg", PUBLIC)


@pytest.mark.parametrize("address", [
    "::93.184.216.34", "::ffff:93.184.216.34", "::ffff:0:93.184.216.34", "2002:5db8:d822::1",
    "64:ff9b::93.184.216.34", "2001:0:5db8:d822::a247:27dd"])
def test_ipv6_forms_of_public_ipv4_addresses_are_judged_by_them(address):
    checked = addresses.check_url(f"http://[{address}]/a.jpg", PUBLIC).address
    assert ipaddress.ip_address(checked) == ipaddress.ip_address(address)


@pytest.mark.parametrize("address", [
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "::ffff:169.254.169.254",
    "::169.254.169.254", "::ffff:0:169.254.169.254", "2002:a9fe:a9fe::", "64:ff9b::169.254.169.254",
    "64:ff9b:1::a9fe:a9fe", "2001:0:a9fe:a9fe::", "2001::5601:5601", "::100.100.100.200",
    "::ffff:0:169.254.170.2"])
def test_cloud_metadata_is_refused_even_when_private_sources_are_allowed(address):
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(Forbidden, match="metadata"):
        addresses.check_url(f"http://{host}/latest/meta-data/", RULES)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946",
                                     "::ffff:93.184.216.34"])
def test_public_addresses_pass_and_are_the_ones_connected_to(address):
    host = f"[{address}]" if ":" in address else address
    target = addresses.check_url(f"https://{host}/a/b.jpg?x=1", PUBLIC)
    assert (target.address, target.port, target.target) == (address, 443, "/a/b.jpg?x=1")


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "gopher://x/",
                                 "javascript:alert(1)", "/relative.jpg", "http://", "http://[::1",
                                 "http://user:secret@example.com/a.jpg", "http://x/" + "a" * 5000])
def test_only_plain_http_and_https_urls(url):
    with pytest.raises(BadRequest):
        addresses.check_url(url, RULES)


def test_every_address_of_a_host_is_checked(resolver):
    resolver.names["one.test"] = ["93.184.216.34"]
    assert addresses.check_url("http://one.test/", PUBLIC).address == "93.184.216.34"
    resolver.names["two.test"] = [["93.184.216.34", "10.0.0.1"]]
    with pytest.raises(Forbidden, match="10.0.0.1"):
        addresses.check_url("http://two.test/", PUBLIC)


@pytest.mark.parametrize("host, allowed, ok", [
    ("images.example.com", (".example.com",), True), ("example.com", (".example.com",), True),
    ("evilexample.com", (".example.com",), False), ("example.com.evil.net", (".example.com",), False),
    ("cdn.site.org", ("cdn.site.org",), True), ("x.cdn.site.org", ("cdn.site.org",), False),
    ("CDN.Site.org", ("cdn.site.org",), True),
])
def test_allowed_source_hosts(host, allowed, ok):
    assert addresses.host_allowed(host, allowed) is ok


def test_a_host_outside_the_allowed_list_is_refused_before_any_lookup(resolver, origin):
    rules = bounds.SourceRules(10, 1_000_000, True, ("images.test",))
    with pytest.raises(Forbidden, match="allowed_source_hosts"):
        fetch.download(f"http://localhost:{origin.port}/image", rules)
    assert "localhost" not in resolver.calls and origin.seen == []


def test_a_redirect_to_a_host_outside_the_list_is_refused(resolver, origin):
    resolver.names["images.test"] = ["127.0.0.1"]
    rules = bounds.SourceRules(10, 1_000_000, True, ("images.test",))
    elsewhere = f"http://localhost:{origin.port}/image"
    with pytest.raises(Forbidden):
        fetch.download(f"http://images.test:{origin.port}/to?u={elsewhere}", rules)
    assert [path for path, _ in origin.seen] == [f"/to?u={elsewhere}"]


@pytest.mark.only_loopback
def test_the_checked_address_is_the_one_connected_to(resolver, origin):
    """DNS rebinding: the name answers 127.0.0.1 at the check, then an address that goes nowhere.
    The download works only if it connects to the address it checked, resolving once."""
    resolver.names["rebind.test"] = ["127.0.0.1", "10.255.255.1"]
    data = fetch.download(f"http://rebind.test:{origin.port}/image", RULES)
    assert data == origin.image
    assert resolver.calls.count("rebind.test") == 1
    assert origin.seen == [("/image", f"rebind.test:{origin.port}")]


@pytest.mark.only_loopback
def test_a_name_that_rebinds_to_a_private_address_after_the_check_is_never_reached(resolver, origin):
    """The first answer is public (and unreachable from here); a second lookup would say 127.0.0.1,
    where the origin listens. No request may arrive there."""
    resolver.names["rebind.test"] = ["93.184.216.34", "127.0.0.1"]
    rules = bounds.SourceRules(timeout=1, maximum_bytes=1_000_000, allow_private=False)
    with pytest.raises((NotFound, GatewayTimeout)):
        fetch.download(f"http://rebind.test:{origin.port}/image", rules)
    assert origin.seen == []


def test_five_redirects_are_followed_and_the_sixth_is_not(origin):
    base = f"http://127.0.0.1:{origin.port}"
    assert fetch.download(f"{base}/redirect/4", RULES) == origin.image
    with pytest.raises(NotFound, match="redirected more than 5"):
        fetch.download(f"{base}/redirect/5", RULES)


@pytest.mark.only_loopback
@pytest.mark.parametrize("location, error", [
    ("http://169.254.169.254/latest/meta-data/", Forbidden), ("http://169.254.170.2/v2/", Forbidden),
    ("file:///etc/passwd", BadRequest), ("ftp://127.0.0.1/a.jpg", BadRequest),
])
def test_each_redirect_is_checked_again(origin, location, error):
    with pytest.raises(error):
        fetch.download(f"http://127.0.0.1:{origin.port}/to?u={location}", RULES)
    assert len(origin.seen) == 1


def test_a_redirect_from_a_public_looking_host_to_loopback_is_refused(resolver, origin, monkeypatch):
    """The first hop stands for a public host (its loopback address is let through for it alone);
    its redirect to 127.0.0.1 is refused at the second hop, before it is requested."""
    resolver.names["cdn.test"] = ["127.0.0.1"]
    checked = []
    real_check = addresses.check_address

    def check(host, address, allow_private):
        checked.append(host)
        real_check(host, address, host == "cdn.test")

    monkeypatch.setattr(addresses, "check_address", check)
    inside = f"http://127.0.0.1:{origin.port}/image"
    with pytest.raises(Forbidden, match="127.0.0.1"):
        fetch.download(f"http://cdn.test:{origin.port}/to?u={inside}", PUBLIC)
    assert checked == ["cdn.test", "127.0.0.1"]
    assert [path for path, _ in origin.seen] == [f"/to?u={inside}"]


def test_the_size_limit_holds_while_streaming(origin):
    rules = bounds.SourceRules(timeout=10, maximum_bytes=100_000, allow_private=True)
    with pytest.raises(PayloadTooLarge):
        fetch.download(f"http://127.0.0.1:{origin.port}/big", rules)
    assert origin.broken.wait(10), "the download went on after the limit"


def test_a_declared_length_over_the_limit_is_refused_unread(origin):
    with pytest.raises(PayloadTooLarge):
        fetch.download(f"http://127.0.0.1:{origin.port}/declared", RULES)


@pytest.mark.timeout(30)
def test_the_time_limit_holds_for_a_source_that_never_ends(origin):
    rules = bounds.SourceRules(timeout=1, maximum_bytes=1_000_000, allow_private=True)
    with pytest.raises(GatewayTimeout):
        fetch.download(f"http://127.0.0.1:{origin.port}/drip", rules)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme, reply", [("http", SLOW_HEADERS), ("https", SLOW_HANDSHAKE)],
                         ids=["status-line-and-headers", "tls-handshake"])
def test_the_time_limit_holds_for_a_source_that_sends_a_byte_at_a_time(trickler, scheme, reply):
    """Every byte comes well within the timeout, so no single receive times out: the whole download
    is what is bounded. The source sees the connection dropped long before it is done."""
    source = trickler(reply)
    rules = bounds.SourceRules(timeout=1, maximum_bytes=1_000_000, allow_private=True)
    with pytest.raises(GatewayTimeout):
        fetch.download(f"{scheme}://127.0.0.1:{source.port}/a.png", rules)
    sent = source.wait_for_clients_gone(1, seconds=30)
    assert len(sent) == 1 and sent[0] < len(reply) / 4, sent
    assert source.finished == 0


@pytest.fixture(scope="module")
def authority():
    return trustme.CA()


def tls_origin(authority, name: str):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(context)
    return serve(context)


@pytest.mark.only_loopback
def test_https_connects_to_the_checked_address_and_checks_the_name(authority, resolver, monkeypatch,
                                                                  tmp_path):
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    resolver.names["images.test"] = ["127.0.0.1", "10.255.255.1"]
    httpd = tls_origin(authority, "images.test")
    try:
        data = fetch.download(f"https://images.test:{httpd.port}/image", RULES)
        assert data == httpd.image
        assert httpd.seen == [("/image", f"images.test:{httpd.port}")]
        assert resolver.calls.count("images.test") == 1
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_https_refuses_a_certificate_for_another_name(authority, resolver, monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    resolver.names["images.test"] = ["127.0.0.1"]
    httpd = tls_origin(authority, "other.test")
    try:
        with pytest.raises(NotFound, match="cannot be reached"):
            fetch.download(f"https://images.test:{httpd.port}/image", RULES)
        assert httpd.seen == []
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_https_refuses_an_unknown_authority(resolver, tmp_path):
    httpd = tls_origin(trustme.CA(), "images.test")
    resolver.names["images.test"] = ["127.0.0.1"]
    try:
        with pytest.raises(NotFound):
            fetch.download(f"https://images.test:{httpd.port}/image", RULES)
    finally:
        httpd.shutdown()
        httpd.server_close()


# A real lookup through this machine's resolver, in a process of its own, whose first name server
# (from /etc/resolv.conf) is played, in this test's network namespace, by a socket on loopback that
# takes every query and never answers; the resolver told to wait 30 s for it (RES_OPTIONS).
LOOKUP = """
import sys, time
from imageserver.sources import addresses
from imageserver.core.errors import GatewayTimeout
started = time.monotonic()
try:
    addresses.addresses_of("never.answered.test", 80, float(sys.argv[1]))
except GatewayTimeout as error:
    print(round(time.monotonic() - started, 1), error)
"""


def first_name_server() -> str:
    with open("/etc/resolv.conf") as conf:
        for line in conf:
            words = line.split()
            if words[:1] == ["nameserver"] and len(words) > 1:
                return words[1]
    return "127.0.0.1"      # the resolver's default


@pytest.mark.only_loopback
@pytest.mark.timeout(60)
def test_a_name_server_that_never_answers_is_waited_for_only_the_time_allowed():
    address = ipaddress.ip_address(first_name_server())
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    on_loopback = f"{address}/{address.max_prefixlen}"
    if not address.is_loopback:   # this network namespace's loopback answers for it
        subprocess.run(["ip", "addr", "add", on_loopback, "dev", "lo"], check=True)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as name_server:
            name_server.bind((str(address), 53))
            looked_up = subprocess.run([sys.executable, "-c", LOOKUP, "1.5"], capture_output=True,
                                       text=True, timeout=50, cwd=ROOT,
                                       env={**os.environ, "RES_OPTIONS": "timeout:30 attempts:1"})
            assert looked_up.stdout, looked_up.stderr
            seconds, message = looked_up.stdout.split(" ", 1)
            assert 1.5 <= float(seconds) < 5, looked_up.stdout
            assert "'never.answered.test' was not resolved in time" in message
            name_server.settimeout(5)
            query, _ = name_server.recvfrom(512)
        assert b"never" in query and b"answered" in query       # the lookup did ask it
    finally:
        if not address.is_loopback:
            subprocess.run(["ip", "addr", "del", on_loopback, "dev", "lo"], check=True)
