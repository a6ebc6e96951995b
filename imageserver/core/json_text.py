"""The one layout of every JSON document the server writes (answers, info.json, error bodies, the
nginx block's own errors): two-space indents and a final newline, as the original server's. No
import of the app or ImageMagick here: the gunicorn master uses it too."""
from __future__ import annotations

import json


def pretty(value) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()
