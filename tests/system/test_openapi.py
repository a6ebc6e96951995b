"""The OpenAPI description at /openapi.json is true: schemathesis, run against a live server, finds
no 5xx and no response that breaks it (that it names every route: tests/app/test_openapi.py)."""
from __future__ import annotations

import os
import subprocess

import pytest

from imageserver.core.paths import ImageKey
from tests import pictures
from tests.helpers import VENV_BIN

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.slow
@pytest.mark.only_loopback
def test_schemathesis_finds_nothing(start_server, tmp_path):
    # Sources are refused before any lookup, so that generated URLs never leave this machine.
    server = start_server("--allowed_source_hosts", "nothing.invalid", "--outputs", "x50.jpg",
                          private_sources=False)
    info = server.post("/p", data=pictures.photo(120, 90)).json()
    h = info["hash"]
    # Fixed path parameters: the fuzzing reaches a real image's outputs, not only 404s.
    config = tmp_path / "schemathesis.toml"
    namespace, p1, p2, p3, rest = ImageKey("p", h).folder.split("/")
    config.write_text(f'[parameters]\nnamespace = "{namespace}"\np1 = "{p1}"\np2 = "{p2}"\n'
                      f'p3 = "{p3}"\nrest = "{rest}"\n')
    run = subprocess.run(
        [os.path.join(VENV_BIN, "schemathesis"), "--config-file", str(config), "run",
         server.url + "/openapi.json", "--url", server.url, "--checks", CHECKS,
         "--max-examples", "60", "--seed", "5", "--generation-database", "none",
         "--request-timeout", "30", "--workers", "2", "--no-color",
         # DELETE (the purge) would remove the one image the fuzzing is fixed on; this server has no
         # --purge_key, and answers it 405 (tests/system/test_purge.py tests it).
         "--exclude-operation-id", "purge"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout, run.stdout[-3000:]
    assert "Traceback" not in server.log()
