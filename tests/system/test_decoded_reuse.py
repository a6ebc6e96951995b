"""A worker keeps the sources it decoded last (imageserver/imaging/decoded.py): the next sizes of the same
image are made from a copy of its pixels, not decoded again. Seen from outside: the server counts
each render that started from a kept decode (statsd), a page's sizes of one new image are made from
one decode where the same sizes of as many new images are not, and each looks as it does made from
the original alone (the same bytes). The worker CPU of both is printed, not asserted."""
from __future__ import annotations

from imageserver.core.names import parse_output
from imageserver.core.settings import Settings
from imageserver.imaging import pipeline
from tests import pictures
from tests.helpers import image_url, workers_cpu_seconds

# Sizes that a 2400x1800 JPEG is decoded for at one scale (2/8, shrink-on-load): a page's thumbnails.
SIZES = ("w400.jpg", "x250.jpg", "w300.jpg", "x280.jpg", "360x240.jpg")
ROUNDS = 3



def upload(server, data: bytes) -> str:
    answer = server.post("/p", files={"file": ("a.jpg", data)})
    assert answer.status_code == 200, answer.text
    return answer.json()["hash"]


REUSED = "image_server.processing.decoded_reused:1|c"


def test_the_sizes_of_one_new_image_are_made_from_one_decode_and_look_the_same(start_server,
                                                                              statsd_listener):
    server = start_server("--workers", "1", "--maximum_variants", "0",
                          "--statsd_port", str(statsd_listener.port))
    source = pictures.photo(2400, 1800)
    # The worker's first render loads coders and profiles: not measured.
    assert server.get(image_url(upload(server, source + b"first"), "w100.jpg")).status_code == 200
    together = apart = 0.0
    outputs = {}
    statsd_listener.clear()
    for number in range(ROUNDS):
        # Each upload a new image (a trailing comment apart: decoders stop at the end marker).
        digest = upload(server, source + f"together {number}".encode())
        cpu = workers_cpu_seconds(server)
        for name in SIZES:
            answer = server.get(image_url(digest, name))
            assert answer.status_code == 200, answer.text
            outputs[name] = answer.content
        together += workers_cpu_seconds(server) - cpu
        # Every size after the first starts from the first one's decode.
        statsd_listener.wait_for_count(REUSED, (number + 1) * (len(SIZES) - 1))
        digests = [upload(server, source + f"apart {number} {name}".encode()) for name in SIZES]
        cpu = workers_cpu_seconds(server)
        for digest, name in zip(digests, SIZES):
            assert server.get(image_url(digest, name)).status_code == 200
        apart += workers_cpu_seconds(server) - cpu
    print(f"\n  {len(SIZES)} sizes of one image: {1000 * together / ROUNDS:.0f} ms of worker CPU; "
          f"of {len(SIZES)} images: {1000 * apart / ROUNDS:.0f} ms")
    # No other image's sizes were made from a kept decode.
    statsd_listener.wait_for_count(REUSED, ROUNDS * (len(SIZES) - 1))
    for name, output in outputs.items():
        spec = parse_output(name, Settings())
        fresh = pipeline.render(source, spec, 75)
        got, expected = pictures.decode(output), pictures.decode(fresh)
        assert (got.width, got.height) == (expected.width, expected.height)
        similarity = pictures.ssim(output, fresh)
        print(f"  {name}: SSIM {similarity:.4f} against a render from the original alone")
        assert similarity > 0.99, name
