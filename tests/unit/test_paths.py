import pytest

from imageserver.core.errors import BadRequest, NotFound
from imageserver.core.paths import ImageKey, check_namespace

H = "6e0072682e66287b662827da75b244a3"


def test_partitioned_folder():
    key = ImageKey("p", H)
    assert key.folder == "p/6e0/072/682/e66287b662827da75b244a3"
    assert key.local_file("/srv/public", "x300.jpg") == \
        "/srv/public/p/6e0/072/682/e66287b662827da75b244a3/x300.jpg"
    assert key.remote_file("/images/", "info.json") == \
        "images/p/6e0/072/682/e66287b662827da75b244a3/info.json"
    assert key.remote_file("", "original") == "p/6e0/072/682/e66287b662827da75b244a3/original"


def test_from_url_parts():
    assert ImageKey.from_url_parts("p", "6e0", "072", "682", "e66287b662827da75b244a3").hash == H
    for parts in [("6E0", "072", "682", "e66287b662827da75b244a3"),
                  ("6e0", "072", "682", "e66287b662827da75b244a"),
                  ("6e0", "07", "2682", "e66287b662827da75b244a3"),
                  ("..", "072", "682", "e66287b662827da75b244a3")]:
        with pytest.raises(NotFound):
            ImageKey.from_url_parts("p", *parts)


def test_from_path_takes_the_last_partitioned_hash():
    path = "/data/public/p/6e0/072/682/e66287b662827da75b244a3/original"
    assert ImageKey.from_path(path, "avatars") == ImageKey("avatars", H)
    with pytest.raises(BadRequest):
        ImageKey.from_path("/tmp/original", "p")


@pytest.mark.parametrize("namespace", ["", "P", "a-b", "a/b", "..", "x" * 65, "é"])
def test_bad_namespaces(namespace):
    with pytest.raises(BadRequest):
        check_namespace(namespace)


def test_good_namespaces():
    for namespace in ("p", "avatars", "product_images_2", "x" * 64):
        assert check_namespace(namespace) == namespace
