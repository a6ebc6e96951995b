"""`<name>.auto`: the smallest format the request's Accept takes (AVIF, WebP, else JPEG, or PNG for a
source with transparency), with `Vary: Accept`, kept as the concrete file; signing, --allowed_outputs,
the work budget and the variant budget apply as to the format it stands for; `outputs=` and
`images process` take it as every format it may stand for."""
from __future__ import annotations

import os

import pytest

from imageserver.core import signing
from imageserver.core.names import accepted_types, choose_format
from imageserver.core.paths import ImageKey
from tests import pictures
from tests.helpers import assert_json_error, formats_here, image_url

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
OLD_SAFARI = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
CURL = "*/*"
SIGNING_KEY = "a-signing-key-of-32-characters-0"


def needs_avif() -> None:
    """Known once ImageMagick is set up (the session's `imagemagick` fixture): at collection, not."""
    if not formats_here().can_write("avif"):
        pytest.skip("no AVIF encoder here")


def upload(client, data: bytes, outputs: str = "") -> str:
    answer = client.post("/p" + (f"?outputs={outputs}" if outputs else ""), data=data)
    assert answer.status_code == 200, answer.data
    return answer.json["hash"]


def local(client, digest: str) -> list[str]:
    base = client.application.extensions["images"].settings.base_path
    return sorted(name for name in os.listdir(ImageKey("p", digest).local_folder(base))
                  if not name.startswith("."))


def test_auto_answers_avif_webp_or_jpeg_by_accept_with_vary(client):
    needs_avif()
    digest = upload(client, pictures.photo(640, 480))
    for accept, content_type, made in ((CHROME, "image/avif", "x300.avif"),
                                       (OLD_SAFARI, "image/webp", "x300.webp"),
                                       (CURL, "image/jpeg", "x300.jpg"), ("", "image/jpeg", "x300.jpg")):
        answer = client.get(image_url(digest, "x300.auto"), headers={"Accept": accept})
        assert answer.status_code == 200, answer.data
        assert answer.headers["Content-Type"] == content_type and answer.headers["Vary"] == "Accept"
        decode = pictures.decode_avif if content_type == "image/avif" else pictures.decode
        decoded = decode(answer.data)
        assert (decoded.width, decoded.height) == (300, 300)
        # The concrete file, shared with a request that names it.
        same = client.get(image_url(digest, made))
        assert same.data == answer.data and same.headers["X-Image-Cache"] == "hit"
        assert "Vary" not in same.headers
    assert local(client, digest) == ["info.json", "original", "x300.avif", "x300.jpg", "x300.webp"]
    # Made once per format: asked again, each is a hit.
    again = client.get(image_url(digest, "x300.auto"), headers={"Accept": CHROME})
    assert again.headers["X-Image-Cache"] == "hit" and again.headers["Content-Type"] == "image/avif"
    # Revalidation of what a cache holds.
    etag = again.headers["ETag"]
    revalidated = client.get(image_url(digest, "x300.auto"),
                             headers={"Accept": CHROME, "If-None-Match": etag})
    assert revalidated.status_code == 304 and revalidated.headers["Vary"] == "Accept"


def test_a_transparent_source_gets_png_unless_webp_is_taken(client):
    digest = upload(client, pictures.transparent_png(200, 100))
    answer = client.get(image_url(digest, "w100.auto"), headers={"Accept": CURL})
    assert answer.headers["Content-Type"] == "image/png"
    assert pictures.decode(answer.data).pixel(0, 0)[3] < 255       # still see-through
    answer = client.get(image_url(digest, "w100.auto"), headers={"Accept": "image/webp;q=0,*/*"})
    assert answer.headers["Content-Type"] == "image/png"
    answer = client.get(image_url(digest, "w100.auto"), headers={"Accept": "image/webp,*/*"})
    assert answer.headers["Content-Type"] == "image/webp"
    assert local(client, digest) == ["info.json", "original", "w100.png", "w100.webp"]


