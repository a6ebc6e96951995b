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
# Each test here runs pytest again, in a child.
pytestmark = pytest.mark.spawns


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


def test_the_fixtures_of_earlier_tests_are_torn_down(tmp_path):
    """A module-scoped fixture of an earlier test ends before the next module's tests begin, even
    when the last test of its module ran in a namespace."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ("tests.netns",)\n')
    (tmp_path / "test_a.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.fixture(scope="module")
        def resource(tmp_path_factory):
            yield
            open(tmp_path_factory.getbasetemp() / "torn-down", "w").close()

        def test_uses_it(resource):
            pass

        @pytest.mark.only_loopback
        def test_last_in_its_module():
            pass
    """))
    (tmp_path / "test_b.py").write_text(textwrap.dedent("""
        def test_after(tmp_path_factory):
            assert (tmp_path_factory.getbasetemp() / "torn-down").exists()
    """))
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                          f"--basetemp={tmp_path / 'base'}", str(tmp_path / "test_a.py"),
                          str(tmp_path / "test_b.py")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert "3 passed" in run.stdout and run.returncode == 0, run.stdout + run.stderr
