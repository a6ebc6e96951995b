"""`images nginx_config`: the nginx block that serves made outputs from disk and passes the rest on.

The URL path of an output is its path under --local_base_path, and outputs are written whole under
their final name (`files.write_atomically`), so nginx can send a file that exists without asking the
app; a file that does not exist yet is made by the app. Temporary and lock files start with a dot
and are refused.
"""
from __future__ import annotations

from .errors import SettingsError
from .json_text import pretty
from .names import CONTENT_TYPES
from .paths import CACHE_CONTROL, INFO
from .version import __version__

IMAGE_FOLDER = r"/[a-z0-9_]{1,64}/[0-9a-f]{3}/[0-9a-f]{3}/[0-9a-f]{3}/[0-9a-f]{23}/"
TYPES = CONTENT_TYPES
# nginx waits a little longer than gunicorn lets a worker run (its `timeout`), so that a slow output
# is answered by the app (or by gunicorn's restart of it), not cut off by nginx first.
APP_TIMEOUT_SECONDS = 60
READ_TIMEOUT_SECONDS = APP_TIMEOUT_SECONDS + 15
UNSAFE_IN_PATHS = set('"\\$;{}\n\r')


def server_block(settings) -> str:
    """The nginx configuration text for these settings: a log format and one server block."""
    root = settings.base_path
    for what, text in (("--local_base_path", root), ("--nginx_access_log", settings.nginx_access_log)):
        if UNSAFE_IN_PATHS & set(text):
            raise SettingsError(f"{what} {text!r} has characters nginx would misread")
    extensions = "|".join(ext for ext in TYPES if ext in settings.extensions)
    types = " ".join(f"{TYPES[ext]} {ext};" for ext in TYPES if ext in settings.extensions)
    info = INFO.replace(".", r"\.")
    too_large = json_error(f"the body is over the limit of {settings.maximum_upload_bytes} bytes")
    access_log = (f'access_log "{settings.nginx_access_log}" imageserver;'
                  if settings.nginx_access_log else "access_log off;")
    # With --signing_key every output request needs a valid ?sig=, which only the app can check:
    # nginx then passes outputs on instead of sending them from disk.
    outputs = (f"proxy_pass http://{app_address(settings)};" if settings.signing_key
               else "try_files $uri @app;")
    return f"""\
# nginx in front of imageserver {__version__}, written by `images nginx_config`.
# Include it inside nginx's http {{ }} block (e.g. as /etc/nginx/conf.d/imageserver.conf).
# Outputs and info.json already made under {root} are sent by nginx; the rest
# (uploads, outputs not made yet, originals, /status_check) goes to the app at {app_address(settings)}.

log_format imageserver '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                       '${{request_time}}s cache=$sent_http_x_image_cache upstream=$upstream_addr';

server {{
    listen {settings.nginx_listen};
    root "{root}";
    {access_log}
    server_tokens off;
    sendfile on;
    tcp_nopush on;

    # Uploads: the app's own limit; nginx takes the whole body before the app sees it, so a slow
    # client never holds one of the app's few workers.
    client_max_body_size {settings.maximum_upload_bytes};
    client_body_buffer_size 1m;
    client_body_timeout {APP_TIMEOUT_SECONDS}s;

    # Every answer, the app's and nginx's own, says nosniff exactly once: a browser takes the
    # declared type as it is, so a stored file never becomes a page or a script. (A location with
    # add_header of its own must repeat it: nginx inherits add_header only into locations without.)
    add_header X-Content-Type-Options nosniff always;
    proxy_hide_header X-Content-Type-Options;

    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_connect_timeout 5s;
    proxy_send_timeout {APP_TIMEOUT_SECONDS}s;
    proxy_read_timeout {READ_TIMEOUT_SECONDS}s;

    # The app's errors pass through as they are; nginx's own are JSON like them.
    # (Refusals of a request nginx could not read go to plain internal URIs: a named location
    # needs a request it understood.)
    error_page 400 /.imageserver-error/400;
    error_page 414 /.imageserver-error/414;
    error_page 494 =431 /.imageserver-error/431;
    error_page 405 @not_allowed;
    error_page 413 @too_large;
    error_page 502 @app_unreachable;
    error_page 504 @app_timeout;

    # Temporary and lock files, and the app's .imageserver folder: never served.
    location ~ /\\. {{
        default_type application/json;
        return 404 '{json_error("not found")}';
    }}

    # An output made before: sent from disk with the app's headers.
    location ~ "^{IMAGE_FOLDER}[^/]+\\.({extensions})$" {{
        types {{ {types} }}
        add_header Cache-Control "{CACHE_CONTROL}";
        add_header X-Image-Cache hit;
        add_header X-Content-Type-Options nosniff always;
        {outputs}
    }}

    location ~ "^{IMAGE_FOLDER}{info}$" {{
        types {{ }}
        default_type application/json;
        try_files $uri @app;
    }}

    location / {{
        proxy_pass http://{app_address(settings)};
    }}

    location @app {{
        proxy_pass http://{app_address(settings)};
    }}

    location = /.imageserver-error/400 {{
        internal;
        default_type application/json;
        return 400 '{json_error("the request is malformed")}';
    }}

    location = /.imageserver-error/414 {{
        internal;
        default_type application/json;
        return 414 '{json_error("the request line is too long")}';
    }}

    location = /.imageserver-error/431 {{
        internal;
        default_type application/json;
        return 431 '{json_error("a request header is too large")}';
    }}

    location @not_allowed {{
        default_type application/json;
        return 405 '{json_error("The method is not allowed for the requested URL.")}';
    }}

    location @too_large {{
        default_type application/json;
        return 413 '{too_large}';
    }}

    location @app_unreachable {{
        default_type application/json;
        return 502 '{json_error("the image server cannot be reached")}';
    }}

    location @app_timeout {{
        default_type application/json;
        return 504 '{json_error("the image server took too long")}';
    }}
}}
"""


def json_error(message: str) -> str:
    """An error body laid out as the app's (web.error_response), escaped for an nginx string."""
    return pretty({"error": message}).decode().replace("\n", "\\n")


def app_address(settings) -> str:
    """Where nginx reaches the app: a wildcard listen address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.listen, settings.listen)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{settings.port}"
