"""The README's first command, scripts/run.sh (issue 14): it says what it
does (installing, building, starting), gives way to a free port when
8080 is taken and says so, and when the hub cannot start it prints the
hub's own error and keeps the logs. It builds its own build/ (release)
and installs only what building needs."""

import os
import re
import socket
import subprocess

import pytest

from helpers import scaled

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def run_sh(*args, timeout=600):
    if os.geteuid() != 0 and subprocess.run(
            ["dpkg-query", "-W", "meson"], capture_output=True).returncode:
        pytest.skip("run.sh installs packages as root")
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "run.sh")]
                          + list(args), capture_output=True, text=True,
                          timeout=scaled(timeout), stdin=subprocess.DEVNULL,
                          cwd=ROOT)


def hold(port):
    """A listening socket on 127.0.0.1:port, or None when the port is
    already taken by someone else (as good for the test)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    s.listen(1)
    return s


def test_run_sh_takes_a_free_port_when_8080_is_taken():
    held = hold(8080)
    try:
        cp = run_sh("--once")
    finally:
        if held:
            held.close()
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out[-3000:]
    for step in ("checking the Debian packages", "building sluice",
                 "starting the hub", "starting a bridge"):
        assert "run.sh: " + step in cp.stdout, cp.stdout
    m = re.search(r"port 8080 \(the hub's HTTP\) is taken; using (\d+)",
                  cp.stderr)
    assert m, cp.stderr
    assert "hub on http://127.0.0.1:%s" % m.group(1) in cp.stdout
    assert "<h1>Hello from behind the sluice</h1>" in cp.stdout
    assert re.search(r"public URL https://[a-z0-9]{12}\.localhost:\d+/",
                     cp.stdout), cp.stdout


def test_run_sh_prints_the_hubs_own_error():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        cp = run_sh("--once", "--port", str(port))
    finally:
        busy.close()
    assert cp.returncode != 0
    assert "the hub could not start (exit status 1); it said:" in cp.stderr
    assert "cannot listen on 127.0.0.1:%d: address already in use" % port \
        in cp.stderr, cp.stderr
    m = re.search(r"logs kept in (\S+)", cp.stderr)
    assert m and os.path.exists(os.path.join(m.group(1), "hub.log"))
    subprocess.run(["rm", "-rf", m.group(1)])


def test_run_sh_refuses_a_bad_port():
    cp = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run.sh"),
                         "--port", "http"], capture_output=True, text=True,
                        timeout=30)
    assert cp.returncode == 2
    assert "--port: 'http' is not a port" in cp.stderr
