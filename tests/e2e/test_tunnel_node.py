"""The bridge node (`sluice boot up --bridge`) against the real hub:
reverse connect (errors before the bridge attaches, 200 after), GET and
POST through the tunnel, the private-upstream rule, an upstream that is
down, a hub restart, a killed bridge, the state file and the `sluice
bridge` CLI over the node's local API. No fixed sleeps: every wait polls a
condition with a bound.
"""

import json
import os
import re
import socket
import subprocess
import time

from helpers import (free_port, sanitizer_report, scaled, sluice_bin,
                     wait_for)
from netns import Netns, link
from tunnel_x_support import (BRIDGE_RE, FreezeProxy, NsTunnel, http_get,
                              read_response, tcp_sockets)


def get(hub, identity, path="/", **kw):
    return http_get(hub.port, hub.host(identity), path, **kw)


def bridge_cli(node, *args, timeout=30):
    """Runs `sluice bridge --api <node api> ...`; returns the process."""
    return subprocess.run(
        [sluice_bin(), "bridge", "--api", "127.0.0.1:%d" % node.api_port]
        + list(args), capture_output=True, text=True,
        timeout=scaled(timeout), stdin=subprocess.DEVNULL)


def node_bridges(node):
    cp = bridge_cli(node, "list", "--json")
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def test_reverse_connect(env):
    """HAProxy's reverse_connect_full in miniature: the identity exists,
    the bridge is not there yet (error), then it attaches (200)."""
    hub = env.hub()
    up = env.hash_upstream("revup")
    creds = hub.create()
    ident = creds["identity"]
    st, _, body = get(hub, "zz0000000000")
    assert st == 404 and b"Proxy not available" in body
    st, _, body = get(hub, ident)
    assert (st, body) == (502, b"Proxy not connected")
    node = env.node(hub, up.url, creds=creds)
    assert node.identity == ident
    st, _, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
        get(hub, ident, "/hello")), 20, what="200 through the bridge")
    assert body == b"revup /hello"


def test_get_and_post_through_tunnel(env, tmp_path):
    hub = env.hub()
    web = env.nginx(files={"index.html": b"<h1>hi</h1>\n",
                           "big.bin": os.urandom(3 << 20)})
    node = env.node(hub, web.url)
    st, _, body = get(hub, node.identity, "/index.html")
    assert st == 200 and body == b"<h1>hi</h1>\n"
    st, _, body = get(hub, node.identity, "/big.bin", timeout=60)
    with open(os.path.join(web.root, "big.bin"), "rb") as f:
        assert st == 200 and body == f.read()

    up = env.hash_upstream("postup")
    st, _ = node.add_bridge(up.url)
    assert st == 201
    lines = node.wait_bridges(2)
    ident2 = [b for b in lines if b[2] == up.url][0][0]
    # warm up with a GET: a big body sent before the new bridge's first
    # data connection is authenticated is the hub's to hold, not ours
    wait_for(lambda: get(hub, ident2, "/w")[0] == 200, 20, what="GET ok")
    payload = os.urandom(200000)
    st, _, body = get(hub, ident2, "/p", method="POST", body=payload)
    assert st == 200, body
    import hashlib
    got = json.loads(body)
    assert got["length"] == len(payload)
    assert got["sha256"] == hashlib.sha256(payload).hexdigest()
    # the node counted it both ways
    b = [x for x in node_bridges(node) if x["identity"] == ident2][0]
    assert b["traffic"]["upstream"]["up"] >= len(payload)
    assert b["traffic"]["gateway"]["down"] >= len(payload)
    assert b["state"] == "connected"


def test_malformed_chunked_body_400(env):
    """A chunk size that is not hex, after a good chunk went through: the
    user gets 400 saying so (nothing of the response had started), the
    hub logs it once, and the bridge keeps serving."""
    import socket
    hub = env.hub()
    up = env.hash_upstream("mb")
    node = env.node(hub, up.url)
    s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
    try:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: " +
                  hub.host(node.identity).encode() +
                  b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        s.sendall(b"ZZZ\r\nmore\r\n")
        st, _, body = read_response(s)
    finally:
        s.close()
    assert (st, body) == (400, b"Bad Request: malformed body")
    assert hub.proc.stderr().count("malformed request body") == 1
    assert get(hub, node.identity, "/after")[0] == 200


