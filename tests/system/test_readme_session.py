"""The README's curl session, against a real `images server`."""
from tests import pictures
from tests.helpers import folder_of


def test_upload_then_info_then_sizes(shared_server, photo_jpeg):
    posted = shared_server.post("/p?outputs=x300.jpg,x300.webp", data=photo_jpeg)
    assert posted.status_code == 200, posted.text
    info = posted.json()
    assert list(info) == ["hash", "height", "width", "content_type"]
    assert (info["width"], info["height"], info["content_type"]) == (800, 600, "image/jpeg")
    folder = folder_of(info["hash"])
    assert shared_server.get(folder + "/info.json").json() == info
    for name, size, fmt in [("w200.jpg", (200, 150), "JPEG"), ("x200.jpg", (200, 200), "JPEG"),
                            ("300x200.jpg", (300, 200), "JPEG"), ("x200-q30.jpg", (200, 200), "JPEG"),
                            ("x300.webp", (300, 300), "WEBP")]:
        got = shared_server.get(f"{folder}/{name}")
        assert got.status_code == 200, (name, got.text)
        image = pictures.decode(got.content)
        assert (image.width, image.height, image.format) == (*size, fmt), name
