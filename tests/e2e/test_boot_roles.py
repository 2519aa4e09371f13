"""`sluice boot up` with several roles in one process: stream routes
(--config), the hub (--proxy) and a bridge node (--bridge) on one loop,
in the foreground and as one daemon that `boot status` and `boot down`
see as both roles. Also the rules for options several roles know."""

import json
import os
import re
import signal
import subprocess

from helpers import (Proc, connect, free_port, handler_echo,
                     parse_listening, recv_exact, route, sanitizer_report,
                     scaled, sluice_bin, to_yaml, wait_for)
from tunnel_x_support import BRIDGE_RE, HUB_RE, Role, curl_via


# The exit codes a sluice command may end with here; anything else (134 or
# a negative signal number: an abort, a crash) fails at once.
CLI_CODES = (0, 1, 2, 3)


def cli(*args, timeout=30):
    """Runs a sluice command to completion: (exit code, stdout, stderr).
    Fails on a sanitizer report in its stderr and on an exit code no
    sluice command has (a crash or an abort is not an expected failure)."""
    cp = subprocess.run([sluice_bin()] + [str(a) for a in args],
                        capture_output=True, text=True,
                        timeout=scaled(timeout), stdin=subprocess.DEVNULL)
    report = sanitizer_report(cp.stderr)
    assert report is None, "sanitizer report from %s:\n%s" % (
        " ".join(map(str, args)), report)
    assert cp.returncode in CLI_CODES, \
        "sluice %s ended with code %d:\n%s" % (
            " ".join(map(str, args)), cp.returncode, cp.stderr[-3000:])
    return cp.returncode, cp.stdout, cp.stderr


class Ports:
    """The loopback addresses of one combined process."""

    def __init__(self):
        self.port = free_port()      # the hub's public listener
        self.api_port = free_port()  # the hub's admin API
        self.node_api_port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.domain = "localhost"

    def args(self, upstream, state_dir, hub=True):
        return ["--http", "127.0.0.1:%d" % self.port,
                "--api", "127.0.0.1:%d" % self.api_port,
                "--node-api", "127.0.0.1:%d" % self.node_api_port] + \
            (["--hub", self.url] if hub else []) + \
            ["--upstream", upstream, "--state-dir", state_dir]


class Combined(Role):
    """`sluice boot up --proxy --bridge --config FILE`, in the foreground;
    stopped and checked (exit code, sanitizer) by TunnelEnv.close()."""

    def __init__(self, workdir, config, upstream, args=(), hub=True):
        self.ports = Ports()
        self.state_dir = os.path.join(str(workdir), "combined-state")
        argv = [sluice_bin(), "boot", "up", "--proxy", "--bridge",
                "--config", config] + self.ports.args(
                    upstream, self.state_dir, hub) + list(args)
        self.proc = Proc(argv, str(workdir), "combined")
        self.pid = self.proc.pid

        def ready():
            if not self.proc.alive():
                raise AssertionError("exited before its roles were up:\n"
                                     + self.proc.describe())
            out = self.proc.stdout()
            hub, bridge = HUB_RE.search(out), BRIDGE_RE.search(out)
            return (out, bridge) if hub and bridge else None
        out, bridge = wait_for(ready, 30, what="hub and bridge lines")
        self.routes = parse_listening(out)
        self.identity = bridge.group(1)


def test_all_roles_in_one_process(env, tmp_path, tcp_upstream):
    up = env.hash_upstream("roles")
    echo = tcp_upstream(handler_echo)
    config = tmp_path / "roles.yaml"
    config.write_text(to_yaml({"routes": {"echo": route("tcp", echo.port)}}))
    # --token is the hub's gateway token and the node's at once: the
    # bridge line only comes once the hub allocated with it.
    c = Combined(tmp_path, config, up.url, args=["--token", "s3cr&t"])
    env.hubs.append(c)

    # the stream route forwards
    with connect(c.routes["echo"].port) as s:
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"

    # the tunnel answers through the hub
    r = curl_via(c.ports, c.identity, "/x", "-w", "\n%{http_code}")
    assert r.returncode == 0, r.stderr
    body, code = r.stdout.rsplit("\n", 1)
    assert code == "200" and body == "roles /x", r.stdout

    # both APIs, and both roles' files naming this one process
    rc, out, err = cli("proxy", "list", "--json", "--api",
                       "127.0.0.1:%d" % c.ports.api_port)
    assert rc == 0 and [p["identity"] for p in json.loads(out)] == \
        [c.identity], (out, err)
    rc, out, err = cli("bridge", "--state-dir", c.state_dir, "list", "--json")
    assert rc == 0 and json.loads(out)[0]["identity"] == c.identity, err
    for role in ("hub", "node"):
        with open(os.path.join(c.state_dir, role + ".pid")) as f:
            assert int(f.read()) == c.pid
        with open(os.path.join(c.state_dir, role + ".json")) as f:
            assert json.load(f)["pid"] == c.pid

    assert c.stop() == 0, c.proc.describe()
    for name in ("hub.pid", "node.pid", "hub.json", "node.json"):
        assert not os.path.exists(os.path.join(c.state_dir, name)), name
    assert "node: stopped" in c.proc.stderr()


