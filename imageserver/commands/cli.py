"""The `images` command: `images [flags] server | process [FILE|-] | sign PATH... | version | doctor |
nginx_config`."""
from __future__ import annotations

import sys

from imageserver.core.errors import ImageServerError, SettingsError
from imageserver.core.settings import Settings, parse_command_line
from imageserver.core.version import __version__


def main(argv=None) -> int:
    """Run one command; a bad setting or argument is one line on stderr and exit code 2, a failure of
    the work itself exit code 1."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        command, args, settings = parse_command_line(argv)
        return COMMANDS.get(command, process)(settings, args)
    except ImageServerError as error:
        print(f"images: {error.message}", file=sys.stderr)
        return 2 if isinstance(error, SettingsError) else 1


def version(settings: Settings, args: list[str]) -> int:
    print(__version__)
    return 0


def server(settings: Settings, args: list[str]) -> int:
    from imageserver.serving.server import Server
    from imageserver.storage import build_store
    build_store(settings)   # a bad key or store setting stops here, not in each worker
    Server(settings).run()
    return 0


def doctor(settings: Settings, args: list[str]) -> int:
    from imageserver.commands.doctor import run_doctor
    return run_doctor(settings)


def nginx_config(settings: Settings, args: list[str]) -> int:
    from imageserver.commands.nginx import run_nginx_config
    return run_nginx_config(settings)


def process(settings: Settings, args: list[str]) -> int:
    from imageserver.commands.process import run_process
    return run_process(settings, args)


def sign(settings: Settings, paths: list[str]) -> int:
    """Print each URL path with its ?sig= for --signing_key (`images sign /p/6e0/.../x300.jpg`)."""
    from imageserver.core import signing
    if not settings.signing_key:
        raise SettingsError("sign needs --signing_key (or IMG_SIGNING_KEY)")
    if not paths:
        raise SettingsError("sign needs one or more URL paths, e.g. /p/6e0/072/682/e66.../x300.jpg")
    for path in paths:
        try:
            print(signing.sign_url(settings.signing_key, path))
        except ImageServerError as error:  # a path that is not one of ours: a bad argument
            raise SettingsError(error.message) from None
    return 0


COMMANDS = {"version": version, "server": server, "doctor": doctor, "nginx_config": nginx_config,
            "sign": sign}


if __name__ == "__main__":
    sys.exit(main())
