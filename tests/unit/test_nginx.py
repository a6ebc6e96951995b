"""The nginx block's text for given settings (nginx itself runs it in tests/system/test_nginx.py)."""
import pytest

from imageserver import nginx
from imageserver.errors import SettingsError
from imageserver.settings import Settings


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
