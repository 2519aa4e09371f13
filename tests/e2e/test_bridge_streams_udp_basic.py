"""UDP through bridges (issue 10), the basics of the datagram carrier: a
Python UDP echo upstream behind a udp:// bridge, many flows echoed to the
right user, idle expiry (--udp-idle-ms), the ACL and the session cap
decided on the hub, and iperf3 -u through the tunnel (its TCP control
connection through a tcp:// bridge leased the same port number).
"""

import json
import shutil
import socket
import subprocess
import time

import pytest

from helpers import free_port, scaled, wait_for
from tunnel_x_support import BRIDGE_RE

UDP_URL = "udp://127.0.0.1:%d"


def bridge_port(node, scheme="udp", timeout=20):
    """The public port of node's bridge line (`bridge <id> udp://<domain>:
    <port> -> ...`)."""
    def line():
        if not node.proc.alive():
            raise AssertionError("node exited:\n" + node.proc.describe())
        m = BRIDGE_RE.findall(node.proc.stdout())
        return m[0] if m else None
    ident, url, _ = wait_for(line, timeout, what="the bridge line")
    node.identity = ident
    assert url.startswith(scheme + "://"), url
    return int(url.rsplit(":", 1)[1])


def udp_client(source="127.0.0.1"):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind((source, 0))
    return c


def ask(c, port, payload, timeout=3):
    """Sends payload to the hub's public port; the first answer, or None."""
    c.settimeout(scaled(timeout))
    c.sendto(payload, ("127.0.0.1", port))
    try:
        return c.recvfrom(70000)[0]
    except socket.timeout:
        return None


def udp_bridge(env, up, args=(), hub_args=(), **kw):
    port = free_port(both=True)
    hub = env.hub(stream_ports="%d-%d" % (port, port), args=list(hub_args))
    node = env.node(hub, UDP_URL % up.port, wait=False, args=list(args),
                    **kw)
    assert bridge_port(node) == port
    return hub, node, port


def test_1000_datagrams_from_20_ports_each_to_its_user(env, udp_upstream):
    up = udp_upstream(reply_prefix=b"re:")
    hub, node, port = udp_bridge(env, up)
    assert hub.proxy(node.identity).get("udp_port") == port
    clients = [udp_client() for _ in range(20)]
    try:
        # The first datagram waits for the carrier the hub asks for.
        assert ask(clients[0], port, b"hello", timeout=10) == b"re:hello"
        got = 0
        for rnd in range(50):
            for n, c in enumerate(clients):
                c.sendto(b"%d/%d" % (n, rnd), ("127.0.0.1", port))
            for n, c in enumerate(clients):
                c.settimeout(scaled(3))
                assert c.recvfrom(70000)[0] == b"re:%d/%d" % (n, rnd)
                got += 1
        assert got == 1000
        # One upstream socket per user: 20 source ports at the upstream.
        assert len(set(up.peers())) == 20, set(up.peers())
    finally:
        for c in clients:
            c.close()

    def counted():
        t = hub.proxy(node.identity)["traffic"]["user"]
        return t if t["up"] >= 4000 and t["down"] >= 7000 else None
    wait_for(counted, 15, what="the datagrams counted in the traffic")


def test_idle_flow_expires(env, udp_upstream):
    up = udp_upstream(reply_prefix=b"re:")
    idle = ["--udp-idle-ms", "1000"]
    hub, node, port = udp_bridge(env, up, args=idle, hub_args=idle)
    c = udp_client()
    try:
        assert ask(c, port, b"one", timeout=10) == b"re:one"
        first = up.peers()[-1]
        assert ask(c, port, b"two") == b"re:two"
        assert up.peers()[-1] == first  # within the idle time: same flow

        # Idle past it on both sides (swept every quarter of it): the
        # next datagram of the same user is a new flow, a new socket.
        # With no flow left, the port lets its carrier go too.
        def no_data_conn():
            m = hub.metrics()
            return m.get("sluice_hub_data_connections", -1) == 0 or None
        wait_for(no_data_conn, 10, what="the idle carrier closed")
        time.sleep(1.0)
        assert ask(c, port, b"three", timeout=10) == b"re:three"
        assert up.peers()[-1] != first, (first, up.peers())
    finally:
        c.close()