LL_UPSTREAM = """
import http.server, socket, sys
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = b"link-local " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
S(("fe80::1", int(sys.argv[1]), 0, socket.if_nametoindex("lo")),
  H).serve_forever()
"""


def test_link_local_ipv6_upstream_with_zone(tmp_path):
    """DESIGN allows link-local upstreams; an IPv6 one needs its
    interface: http://[fe80::1%25lo]:PORT. In a network namespace of the
    test's own (fe80::1 on its loopback), a hub, a bridge and an upstream
    on that address; curl reaches it through the tunnel, and hub and
    bridge stop cleanly (exit 0, no sanitizer report)."""
    up_port = 18081  # a fresh namespace: all free
    with Netns(tmp_path) as ns:
        ns.add_address("fe80::1/64", "lo")
        up = ns.proc("llup", "/usr/bin/python3", "-c", LL_UPSTREAM, up_port)
        t = NsTunnel(ns, tmp_path, name="llhub")
        try:
            def listening():
                assert up.alive(), up.describe()
                return ns.run("ss", "-Htln", "sport = :%d" % up_port
                              ).stdout.strip()
            wait_for(listening, 10, what="the link-local upstream")
            upstream = "http://[fe80::1%%25lo]:%d" % up_port
            node, ident = t.node("llnode", upstream)
            assert BRIDGE_RE.search(node.stdout()).group(3) == upstream
            assert t.get(ident, "/zone") == (200, "link-local /zone")
        finally:
            problems = t.close()
    assert not problems, "\n".join(problems)


PUB_UPSTREAM = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = ("pub %s from %s" % (self.path, self.client_address[0])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])),
                                H).serve_forever()
