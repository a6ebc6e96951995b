"""`images nginx_config`: the nginx block that serves made outputs from disk and passes the rest on.

The URL path of an output is its path under --local_base_path, and outputs are written whole under
their final name (`files.write_atomically`), so nginx can send a file that exists without asking the
app; a file that does not exist yet is made by the app. Temporary and lock files start with a dot
and are refused. With --signing_key, outputs go to the app, which checks the signature and has nginx
send a file on disk (X-Accel-Redirect). The block itself is the template nginx.conf.j2 beside this
module.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.resources import files
from typing import TYPE_CHECKING

import jinja2

from imageserver.core.errors import SettingsError
from imageserver.core.json_text import pretty
from imageserver.core.names import AUTO_MODERN, CONTENT_TYPES
from imageserver.core.paths import (
    ACCEL_HEADER,
    ACCEL_LOCATION,
    ACCEL_LOCATION_VARY_ACCEPT,
    CACHE_CONTROL,
    INFO,
    NAMESPACE,
    PARTITIONED,
    STATE_FOLDER,
)
from imageserver.core.version import __version__

if TYPE_CHECKING:
    from imageserver.core.settings import Settings

# The URL path of an image's folder, as the app's routes and paths.ImageKey take it.
IMAGE_FOLDER = f"/{NAMESPACE.pattern}/{PARTITIONED.pattern}/"
# nginx waits a little longer than gunicorn lets a worker run (its `timeout`), so that a slow output
# is answered by the app (or by gunicorn's restart of it), not cut off by nginx first.
APP_TIMEOUT_SECONDS = 60
READ_TIMEOUT_SECONDS = APP_TIMEOUT_SECONDS + 15
UNSAFE_IN_PATHS = set('"\\$;{}\n\r')


def run_nginx_config(settings: Settings) -> int:
    """`images nginx_config`: the block on standard output, for what this ImageMagick writes (`.auto`
    offers AVIF where it is written)."""
    from imageserver.images.setup import init_worker
    from imageserver.imaging import formats
    set_up = init_worker(settings)
    print(server_block(settings, formats.writable_extensions(set_up.formats)), end="")
    return 0


def server_block(settings: Settings, writable: Iterable[str] = ()) -> str:
    """The nginx configuration text for these settings: a log format, the maps of `.auto` outputs
    and one server block. `writable`: the extensions this ImageMagick writes (`.auto` offers AVIF
    only where it is written)."""
    for what, text in (("--local_base_path", settings.base_path),
                       ("--nginx_access_log", settings.nginx_access_log)):
        if UNSAFE_IN_PATHS & set(text):
            raise SettingsError(f"{what} {text!r} has characters nginx would misread")
    return _template().render(
        settings=settings, version=__version__, root=settings.base_path, app=app_address(settings),
        types={ext: kind for ext, kind in CONTENT_TYPES.items() if ext in settings.extensions},
        auto_formats=[ext for ext in AUTO_MODERN if ext in settings.extensions and ext in writable],
        image_folder=IMAGE_FOLDER, info=re.escape(INFO), state_folder=STATE_FOLDER,
        cache_control=CACHE_CONTROL, app_timeout=APP_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS, accel_location=ACCEL_LOCATION,
        accel_location_vary_accept=ACCEL_LOCATION_VARY_ACCEPT, accel_header=ACCEL_HEADER)


def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        # Plain text, not HTML; a name the template misspells is an error, not an empty string.
        autoescape=False, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    environment.filters["json_error"] = json_error
    return environment.from_string(files(__package__).joinpath("nginx.conf.j2").read_text())


def json_error(message: str) -> str:
    """An error body laid out as the app's (web.error_response), escaped for an nginx string."""
    return pretty({"error": message}).decode().replace("\n", "\\n")


def app_address(settings: Settings) -> str:
    """Where nginx reaches the app: a wildcard listen address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.listen, settings.listen)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{settings.port}"
