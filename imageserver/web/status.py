"""GET /status_check: is this server able to work, and how many uploads has it seen.

Once a graceful stop has begun it answers 501 "Shutting down", as the status port does, so that a
load balancer checking either one takes the server out while it still serves.
"""
from __future__ import annotations

from flask import Blueprint, current_app

from imageserver.core.version import __version__
from imageserver.images import eviction, space
from imageserver.imaging import formats
from imageserver.web import json_response, service

blueprint = Blueprint("status", __name__)


@blueprint.get("/status_check")
def status_check():
    problems = formats.problems()
    if current_app.extensions["stopping"].is_set():
        problems = ["Shutting down"]
    body = {"version": __version__, "message": "; ".join(problems) or "OK",
            "posting": service().posting.as_dict(), "pending_uploads": service().uploads.pending(),
            "writes": formats.writable_extensions(service().formats),
            # Under the reserve, new images and sizes get 507 while what is on disk is still served.
            "disk": space.report(service().base, service().settings.minimum_free_bytes),
            "local_disk": eviction.read_status(service().settings)}
    return json_response(body, 501 if problems else 200)