"""


def test_public_upstream_refused(tmp_path):
    """192.0.2.1 (TEST-NET-1) is public. Hub and bridge run in a namespace
    of the test's own with no route off the machine, so were the check
    gone the dial would fail (unreachable), not leave by the default
    route. The refusal is the private-address check's: its body and its
    own words in the log, once, not per request."""
    with Netns(tmp_path) as ns:
        t = NsTunnel(ns, tmp_path)
        try:
            node, ident = t.node("pubnode", "http://192.0.2.1:80")
            for _ in range(2):
                assert t.get(ident) == (502, "Upstream not private")
            err = node.stderr()
        finally:
            problems = t.close()
    assert not problems, "\n".join(problems)
    assert err.count("upstream http://192.0.2.1:80 resolves to 192.0.2.1:80, "
                     "which is not private (see --allow-public-upstream): "
                     "answering 502 (Upstream not private)") == 1, err
    assert "answering 502 (" in err and err.count("answering 502 (") == 1
    assert "not reachable" not in err, err


def test_public_upstream_allowed_by_flag(tmp_path):
    """A real upstream on a public address (198.51.100.2, in a second
    namespace joined by veth): a bridge without --allow-public-upstream
    refuses it, one with the flag reaches it (the upstream sees the
    bridge's 198.51.100.1)."""
    with Netns(tmp_path) as a, Netns(tmp_path) as b:
        link(a, "198.51.100.1/24", b, "198.51.100.2/24")
        up = b.proc("pubup", "/usr/bin/python3", "-c", PUB_UPSTREAM,
                    "198.51.100.2", 8080)

        def listening():
            assert up.alive(), up.describe()
            return b.run("ss", "-Htln", "sport = :8080").stdout.strip()
        wait_for(listening, 10, what="the public upstream listening")
        t = NsTunnel(a, tmp_path)
        try:
            refused, id1 = t.node("strict", "http://198.51.100.2:8080")
            allowed, id2 = t.node("allowed", "http://198.51.100.2:8080",
                                  "--allow-public-upstream")
            assert t.get(id1, "/x") == (502, "Upstream not private")
            assert t.get(id2, "/x") == (200, "pub /x from 198.51.100.1")
            assert t.get(id1, "/y") == (502, "Upstream not private")
            err1, err2 = refused.stderr(), allowed.stderr()
        finally:
            problems = t.close()
    assert not problems, "\n".join(problems)
    assert "which is not private (see --allow-public-upstream)" in err1, err1
    assert "not private" not in err2 and "answering 502" not in err2, err2


def test_upstream_down_gives_502(env):
    hub = env.hub()
    port = free_port()
    node = env.node(hub, "http://127.0.0.1:%d" % port)
    st, _, body = get(hub, node.identity)
    assert st == 502 and body == b"Upstream not reachable"
    # and the bridge itself stays up: more requests, same answer
    for _ in range(3):
        assert get(hub, node.identity)[0] == 502
    assert node.alive()
    # the 502s went to the hub: gateway up counts them, upstream nothing
    b = node_bridges(node)[0]
    assert b["traffic"]["gateway"]["up"] >= 4 * len(b"Upstream not reachable")
    assert b["traffic"]["upstream"] == {"down": 0, "up": 0}


def test_hub_restart_keeps_identity(env, tmp_path):
    port = free_port()
    state = str(tmp_path / "hubstate")
    hub = env.hub(http_port=port, state_dir=state)
    up = env.hash_upstream("r")
    node = env.node(hub, up.url)
    ident = node.identity
    url = node.bridges()[0][1]
    assert get(hub, ident, "/a")[0] == 200
    assert hub.stop() == 0
    hub2 = env.hub(http_port=port, state_dir=state)

    def back():
        try:
            r = get(hub2, ident, "/b", timeout=15)
        except OSError:
            return None
        return r if r[0] == 200 else None
    st, _, body = wait_for(back, 30, what="bridge back after hub restart")
    assert body == b"r /b"
    # same identity and URL, announced once
    assert len(node.bridges()) == 1
    bs = node_bridges(node)
    assert bs[0]["identity"] == ident and bs[0]["url"] == url


def test_bridge_killed_gives_proxy_not_connected(env):
    hub = env.hub()
    up = env.hash_upstream("k")
    node = env.node(hub, up.url)
    assert get(hub, node.identity)[0] == 200
    node.kill()
    t0 = time.monotonic()
    # the kernel closes the dead bridge's connections: the hub sees it at
    # once (well inside the 8 s pairing window) and answers 502 from then
    wait_for(lambda: hub.proxy(node.identity)["bridges"] == 0, 5,
             what="the hub seeing the bridge gone")
    st, _, body = get(hub, node.identity)
    assert (st, body) == (502, b"Proxy not connected")
    assert time.monotonic() - t0 < scaled(5)


def test_state_survives_node_restart(env):
    hub = env.hub()
    up = env.hash_upstream("s")
    node = env.node(hub, up.url)
    ident = node.identity
    assert node.stop() == 0
    with open(os.path.join(node.state_dir, "bridges.json")) as f:
        saved = json.load(f)
    assert saved["bridges"][0]["identity"] == ident
    assert oct(os.stat(os.path.join(node.state_dir,
                                    "bridges.json")).st_mode & 0o777) \
        == "0o600"
    # same state dir; --upstream names the saved bridge, so none is added
    node2 = env.node(hub, up.url, name="node0")
    assert node2.identity == ident
    assert len(node_bridges(node2)) == 1
    assert get(hub, ident, "/z")[2] == b"s /z"


def test_bridge_cli(env):
    hub = env.hub()
    up = env.hash_upstream("c")
    node = env.node(hub, up.url)
    ident = node.identity
    cp = bridge_cli(node, "list")
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[0].split()[:4] == ["IDENTITY", "UPSTREAM", "HUB", "STATE"]
    assert "TRAFFIC" in lines[0] and "LAST SEEN" in lines[0]
    row = [l for l in lines if l.startswith(ident)][0]
    assert "connected" in row and "\u2193" in row and "\u2191" in row
    # columns are aligned: the header's STATE starts where the row's does
    assert lines[0].index("STATE") == row.index("connected")

    cp = bridge_cli(node, "disconnect", ident)
    assert cp.returncode == 0, cp.stderr
    assert node_bridges(node)[0]["state"] == "disconnected"
    wait_for(lambda: hub.proxy(ident)["bridges"] == 0, 10,
             what="the hub seeing the bridge disconnect")
    st, _, body = get(hub, ident)
    assert (st, body) == (502, b"Proxy not connected")

    cp = bridge_cli(node, "connect", ident)
    assert cp.returncode == 0, cp.stderr
    wait_for(lambda: get(hub, ident)[0] == 200, 20, what="reconnected")

    cp = bridge_cli(node, "create", "http://127.0.0.1")
    assert cp.returncode == 1 and "explicit port" in cp.stderr
    cp = bridge_cli(node, "create", up.url, hub.url)
    assert cp.returncode == 1 and "exists already" in cp.stderr
    cp = bridge_cli(node, "remove", "zz0000000000")
    assert cp.returncode == 1 and "No such bridge" in cp.stderr

    # a bridge whose hub is down never gets an identity: prune takes it
    dead_hub = "http://127.0.0.1:%d" % free_port()
    cp = bridge_cli(node, "create", up.url, dead_hub)
    assert cp.returncode == 0, cp.stderr
    assert len(node_bridges(node)) == 2
    cp = bridge_cli(node, "prune")
    assert cp.returncode == 0 and cp.stdout.startswith("1 bridge removed")
    assert [b["identity"] for b in node_bridges(node)] == [ident]

    # without a hub, create uses the node's own --hub
    up2 = env.hash_upstream("c2")
    cp = bridge_cli(node, "create", up2.url)
    assert cp.returncode == 0, cp.stderr
    m = BRIDGE_RE.search(cp.stdout)
    assert m and m.group(3) == up2.url, cp.stdout
    wait_for(lambda: get(hub, m.group(1), "/y")[0] == 200, 20,
             what="second bridge serving")
    assert get(hub, m.group(1), "/y")[2] == b"c2 /y"

    cp = bridge_cli(node, "remove", ident)
    assert cp.returncode == 0, cp.stderr
    assert [b["identity"] for b in node_bridges(node)] == [m.group(1)]
    wait_for(lambda: hub.proxy(ident)["bridges"] == 0, 10,
             what="the hub seeing the bridge removed")
    st, _, body = get(hub, ident)
    assert (st, body) == (502, b"Proxy not connected")


def test_bad_upstream_url_refused_at_boot(tmp_path):
    cp = subprocess.run(
        [sluice_bin(), "boot", "up", "--bridge", "--upstream",
         "http://127.0.0.1:80/app", "--state-dir", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=scaled(10),
        stdin=subprocess.DEVNULL)
    assert cp.returncode == 2
    assert "path is not allowed" in cp.stderr


def test_cli_without_node(tmp_path):
    cp = subprocess.run(
        [sluice_bin(), "bridge", "--api", "127.0.0.1:%d" % free_port(),
         "list"], capture_output=True, text=True, timeout=scaled(10),
        stdin=subprocess.DEVNULL)
    assert cp.returncode == 1
    assert "is one running" in cp.stderr


def test_framed_data_connections(env, tmp_path):
    """--framed: the data connections carry WebSocket binary frames (the
    fallback when raw upgrades are mangled on the way)."""
    hub = env.hub()
    up = env.hash_upstream("f")
    node = env.node(hub, up.url, args=["--framed"])
    st, _, body = get(hub, node.identity, "/framed")
    assert st == 200 and body == b"f /framed"
    import hashlib
    payload = os.urandom(3 << 20)  # several frames, past the high water
    st, _, body = get(hub, node.identity, "/p", method="POST", body=payload,
                      timeout=60)
    assert st == 200, body
    got = json.loads(body)
    assert got["length"] == len(payload)
    assert got["sha256"] == hashlib.sha256(payload).hexdigest()
    # a download bigger than every buffer on the way, framed
    blob = os.urandom(6 << 20)
    web = env.nginx(files={"blob.bin": blob})
    node3 = env.node(hub, web.url, args=["--framed"])
    st, _, body = get(hub, node3.identity, "/blob.bin", timeout=60)
    assert st == 200 and body == blob
    # 502 in framed mode too
    node2 = env.node(hub, "http://127.0.0.1:%d" % free_port(),
                     args=["--framed"])
    st, _, body = get(hub, node2.identity)
    assert st == 502 and body == b"Upstream not reachable"


def test_node_started_before_hub(env):
    """The bridge retries with back-off until the hub appears."""
    port = free_port()

    class Later:
        url = "http://127.0.0.1:%d" % port
    up = env.hash_upstream("early")
    node = env.node(Later, up.url, wait=False)
    wait_for(lambda: "retrying in" in node.proc.stderr(), 10,
             what="a retry logged")
    hub = env.hub(http_port=port)
    node.hub = hub
    node.wait_bridges(1, timeout=30)
    assert get(hub, node.identity, "/e")[2] == b"early /e"


def test_dead_hub_detected(env):
    """A hub that stops answering (SIGSTOP) is declared dead after
    --dead-ms; once it runs again the bridge is back, same identity."""
    import signal
    hub = env.hub()
    up = env.hash_upstream("d")
    node = env.node(hub, up.url, args=["--ping-ms", "200", "--dead-ms",
                                       "1000"])
    ident = node.identity
    assert get(hub, ident)[0] == 200
    os.kill(hub.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: "retrying in" in node.proc.stderr(), 10,
                 what="dead hub noticed")
    finally:
        os.kill(hub.pid, signal.SIGCONT)

    def back():
        try:
            r = get(hub, ident, "/d", timeout=15)
        except OSError:
            return None
        return r if r[0] == 200 else None
    wait_for(back, 30, what="bridge back after the hub resumed")
    assert len(node.bridges()) == 1


def test_bridge_back_replaces_stale_connections(env):
    """A path that dies silently (a NAT dropping its state: nothing
    arrives, nothing is reset). The node notices first (--dead-ms 2 s; the
    hub's stays 45 s) and dials again; the hub replaces the old control
    connection and its idle pool at once, though this hub has no bridge
    limit, so no request is paired with the dead path."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace
    hub = env.hub()
    up = env.hash_upstream("st")
    proxy = FreezeProxy(hub.port)
    env.others.append(proxy)
    node = env.node(SimpleNamespace(url=proxy.url), up.url,
                    args=["--ping-ms", "500", "--dead-ms", "2000"])
    ident = node.identity
    assert get(hub, ident, "/a")[0] == 200
    proxy.freeze()
    wait_for(lambda: "replaced by conn" in hub.proc.stderr(), 20,
             what="the stale control connection replaced")
    # Its idle pool closed, or (protocol v2) its mux connections take no
    # new streams.
    assert ("idle data connections of the replaced one closed" in
            hub.proc.stderr() or "mux connections of the replaced one" in
            hub.proc.stderr())
    with ThreadPoolExecutor(10) as ex:
        got = list(ex.map(lambda i: get(hub, ident, "/b%d" % i,
                                        timeout=scaled(8))[0], range(10)))
    assert got == [200] * 10


KEEPALIVE = {"keepalive": 1, "keepidle": 15, "keepintvl": 5, "keepcnt": 6,
             "user_timeout": 45000}


def test_tunnel_connections_watched_by_the_kernel(env):
    """Raw data connections carry no pings, so both ends arm TCP
    keep-alive (15 s idle, 6 probes 5 s apart) and TCP_USER_TIMEOUT 45 s
    on every hub <-> bridge connection: the values are read with
    getsockopt on duplicates of the processes' own sockets
    (pidfd_getfd), and `ss -o` shows the kernel's keep-alive timer armed
    within 15 s. User connections are left alone."""
    hub = env.hub()
    up = env.hash_upstream("ka")
    node = env.node(hub, up.url)
    assert get(hub, node.identity)[0] == 200

    last = []

    def tunnel_socks():
        # the node's connections to the hub port, and the hub's ends of
        # those very connections (matched by the node's local port); a
        # connection a moment old may not be armed yet, one that stays
        # unarmed fails the wait
        n = {local[1]: o for local, peer, o in tcp_sockets(node.pid)
             if peer[1] == hub.port}
        h = {peer[1]: o for local, peer, o in tcp_sockets(hub.pid)
             if local[1] == hub.port and peer[1] in n}
        last[:] = [n, h]
        both = list(n.values()) + list(h.values())
        return len(n) >= 2 and set(h) == set(n) and all(
            o == KEEPALIVE for o in both)
    # the control connection and at least one pool connection, both ends
    try:
        wait_for(tunnel_socks, 10, what="keep-alive options on both ends")
    except AssertionError as e:
        raise AssertionError("%s: node %r, hub %r" % (e, last[0], last[1]))

    def timers(flt):
        out = subprocess.run(["ss", "-Htno", "state", "established", flt],
                             capture_output=True, text=True,
                             timeout=scaled(10)).stdout
        return [ln for ln in out.splitlines() if ln.strip()]
    def keepalive_left(ln):
        m = re.search(r"timer:\(keepalive,(?:(\d+)min)?([\d.]+)(m?s)ec", ln)
        if not m:
            return None  # another timer (a retransmit) for the moment
        return int(m.group(1) or 0) * 60 + float(m.group(2)) / (
            1000 if m.group(3) == "ms" else 1)
    for flt in ("( sport = :%d )" % hub.port, "( dport = :%d )" % hub.port):
        lines = wait_for(lambda: (lambda ls: ls if len(ls) >= 2 and all(
            keepalive_left(ln) is not None for ln in ls) else None)(
                timers(flt)), 10, what="keep-alive timers " + flt)
        for ln in lines:
            assert 0 < keepalive_left(ln) <= 15, ln
    s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
    try:
        lport = s.getsockname()[1]
        s.sendall(b"GET / HTTP/1.1\r\nHost: " +
                  hub.host(node.identity).encode() + b"\r\n\r\n")
        assert read_response(s)[0] == 200
        users = [o for local, peer, o in tcp_sockets(hub.pid)
                 if local[1] == hub.port and peer[1] == lport]
        assert len(users) == 1 and users[0]["keepalive"] == 0 and \
            users[0]["user_timeout"] == 0, users
        lines = timers("( sport = :%d and dport = :%d )" % (hub.port, lport))
        assert len(lines) == 1 and "keepalive" not in lines[0], lines
    finally:
        s.close()


def test_newest_bridge_at_limit_takes_over_from_a_dead_one(env):
    """An allocation for one bridge; its bridge's path dies silently and
    another node takes the credentials. The hub replaces the old control
    connection (the limit) and closes the idle pool the old bridge left:
    every request goes to the new bridge, none hangs on the dead path."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace
    hub = env.hub()
    creds = hub.create(bridges=1)
    ident = creds["identity"]
    old_up = env.hash_upstream("old")
    new_up = env.hash_upstream("new")
    proxy = FreezeProxy(hub.port)
    env.others.append(proxy)
    env.node(SimpleNamespace(url=proxy.url), old_up.url, creds=creds,
             name="oldnode")
    assert get(hub, ident, "/x")[2] == b"old /x"
    proxy.freeze()
    env.node(hub, new_up.url, creds=creds, name="newnode")
    wait_for(lambda: "replaced by conn" in hub.proc.stderr(), 20,
             what="the old control connection replaced")
    with ThreadPoolExecutor(10) as ex:
        got = list(ex.map(lambda i: get(hub, ident, "/y%d" % i,
                                        timeout=scaled(8)), range(10)))
    assert [(g[0], g[2]) for g in got] == [
        (200, b"new /y%d" % i) for i in range(10)]


def test_daemon_mode(env, tmp_path):
    hub = env.hub()
    up = env.hash_upstream("dm")
    state = str(tmp_path / "dstate")
    api = free_port()
    cp = subprocess.run(
        [sluice_bin(), "boot", "up", "--bridge", "--daemon", "--hub",
         hub.url, "--upstream", up.url, "--state-dir", state, "--api",
         "127.0.0.1:%d" % api], capture_output=True, text=True,
        timeout=scaled(30), stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    pid = int(open(os.path.join(state, "node.pid")).read())
    try:
        def listed():
            c = subprocess.run([sluice_bin(), "bridge", "--state-dir", state,
                                "list", "--json"], capture_output=True,
                               text=True, timeout=scaled(10))
            if c.returncode != 0:
                return None
            bs = json.loads(c.stdout)
            return bs if bs and bs[0]["state"] == "connected" else None
        bs = wait_for(listed, 20, what="daemon's bridge connected")
        assert get(hub, bs[0]["identity"], "/q")[2] == b"dm /q"
        cp = subprocess.run([sluice_bin(), "boot", "down", "--bridge",
                             "--state-dir", state], capture_output=True,
                            text=True, timeout=scaled(30))
        assert cp.returncode == 0, cp.stderr
        wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                 open("/proc/%d/stat" % pid).read().split()[2] == "Z",
                 20, what="daemon gone")
        log = open(os.path.join(state, "node.log")).read()
        assert "node: stopped" in log
        assert sanitizer_report(log) is None, sanitizer_report(log)
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_gateway_token(env):
    """A hub started with a gateway token allocates only to bridges that
    send it (?token=). The node percent-encodes the token and the hub
    decodes it, so reserved characters (space, '&', '=', '%') survive."""
    token = "s3cret T0ken&x=y%z~"
    hub = env.hub(args=["--token", token])
    up = env.hash_upstream("tok")
    bad = env.node(hub, up.url, wait=False, name="nodebad")
    wait_for(lambda: "Gateway token required" in bad.proc.stderr(), 15,
             what="the hub's refusal logged")
    assert bad.bridges() == []
    node = env.node(hub, up.url, args=["--token", token])
    assert get(hub, node.identity, "/t")[2] == b"tok /t"
    # the token is not a credential the node prints or logs
    assert token not in node.proc.stderr() and token not in \
        node.proc.stdout()
