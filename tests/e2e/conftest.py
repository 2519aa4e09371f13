"""Fixtures of the end-to-end suite.

SLUICE_BIN names the binary under test (default build/sluice);
SLUICE_TEST_TIMEOUT_SCALE (a float, default 1) scales every timeout.
Every process a test starts runs in its own process group and is ended at
teardown; sluice itself must then exit 0 on SIGTERM and leave no sanitizer
report in its stderr, or the test fails.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import Proc, TcpUpstream, UdpUpstream, sluice_bin  # noqa: E402
from peers import (Dnsmasq, Haproxy, HttpServer, Iperf3Server,  # noqa: E402
                   Sluice, Sshd)
from tunnel_x_support import Hub, TunnelEnv  # noqa: E402


def pytest_configure(config):
    # A sanitizer build must fail loudly; keep a caller's own settings.
    os.environ.setdefault("ASAN_OPTIONS",
                          "detect_leaks=1:halt_on_error=1:abort_on_error=1")
    os.environ.setdefault("UBSAN_OPTIONS",
                          "halt_on_error=1:abort_on_error=1:"
                          "print_stacktrace=1")


# Under CI=true a skipped test is a failure, but for what the machine
# itself cannot provide; scripts/setup.sh installs every peer, so a missing
# program is a broken set-up, not a reason to pass.
ALLOWED_CI_SKIPS = ("no IPv6", "no network namespaces")


def _skip_reason(report):
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2]).removeprefix("Skipped: ")
    return str(lr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (os.environ.get("CI") == "true" and report.skipped
            and not hasattr(report, "wasxfail")):
        reason = _skip_reason(report)
        if not reason.startswith(ALLOWED_CI_SKIPS):
            report.outcome = "failed"
            report.longrepr = ("skipped under CI=true, and the reason is not "
                               "one the machine cannot provide: " + reason)


def pytest_report_header(config):
    return "sluice binary: %s (SLUICE_TEST_TIMEOUT_SCALE=%s)" % (
        sluice_bin(), os.environ.get("SLUICE_TEST_TIMEOUT_SCALE", "1"))


@pytest.fixture(scope="session", autouse=True)
def _binary_and_safety_net():
    if not os.access(sluice_bin(), os.X_OK):
        pytest.exit("sluice binary not found at %s (set SLUICE_BIN)"
                    % sluice_bin(), returncode=2)
    yield
    # Whatever a failed test left running ends here.
    for p in Proc.registry:
        p.kill_group()


@pytest.fixture
def sluice(tmp_path):
    """sluice(config, **kw) starts `sluice boot up --config` (config is a
    dict, see helpers.route, or YAML text) and returns a peers.Sluice whose
    .routes are ready. Teardown stops each with SIGTERM and fails the test
    on a non-zero exit code or a sanitizer report."""
    started = []

    def start(config, **kw):
        s = Sluice(tmp_path, config, name="sluice%d" % len(started), **kw)
        started.append(s)
        return s

    yield start
    problems = []
    for s in started:
        problems.extend(s.problems())
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def tcp_upstream():
    """tcp_upstream(handler) -> helpers.TcpUpstream, closed at teardown."""
    made = []

    def make(handler, host="127.0.0.1"):
        u = TcpUpstream(handler, host=host)
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


@pytest.fixture
def udp_upstream():
    made = []

    def make(**kw):
        u = UdpUpstream(**kw)
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


def _peer_fixture(factory):
    peers = []

    def make(*a, **kw):
        p = factory(*a, **kw)
        peers.append(p)
        return p
    return make, peers


@pytest.fixture
def sshd(tmp_path):
    p = Sshd(tmp_path)
    yield p
    p.stop()


@pytest.fixture
def http_server(tmp_path):
    """http_server(files={name: bytes}) -> peers.HttpServer."""
    make, peers = _peer_fixture(lambda **kw: HttpServer(tmp_path, **kw))
    yield make
    for p in peers:
        p.stop()


@pytest.fixture
def dnsmasq(tmp_path):
    p = Dnsmasq(tmp_path)
    yield p
    p.stop()


@pytest.fixture
def iperf3_server(tmp_path):
    p = Iperf3Server(tmp_path)
    yield p
    p.stop()


@pytest.fixture
def haproxy(tmp_path):
    """haproxy(target_port, accept_proxy=False) -> peers.Haproxy."""
    make, peers = _peer_fixture(lambda *a, **kw: Haproxy(tmp_path, *a, **kw))
    yield make
    for p in peers:
        p.stop()


@pytest.fixture
def hubs(tmp_path):
    """Starts hubs on demand: hubs(*args, **kw) is a Hub named hub0, hub1,
    ... with args as its command-line arguments (or args= among kw); the
    test fails on any exit code or sanitizer report they leave."""
    made = []

    def make(*args, **kw):
        if args:
            kw["args"] = args
        h = Hub(tmp_path, name="hub%d" % len(made), **kw)
        made.append(h)
        return h
    yield make
    problems = []
    for h in made:
        problems.extend(h.problems())
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def env(tmp_path):
    """The hubs, nodes and upstreams of one tunnel test; the test fails on
    any exit code or sanitizer report they leave at teardown."""
    e = TunnelEnv(tmp_path)
    yield e
    problems = e.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
