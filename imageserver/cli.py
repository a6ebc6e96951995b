"""The `images` command: `images [flags] server | process [FILE|-] | version | doctor | nginx_config`."""
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
    from .process import run_process
    try:
        return run_process(settings, args)
    except ImageServerError as error:
        print(f"images: {error.message}", file=sys.stderr)
        return 2 if isinstance(error, SettingsError) else 1


if __name__ == "__main__":
    sys.exit(main())
