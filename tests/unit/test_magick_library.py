"""Wand is handed the name of the MagickWand library installed here, so that it does not try two
dozen names in turn (each failed try runs ldconfig and gcc in a subprocess, at every worker's start)."""
import os
import subprocess
import sys

from imageserver.imaging import magick

LOADS = """
import os, subprocess, time
calls = []
real = subprocess.Popen.__init__
def counted(self, args, *rest, **options):
    calls.append(args)
    real(self, args, *rest, **options)
subprocess.Popen.__init__ = counted
import imageserver.imaging.magick as magick
print(len(calls), magick.library._name, os.environ.get("WAND_MAGICK_LIBRARY_SUFFIX"))
"""


def test_the_installed_library_is_found_and_loaded_without_trying_others():
    suffixes = magick._installed_suffixes()
    assert suffixes, "no libMagickWand-* in " + ", ".join(magick.LIBRARY_FOLDERS)
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("MAGICK_HOME", "WAND_MAGICK_LIBRARY_SUFFIX")}
    calls, loaded, handed = load(environment)
    assert handed == ";".join(suffixes)
    assert loaded.startswith(f"libMagickWand{suffixes[0]}.")
    # Left to itself (a MAGICK_HOME with nothing in it turns the look-up here off), Wand spawns a
    # process or more for each name it tries before the one installed.
    calls_alone, loaded_alone, _ = load({**environment, "MAGICK_HOME": "/nonexistent"})
    print(f"processes spawned to find {loaded}: {calls}; by Wand alone: {calls_alone}")
    assert loaded_alone == loaded
    assert calls <= 3 < calls_alone


def load(environment: dict) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-c", LOADS], capture_output=True, text=True, timeout=60,
                          env=environment, check=True)
    calls, loaded, handed = done.stdout.split()
    return int(calls), loaded, handed
