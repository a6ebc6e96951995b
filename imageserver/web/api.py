"""GET /openapi.json: the OpenAPI 3 description of this API (kept true by tests/system/test_openapi.py)."""
from __future__ import annotations

import os
from functools import lru_cache

from flask import Blueprint, Response

blueprint = Blueprint("api", __name__)
DESCRIPTION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


@lru_cache(maxsize=1)
def description() -> bytes:
    with open(DESCRIPTION, "rb") as f:
        return f.read()


@blueprint.get("/openapi.json")
def openapi():
    return Response(description(), mimetype="application/json")
