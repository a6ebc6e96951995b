"""The only_loopback marker: such tests run where loopback is the only network, and their failures
are reported as failures."""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.netns import in_own_network

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.only_loopback
def test_a_marked_test_has_loopback_only():
    assert in_own_network()
    with socket.socket() as s:
        s.settimeout(5)
        with pytest.raises(OSError) as raised:
            s.connect(("10.255.255.1", 80))
    assert raised.value.errno == errno.ENETUNREACH
    with socket.create_server(("127.0.0.1", 0)) as server:
        socket.create_connection(server.getsockname(), timeout=5).close()


def test_outcomes_in_the_namespace_are_the_tests_outcomes(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ("tests.netns",)\n')
    (tmp_path / "test_sample.py").write_text(textwrap.dedent("""
        import pytest
        from tests.netns import in_own_network

        @pytest.mark.only_loopback
        def test_passes():
            assert in_own_network()

        @pytest.mark.only_loopback
        def test_fails():
            assert in_own_network() and 1 == 2, "failed on purpose"

        @pytest.mark.only_loopback
        def test_skips():
            pytest.skip("skipped on purpose")

        def test_outside():
            assert not in_own_network()
    """))
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q",
                          str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert "2 passed, 1 skipped" in run.stdout and "1 failed" in run.stdout, run.stdout + run.stderr
    assert "failed on purpose" in run.stdout and "skipped on purpose" in run.stdout
    assert run.returncode == 1
