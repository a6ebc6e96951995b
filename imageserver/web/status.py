"""GET /status_check: is this server able to work, and how many uploads has it seen."""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint

from .. import pipeline
from ..version import __version__
from . import json_response, service

blueprint = Blueprint("status", __name__)


@blueprint.get("/status_check")
def status_check():
    problems = pipeline.problems()
    body = {"version": __version__, "message": "; ".join(problems) or "OK",
            "posting": asdict(service().posting), "pending_uploads": service().uploads.pending()}
    return json_response(body, 501 if problems else 200)
