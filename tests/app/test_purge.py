"""DELETE /<ns>/<folder> on a server with no remote store: local disk is the only copy, and the purge
removes all of it; the answers to a missing or wrong key (two servers on one bucket, nginx and a
crash: tests/system/test_purge.py)."""
from __future__ import annotations

import os

from imageserver.core.paths import ImageKey
from tests import pictures
from tests.helpers import assert_json_error, folder_of, image_url

KEY = "a-purge-key-of-32-characters-000"


def test_a_purge_removes_every_local_file_and_the_bytes_can_come_again(make_app):
    client = make_app("--purge_key", KEY).test_client()
    base = client.application.extensions["images"].settings.base_path
    photo = pictures.photo(200, 150)
    digest = client.post("/p?outputs=x50.jpg", data=photo).json["hash"]
    assert client.get(image_url(digest, "w40.auto")).status_code == 200
    folder = ImageKey("p", digest).local_folder(base)
    assert ".variants" in os.listdir(folder)

    answer = client.delete(folder_of(digest), headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200
    assert answer.json == {"purged": ImageKey("p", digest).folder, "removed": {"store": 0, "local": 5}}
    assert not os.path.exists(os.path.join(base, "p", digest[:3]))
    assert os.listdir(os.path.join(base, ".imageserver", "purges")) == []
    for name in ("original", "info.json", "x50.jpg", "w40.jpg"):
        assert_json_error(client.get(image_url(digest, name)), 404)
    # Again: nothing left to remove, and said so.
    again = client.delete(folder_of(digest), headers={"Authorization": f"Bearer {KEY}"})
    assert again.status_code == 200 and again.json["removed"] == {"store": 0, "local": 0}
    assert client.post("/p", data=photo).json["hash"] == digest
    assert client.get(image_url(digest, "x50.jpg")).status_code == 200


def test_a_purge_without_the_key_is_refused_and_removes_nothing(make_app, client):
    with_key = make_app("--purge_key", KEY).test_client()
    digest = with_key.post("/p", data=pictures.photo(60, 40)).json["hash"]
    missing = with_key.delete(folder_of(digest))
    assert_json_error(missing, 401)
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = {"Authorization": "Bearer " + "k" * 32}
    assert_json_error(with_key.delete(folder_of(digest), headers=wrong), 403)
    assert_json_error(with_key.delete(folder_of(digest), headers={"Authorization": KEY}), 401)
    assert with_key.get(image_url(digest, "info.json")).status_code == 200
    # Without --purge_key the method is not offered.
    digest = client.post("/p", data=pictures.photo(60, 40)).json["hash"]
    assert_json_error(client.delete(folder_of(digest), headers={"Authorization": f"Bearer {KEY}"}), 405)
    assert client.get(image_url(digest, "info.json")).status_code == 200