def test_acl_deny_drops_before_the_bridge(env, udp_upstream):
    up = udp_upstream(reply_prefix=b"re:")
    hub, node, port = udp_bridge(env, up, args=["--deny", "ip:127.0.0.2"])
    denied = udp_client("127.0.0.2")
    ok = udp_client()
    try:
        assert ask(ok, port, b"allowed", timeout=10) == b"re:allowed"
        for i in range(3):
            assert ask(denied, port, b"denied%d" % i, timeout=1) is None
        assert ask(ok, port, b"again") == b"re:again"
        assert not any(d.startswith(b"denied") for _, d in up.received)
        assert "refused (acl)" in hub.proc.stderr() + hub.proc.stdout()
    finally:
        denied.close()
        ok.close()


def test_max_sessions(env, udp_upstream):
    up = udp_upstream(reply_prefix=b"re:")
    hub, node, port = udp_bridge(env, up, args=["--max-sessions", "2"])
    a, b, c = udp_client(), udp_client(), udp_client()
    try:
        assert ask(a, port, b"a", timeout=10) == b"re:a"
        assert ask(b, port, b"b") == b"re:b"
        assert ask(c, port, b"c", timeout=1) is None  # a third flow
        assert ask(a, port, b"a2") == b"re:a2"  # the two go on
        assert ask(b, port, b"b2") == b"re:b2"
        assert not any(d == b"c" for _, d in up.received)
    finally:
        for s in (a, b, c):
            s.close()


def test_carrier_again_after_the_bridge_restarts(env, udp_upstream):
    """The bridge dies (its carrier with it): datagrams meanwhile are
    lost, not held; restarted, it keeps its identity and port, and the
    next datagrams ask for a new carrier and pass."""
    up = udp_upstream(reply_prefix=b"re:")
    hub, node, port = udp_bridge(env, up, name="udp-node")
    c = udp_client()
    try:
        assert ask(c, port, b"before", timeout=10) == b"re:before"
        node.kill()
        assert ask(c, port, b"down", timeout=1) is None
        again = env.node(hub, UDP_URL % up.port, wait=False, name="udp-node")
        assert bridge_port(again) == port
        assert again.identity == node.identity

        def back():
            return ask(c, port, b"after", timeout=1) == b"re:after" or None
        wait_for(back, 15, what="a datagram through the new carrier")
    finally:
        c.close()


def test_iperf3_udp_100mbit(env, iperf3_server):
    """iperf3's control connection goes through a tcp:// bridge, its
    datagrams through a udp:// one: two allocations, each leased the one
    port of the range for its kind."""
    iperf3 = shutil.which("iperf3") or "/usr/bin/iperf3"
    port = free_port(both=True)
    hub = env.hub(stream_ports="%d-%d" % (port, port))
    tcp = env.node(hub, "tcp://127.0.0.1:%d" % iperf3_server.port,
                   name="node-tcp", wait=False)
    udp = env.node(hub, UDP_URL % iperf3_server.port, name="node-udp",
                   wait=False)
    assert bridge_port(tcp, "tcp") == port
    assert bridge_port(udp, "udp") == port
    # The best of three runs: on a shared machine another process can
    # take the CPU for a whole run (the direct path loses then too).
    runs = []
    for _ in range(3):
        cp = subprocess.run([iperf3, "-c", "127.0.0.1", "-p", str(port),
                             "-u", "-b", "100M", "-t", "3", "-l", "1400",
                             "-J"], capture_output=True, text=True,
                            timeout=scaled(30), stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr
        s = json.loads(cp.stdout)["end"]["sum"]
        assert s["packets"] > 20000, s
        runs.append(s["lost_percent"])
        if s["lost_percent"] < 5.0:
            break
    assert min(runs) < 5.0, "lost %% in each run: %r" % runs


if __name__ == "__main__":
    pytest.main([__file__, "-v"])
