"""The gunicorn master never loads ImageMagick, checked where the import contract cannot look: the
contract (pyproject.toml, `make lint`) ignores the imports made inside functions after the fork, at
whatever line they are; here a module-level one would show in sys.modules."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What the master imports: `images server`, gunicorn.conf.py (with gunicorn's worker class and
# logger, named there), the sweeps of --maximum_local_bytes and of purges.
MASTER = """
import runpy, sys
import imageserver, imageserver.commands.cli, imageserver.serving.server
import imageserver.serving.gunicorn_conf, imageserver.serving.worker, imageserver.serving.access_log
import imageserver.images.eviction, imageserver.images.purge
runpy.run_path("gunicorn.conf.py")
print(" ".join(sorted(sys.modules)))
"""


def test_what_the_master_imports_loads_no_imagemagick():
    loaded = subprocess.run([sys.executable, "-c", MASTER], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    assert "imageserver.serving.server" in loaded
    imaging = [name for name in loaded if name.split(".")[0] == "wand"
               or name.startswith(("imageserver.imaging", "imageserver.images.service",
                                   "imageserver.images.setup", "imageserver.web"))]
    assert imaging == []
