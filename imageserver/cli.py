"""The `images` command: `images [flags] server | process [FILE|-] | sign PATH... | version | doctor |
nginx_config`."""
from __future__ import annotations

import sys

from .errors import ImageServerError, SettingsError
from .settings import parse_command_line
from .version import __version__


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        command, args, settings = parse_command_line(argv)
    except SettingsError as error:
        print(f"images: {error.message}", file=sys.stderr)
        return 2
    if command == "version":
        print(__version__)
        return 0
    if command == "server":
        from .server import Server
        from .storage import build_store
        try:
            build_store(settings)   # a bad key or store setting stops here, not in each worker
            Server(settings).run()
        except SettingsError as error:
            print(f"images: {error.message}", file=sys.stderr)
            return 2
        return 0
    if command == "doctor":
        from .doctor import run_doctor
        return run_doctor(settings)
    if command == "nginx_config":
        from .nginx import server_block
        try:
            print(server_block(settings), end="")
        except SettingsError as error:
            print(f"images: {error.message}", file=sys.stderr)
            return 2
        return 0
    if command == "sign":
        return sign(settings, args)
    from .process import run_process
    try:
        return run_process(settings, args)
    except ImageServerError as error:
        print(f"images: {error.message}", file=sys.stderr)
        return 2 if isinstance(error, SettingsError) else 1


def sign(settings, paths: list[str]) -> int:
    """Print each URL path with its ?sig= for --signing_key (`images sign /p/6e0/.../x300.jpg`)."""
    from . import signing
    if not settings.signing_key:
        print("images: sign needs --signing_key (or IMG_SIGNING_KEY)", file=sys.stderr)
        return 2
    if not paths:
        print("images: sign needs one or more URL paths, e.g. /p/6e0/072/682/e66.../x300.jpg",
              file=sys.stderr)
        return 2
    try:
        for path in paths:
            print(signing.sign_url(settings.signing_key, path))
    except ImageServerError as error:
        print(f"images: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
