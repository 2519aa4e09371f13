"""An allocation made on the hub beforehand (`sluice proxy create`, the
operator's way) and taken by a bridge with --username/--password (the
user's way): the bridge gets that identity and keeps it across restarts,
a wrong password is refused with the reason kept on the bridge, a
username without a password is refused at the command line, the password
may come from $SLUICE_BRIDGE_PASSWORD, and `sluice bridge create` takes
the same credentials but never swaps those of an existing bridge.
"""

import json
import os
import subprocess

from helpers import sanitizer_report, scaled, sluice_bin, wait_for
from tunnel_x_support import BRIDGE_RE, http_get


def run(*args, env=None, timeout=30):
    """Runs the CLI. A sanitizer report in its stderr, or an exit code the
    CLI never gives (0 done, 1 failed, 2 usage: a signal or a sanitizer's
    exit is a crash), fails the test whatever it expected."""
    argv = [sluice_bin()] + list(args)
    cp = subprocess.run(argv, capture_output=True, text=True,
                        timeout=scaled(timeout), env=env,
                        stdin=subprocess.DEVNULL, errors="replace")
    report = sanitizer_report(cp.stderr)
    assert report is None, "%s:\n%s" % (" ".join(argv), report)
    assert cp.returncode in (0, 1, 2), (argv, cp.returncode, cp.stderr)
    return cp


def proxy_create(hub):
    """`sluice proxy create` as an operator runs it: {identity, username,
    password, url} from its table, plus the hint it prints."""
    cp = run("proxy", "--api", "127.0.0.1:%d" % hub.api_port, "create")
    assert cp.returncode == 0, cp.stderr
    out = {}
    for line in cp.stdout.splitlines():
        k, _, v = line.partition(" ")
        if k in ("identity", "username", "password", "url"):
            out[k] = v.strip()
    assert set(out) == {"identity", "username", "password", "url"}, cp.stdout
    return out, cp.stdout


def get(hub, identity, path="/"):
    return http_get(hub.port, hub.host(identity), path)


def bridge_cli(node, *args, env=None):
    return run("bridge", "--api", "127.0.0.1:%d" % node.api_port, *args,
               env=env)


def test_bridge_takes_allocation_made_with_proxy_create(env):
    hub = env.hub()
    up = env.hash_upstream("pre")
    alloc, text = proxy_create(hub)
    assert "--username %s" % alloc["username"] in text
    ident = alloc["identity"]
    # Reverse connect: the identity exists, no bridge yet.
    st, _, body = get(hub, ident)
    assert (st, body) == (502, b"Proxy not connected")

    node = env.node(hub, up.url, creds=alloc, name="node0")
    assert node.identity == ident
    st, _, body = get(hub, ident, "/a")
    assert st == 200 and body == b"pre /a"
    assert "(new identity)" not in node.proc.stdout()

    # A restart with the same flags: the saved bridge, same identity, no
    # "exists already" complaint.
    # Its exit code and stderr are checked before the restart truncates
    # its output files (same name, same state directory).
    env.nodes.remove(node)
    problems = node.problems()
    assert problems == [], problems
    again = env.node(hub, up.url, creds=alloc, name="node0")
    assert again.state_dir == node.state_dir
    assert again.identity == ident
    assert "exists already" not in again.proc.stderr()
    assert get(hub, ident, "/b")[2] == b"pre /b"


def test_wrong_password_is_refused_with_its_reason(env):
    hub = env.hub()
    up = env.hash_upstream("wrong")
    alloc, _ = proxy_create(hub)
    bad = dict(alloc, password=alloc["password"][:-1] + (
        "x" if alloc["password"][-1] != "x" else "y"))
    node = env.node(hub, up.url, creds=bad, wait=False)

    def refused():
        cp = bridge_cli(node, "list", "--json")
        if cp.returncode != 0:
            return None
        rows = json.loads(cp.stdout)
        return rows if rows and "401" in rows[0].get("error", "") else None
    rows = wait_for(refused, 20, what="the bridge's 401")
    assert rows[0]["identity"] == "", rows
    assert rows[0]["error"] == ('hub refused: 401 {"error":"Unauthorized",'
                                '"code":401}'), rows
    # and it took no new identity instead
    st, j = hub.api("GET", "/api/proxy/")
    assert st == 200, j
    assert [p["identity"] for p in j["proxies"]] == [alloc["identity"]], j
    assert node.bridges() == []
    st, _, body = get(hub, alloc["identity"])
    assert (st, body) == (502, b"Proxy not connected")


def test_username_without_password_refused_at_boot(tmp_path):
    env = dict(os.environ)
    env.pop("SLUICE_BRIDGE_PASSWORD", None)
    cp = run("boot", "up", "--bridge", "--upstream", "http://127.0.0.1:9",
             "--username", "someone", "--state-dir", str(tmp_path / "s"),
             env=env)
    assert cp.returncode == 2
    assert "--username and --password go together" in cp.stderr
    cp = run("boot", "up", "--bridge", "--username", "someone",
             "--password", "p", "--state-dir", str(tmp_path / "s"), env=env)
    assert cp.returncode == 2
    assert "need --upstream" in cp.stderr


def test_bridge_create_with_credentials_and_env_password(env):
    hub = env.hub()
    first = env.hash_upstream("first")
    node = env.node(hub, first.url)
    up = env.hash_upstream("second")
    alloc, _ = proxy_create(hub)
    penv = dict(os.environ, SLUICE_BRIDGE_PASSWORD=alloc["password"])
    cp = bridge_cli(node, "create", up.url, hub.url, "--username",
                    alloc["username"], env=penv)
    assert cp.returncode == 0, cp.stderr
    m = BRIDGE_RE.search(cp.stdout)
    assert m and m.group(1) == alloc["identity"], cp.stdout
    # The bridge line carries the identity of the hub's welcome: its
    # control connection is registered, the first request is served.
    st, _, body = get(hub, alloc["identity"], "/c")
    assert (st, body) == (200, b"second /c")

    # Other credentials for the same upstream and hub: refused, and the
    # bridge keeps its own.
    other, _ = proxy_create(hub)
    cp = bridge_cli(node, "create", up.url, hub.url, "--username",
                    other["username"], "--password", other["password"])
    assert cp.returncode == 1, (cp.returncode, cp.stderr)
    assert "other credentials" in cp.stderr, cp.stderr
    assert get(hub, alloc["identity"], "/d")[2] == b"second /d"
