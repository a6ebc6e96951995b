"""Tests that try addresses other than loopback run where only loopback exists.

Mark such a test `@pytest.mark.only_loopback`. Outside a network namespace of its own, pytest runs it
in a child pytest under `unshare --net` (after `ip link set lo up`; this needs root), one child for
all such tests of a module, and reports the child's outcomes as its own; their fixtures are set up in
the child only. There, a guard that fails finds no route off the machine: no packet leaves it.

`in_own_network()` and `isolated_command()` serve the same purpose outside pytest (`make soak`).
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile

import pytest

MARKER = "only_loopback"
REPORTS = "IMAGESERVER_TEST_REPORTS"
# How long the child may take, per test: each has its own time limit in the child (setup.cfg).
CHILD_SECONDS = 600


def in_own_network() -> bool:
    """True when loopback is the only network interface here."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def isolated_command(argv: list[str]) -> list[str]:
    """`argv`, run in a new network namespace that has loopback only."""
    return ["unshare", "--net", "sh", "-c", "ip link set lo up && exec " + shlex.join(argv)]


_config = None


def pytest_configure(config):
    global _config
    _config = config
    config.addinivalue_line(
        "markers", f"{MARKER}: tries addresses other than loopback; runs in a network namespace "
                   "that has loopback only")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Before pytest-xdist reads the groups (and adds each to its test's id): a module's marked tests
    go to one worker, which runs them in one child."""
    if in_own_network():
        return
    for item in items:
        if item.get_closest_marker(MARKER) is not None:
            # The child keeps the test's own time limit; here, only waiting for the child.
            item.add_marker(pytest.mark.timeout(0), append=False)
            item.add_marker(pytest.mark.xdist_group(f"{MARKER}:{_module(item)}"))
            _plain_ids[item] = item.nodeid
            _groups.setdefault(_module(item), []).append(item.nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if item.get_closest_marker(MARKER) is None or in_own_network():
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = _reports_of(item)
    here = _teardown_before(item, nextitem)
    for report in reports:
        if report.when == "teardown" and here.failed:
            report = here
        item.ihook.pytest_runtest_logreport(report=report)
    if not any(report.when == "teardown" for report in reports):
        item.ihook.pytest_runtest_logreport(report=here)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _teardown_before(item, nextitem):
    """Tear down here what earlier tests set up and `nextitem` does not need (a module's fixtures),
    as pytest does after each test: the child's run of this test set up nothing here."""
    call = pytest.CallInfo.from_call(lambda: item.session._setupstate.teardown_exact(nextitem),
                                     when="teardown")
    return item.ihook.pytest_runtest_makereport(item=item, call=call)


def pytest_runtest_logreport(report):
    """In the child: write each report down for the parent."""
    path = os.environ.get(REPORTS)
    if path and in_own_network():
        data = _config.hook.pytest_report_to_serializable(config=_config, report=report)
        with open(path, "a") as out:
            out.write(json.dumps(data) + "\n")


# One child per test module runs all of the module's marked tests: pytest's start-up is seconds.
_groups: dict[str, list[str]] = {}
_results: dict[str, list] = {}
_outputs: dict[str, str] = {}
# Each marked test's id as the child knows it (pytest-xdist's --dist loadgroup adds "@group" here).
_plain_ids: dict = {}


def _module(item) -> str:
    return item.nodeid.split("::", 1)[0]


def _reports_of(item) -> list:
    module = _module(item)
    if module not in _outputs:
        _run_isolated(item.config, module, _groups.get(module, [item.nodeid]))
    made = _results.get(_plain_ids.get(item, item.nodeid), [])
    if any(report.when == "call" or report.outcome != "passed" for report in made):
        for report in made:
            report.nodeid = item.nodeid
        return made
    # No outcome came back: unshare refused (not root?), or the child could not collect the test.
    return [pytest.TestReport(item.nodeid, item.location, {}, "failed",
                              "no result from the run in a network namespace:\n"
                              + _outputs[module][-4000:], "call")]


def _run_isolated(config, module: str, nodeids: list[str]) -> None:
    seconds = CHILD_SECONDS * len(nodeids)
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as reports:
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *nodeids]
        try:
            run = subprocess.run(isolated_command(argv), cwd=str(config.rootpath), capture_output=True,
                                 text=True, timeout=seconds, env={**os.environ, REPORTS: reports.name})
            _outputs[module] = run.stdout + run.stderr
        except subprocess.TimeoutExpired as expired:
            _outputs[module] = f"the isolated run took over {seconds} s\n{expired.stdout or ''}"
        for line in reports.read().splitlines():
            report = config.hook.pytest_report_from_serializable(config=config, data=json.loads(line))
            if isinstance(report.longrepr, list):
                # a skip's (path, line, reason): JSON made it a list
                report.longrepr = tuple(report.longrepr)
            _results.setdefault(report.nodeid, []).append(report)
