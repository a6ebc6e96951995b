"""The OpenAPI description at /openapi.json names every route of the app, each under its blueprint
(that schemathesis finds nothing against a live server: tests/system/test_openapi.py)."""
from __future__ import annotations

import re


def test_every_route_is_described_under_its_blueprint(app, client):
    described = client.get("/openapi.json").json
    assert described["openapi"].startswith("3.")
    blueprints = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower()):
                  rule.endpoint.split(".")[0]
                  for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD"}}
    tags = {(path, method): operation["tags"][0]
            for path, item in described["paths"].items() for method, operation in item.items()}
    # Every route (and no OPTIONS) described, each under the tag of its blueprint, named as in the
    # design.
    assert tags == blueprints
    assert set(blueprints.values()) == {"upload", "info", "process", "purge", "status", "api"}
    assert {tag["name"] for tag in described["tags"]} == set(blueprints.values())
