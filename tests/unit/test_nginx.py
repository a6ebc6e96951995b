"""The nginx block's text for given settings (nginx itself runs it in tests/system/test_nginx.py)."""
import re

import pytest

from imageserver.commands import nginx
from imageserver.core.errors import SettingsError
from imageserver.core.names import CONTENT_TYPES
from imageserver.core.paths import ImageKey
from imageserver.core.settings import Settings


@pytest.mark.parametrize("listen, upstream", [
    ("0.0.0.0", "127.0.0.1:7000"), ("::", "[::1]:7000"), ("10.0.0.5", "10.0.0.5:7000")])
def test_nginx_reaches_the_app_where_it_listens(listen, upstream):
    assert nginx.app_address(Settings(listen=listen)) == upstream
    assert f"proxy_pass http://{upstream};" in nginx.server_block(Settings(listen=listen))


def test_nginx_block_follows_the_settings():
    block = nginx.server_block(Settings(maximum_upload_bytes=1234, nginx_listen="[::]:8080",
                                        nginx_access_log=""))
    assert "client_max_body_size 1234;" in block
    assert "listen [::]:8080;" in block
    assert "access_log off;" in block
    with pytest.raises(SettingsError, match="nginx would misread"):
        nginx.server_block(Settings(local_base_path="/srv/$images"))


def test_nginx_serves_what_the_app_names_and_types():
    """The output location is the app's folder grammar and content types, for the enabled extensions."""
    block = nginx.server_block(Settings(extensions=("png", "webp")))
    output = re.search(r'location ~ "(.+)" \{\n\s+types \{ (.*) \}', block)
    folder = "/" + ImageKey("p", "6e0072682e66287b662827da75b244a3").folder
    assert re.fullmatch(output.group(1), folder + "/x300-q80.webp")
    assert not re.fullmatch(output.group(1), folder + "/x300.jpg")
    assert not re.fullmatch(output.group(1), "/p/6e0/072/682/e66287b662827da75b244a/x300.webp")
    assert output.group(2) == f"{CONTENT_TYPES['png']} png; {CONTENT_TYPES['webp']} webp;"
    assert re.search(r'location ~ "(.+)" \{', block[output.end():]).group(1).endswith("/info\\.json$")
