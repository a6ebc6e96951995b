"""AVIF outputs through a real server, and from disk through the nginx block: the right content type,
the size asked for, and /status_check saying that AVIF is written here."""
from tests import pictures
from tests.helpers import folder_of
from tests.system.test_nginx import app_and_nginx  # noqa: F401 (a fixture)


def test_avif_outputs_from_the_app_and_from_nginx(app_and_nginx, photo_jpeg):  # noqa: F811
    app, nginx = app_and_nginx
    assert "avif" in app.get("/status_check").json()["writes"]
    posted = app.post("/p?outputs=x300-q50.avif", data=photo_jpeg)
    assert posted.status_code == 200, posted.text
    made = app.get(folder_of(posted.json()["hash"]) + "/w200.avif")
    assert made.status_code == 200, made.text
    assert made.headers["Content-Type"] == "image/avif"
    image = pictures.decode_avif(made.content)
    assert (image.width, image.height) == (200, 150)
    from_disk = nginx.get(folder_of(posted.json()["hash"]) + "/x300-q50.avif")
    assert from_disk.status_code == 200
    assert from_disk.headers["Content-Type"] == "image/avif"
    image = pictures.decode_avif(from_disk.content)
    assert (image.width, image.height) == (300, 300)