def test_bridge_without_hub_dials_its_own_hub(env, tmp_path):
    """With --proxy --bridge and no --hub, the bridge dials the hub of its
    own process (on its --http port), not the default 127.0.0.1:8080."""
    up = env.hash_upstream("own")
    config = tmp_path / "empty.yaml"
    config.write_text("routes: {}\n")
    c = Combined(tmp_path, config, up.url, hub=False)
    env.hubs.append(c)
    r = curl_via(c.ports, c.identity, "/y", "-w", "\n%{http_code}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "own /y\n200", r.stdout
    rc, out, err = cli("bridge", "--state-dir", c.state_dir, "list", "--json")
    assert rc == 0 and json.loads(out)[0]["hub"] == c.ports.url, (out, err)


def test_daemon_with_both_roles(env, tmp_path):
    up = env.hash_upstream("droles")
    state = str(tmp_path / "dstate")
    ports = Ports()
    argv = ["boot", "up", "--proxy", "--bridge", "--daemon"] + ports.args(
        up.url, state)
    sd = ["--state-dir", state]
    pid = None
    try:
        for attempt in range(2):
            rc, out, err = cli(*argv)
            assert rc == 0, (out, err)
            m = re.search(r"started in the background \(pid (\d+)", out)
            assert m, out
            pid = int(m.group(1))
            for role in ("hub", "node"):
                with open(os.path.join(state, role + ".pid")) as f:
                    assert int(f.read()) == pid

            # the same state directory is refused while it runs
            rc2, _, err2 = cli(*argv)
            assert rc2 == 1 and "already running" in err2, (rc2, err2)

            rc, out, err = cli("boot", "status", *sd)
            assert rc == 0, err
            assert re.search(r"hub \(proxy\): running \(pid %d, api "
                             r"127\.0\.0\.1:%d" % (pid, ports.api_port), out)
            assert re.search(r"node \(bridge\): running \(pid %d, api "
                             r"127\.0\.0\.1:%d" % (pid, ports.node_api_port),
                             out), out

            def connected():
                rc, out, err = cli("bridge", *sd, "list", "--json")
                assert rc == 0, (rc, err)
                bs = json.loads(out)
                return bs if bs and bs[0]["state"] == "connected" else None
            ident = wait_for(connected, 30, what="bridge connected")[0][
                "identity"]
            r = curl_via(ports, ident, "/d", "-w", "\n%{http_code}")
            assert r.stdout.rsplit("\n", 1) == ["droles /d", "200"], r

            # `boot down` stops both; `boot down --bridge` stops the one
            # process as well, so both roles are reported stopped
            down = ["boot", "down"] + (["--bridge"] if attempt else [])
            rc, out, err = cli(*down, *sd)
            assert rc == 0, err
            assert "hub (proxy): stopped (pid %d)" % pid in out, out
            assert "node (bridge): stopped (pid %d)" % pid in out, out
            wait_for(lambda: not os.path.exists("/proc/%d" % pid), 20,
                     what="daemon gone")
            pid = None
            for name in ("hub.pid", "node.pid", "hub.json", "node.json"):
                assert not os.path.exists(os.path.join(state, name)), name
            rc, out, err = cli("boot", "status", *sd)
            assert rc == 3 and "node (bridge): not running" in out, (
                rc, out, err)
        with open(os.path.join(state, "hub.log")) as f:
            log = f.read()
        assert log.count("node: stopped") == 2, log[-3000:]
        assert sanitizer_report(log) is None, sanitizer_report(log)
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_role_options_and_help(tmp_path):
    rc, out, _ = cli("boot", "up", "--help")
    assert rc == 0, rc
    for word in ("--config", "--proxy", "--bridge", "--node-api", "--http",
                 "--upstream", "--gateway-token"):
        assert word in out, word
    rc, out, _ = cli("boot", "up", "--proxy", "--bridge", "--help")
    assert rc == 0, rc
    assert "boot up --proxy" in out and "boot up --bridge" in out
    rc, out, _ = cli("boot", "up", "--proxy", "--help")
    assert rc == 0 and "--http" in out and "--upstream" not in out

    # an option of a role that was not asked for is refused
    rc, _, err = cli("boot", "up", "--proxy", "--upstream",
                     "http://127.0.0.1:1", "--state-dir", tmp_path / "s")
    assert rc == 2 and "unknown option '--upstream'" in err, (rc, err)
    rc, _, err = cli("boot", "up", "--bridge", "--http", "127.0.0.1:1",
                     "--state-dir", tmp_path / "s")
    assert rc == 2 and "unknown option '--http'" in err, (rc, err)
    # a bad value of a role's option is refused before anything starts
    rc, _, err = cli("boot", "up", "--proxy", "--bridge", "--pool", "99",
                     "--state-dir", tmp_path / "s")
    assert rc == 2 and "--pool" in err, (rc, err)
    # stream routes alone do not detach
    config = tmp_path / "empty.yaml"
    config.write_text("routes: {}\n")
    rc, _, err = cli("boot", "up", "--daemon", "--config", config)
    assert rc == 2 and "--proxy or --bridge" in err, (rc, err)