def test_auto_with_allowed_outputs_offers_only_the_allowed_formats(make_app):
    client = make_app("--allowed_outputs", "x300.webp,x300.jpg").test_client()
    digest = upload(client, pictures.photo(400, 300))
    chosen = client.get(image_url(digest, "x300.auto"), headers={"Accept": CHROME})
    assert chosen.headers["Content-Type"] == "image/webp"
    assert_json_error(client.get(image_url(digest, "x200.auto"), headers={"Accept": CHROME}), 403)
    assert_json_error(client.post("/p?outputs=x200.auto", data=pictures.photo(90, 60)), 403)


def test_auto_needs_a_signature_as_any_output(make_app):
    client = make_app("--signing_key", SIGNING_KEY).test_client()
    digest = upload(client, pictures.photo(400, 300))
    path = image_url(digest, "x300.auto")
    assert_json_error(client.get(path, headers={"Accept": CHROME}), 403)
    other = signing.signature(SIGNING_KEY, image_url(digest, "x300.webp"))
    assert_json_error(client.get(f"{path}?sig={other}", headers={"Accept": CHROME}), 403)
    signed = client.get(f"{path}?sig={signing.signature(SIGNING_KEY, path)}", headers={"Accept": OLD_SAFARI})
    assert signed.status_code == 200 and signed.headers["Content-Type"] == "image/webp"


def test_auto_is_priced_and_counted_as_the_format_it_stands_for(make_app):
    client = make_app("--maximum_request_ms", "60", "--maximum_variants", "3").test_client()
    digest = upload(client, pictures.photo(1000, 1000))
    # Too much work for the format chosen: the 413 that names the bound, and nothing on disk.
    refused = client.get(image_url(digest, "x1000.auto"), headers={"Accept": CHROME})
    assert "--maximum_request_ms" in assert_json_error(refused, 413)
    assert local(client, digest) == ["info.json", "original"]
    # The variant budget counts the concrete files (the refused x1000.avif keeps its place): two
    # formats of w50, then no more.
    assert client.get(image_url(digest, "w50.auto"), headers={"Accept": CURL}).status_code == 200
    assert client.get(image_url(digest, "w50.auto"), headers={"Accept": OLD_SAFARI}).status_code == 200
    assert "--maximum_variants" in assert_json_error(
        client.get(image_url(digest, "w60.auto"), headers={"Accept": CURL}), 403)


def test_outputs_auto_makes_every_format_it_may_stand_for(client):
    needs_avif()
    opaque = upload(client, pictures.photo(400, 300), outputs="w100.auto")
    assert local(client, opaque) == ["info.json", "original", "w100.avif", "w100.jpg", "w100.webp"]
    seethrough = upload(client, pictures.transparent_png(40, 30), outputs="w20.auto")
    assert local(client, seethrough) == ["info.json", "original", "w20.avif", "w20.png", "w20.webp"]
    answer = client.post(image_url(opaque, "process?outputs=x50.auto"))
    assert answer.status_code == 200
    assert {"x50.avif", "x50.jpg", "x50.webp"} <= set(local(client, opaque))


def test_accept_header_reading():
    assert {"image/avif", "image/webp"} <= accepted_types(CHROME)
    assert "image/avif" not in accepted_types("image/avif;q=0, image/webp")
    assert "image/avif" not in accepted_types("image/avif; q=0.000")
    assert "image/avif" in accepted_types("IMAGE/AVIF;q=0.1")
    assert choose_format("image/avif,image/webp", ["webp", "jpg", "png"], lambda: False) == "webp"
    assert choose_format("*/*", ["avif", "webp", "jpg", "png"], lambda: True) == "png"
    assert choose_format("*/*", ["avif", "webp", "jpg"], lambda: True) == "jpg"
    asked = []
    choose_format("image/webp", ["webp", "jpg"], lambda: asked.append(1) or False)
    assert asked == []      # the original is read only to choose between JPEG and PNG
