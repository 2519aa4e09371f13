"""Per-allocation options of TCP and UDP bridges (issue 10), from the
node's flags (sent in `hello`) or from the admin API: PROXY protocol
towards the upstream (HAProxy `accept-proxy` logs the user's real
address), ACL (a denied source is closed by the hub and the bridge is
never asked to dial), connection and UDP session caps.
"""

import time

from helpers import (handler_echo, handler_pp_echo, sanitizer_report,
                     scaled, wait_for)
from streams_support import (echo_ok, free_range, refusal,
                             handler_pp_v1_echo, node_log, range_arg,
                             stream_node, tcp_connect, try_ok, udp_ask,
                             udp_socket)
from tunnel_x_support import BRIDGE_RE, Node

SECOND = "127.0.0.2"   # a second loopback source address
THIRD = "127.0.0.3"


def hub_with_range(env, n=4, **kw):
    return env.hub(stream_ports=range_arg(free_range(n)), **kw)


def test_haproxy_accept_proxy_logs_real_address(env, haproxy, tcp_upstream):
    """--proxy-protocol v2: HAProxy in front of the upstream, with
    `accept-proxy`, logs 127.0.0.2 and the user's own port."""
    hub = hub_with_range(env)
    backend = tcp_upstream(handler_echo)
    hap = haproxy(backend.port, accept_proxy=True)
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % hap.port,
                    args=["--proxy-protocol", "v2"])
    with tcp_connect(b.port, source=SECOND, timeout=10) as c:
        client_port = c.getsockname()[1]
        c.sendall(b"through haproxy")
        got = b""
        while len(got) < 15:
            d = c.recv(100)
            assert d, "closed after %r" % got
            got += d
        assert got == b"through haproxy"
    want = "%s:%d" % (SECOND, client_port)
    log = wait_for(lambda: want in hap.log() and hap.log(), 10,
                   what="HAProxy logging %s" % want)
    line = [ln for ln in log.splitlines() if want in ln][0]
    assert line.startswith(want), line


def test_proxy_protocol_v2_header_fields(env, tcp_upstream):
    hub = hub_with_range(env)
    up = tcp_upstream(handler_pp_echo)
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % up.port,
                    args=["--proxy-protocol", "v2"])
    with tcp_connect(b.port, source=SECOND, timeout=10) as c:
        sport = c.getsockname()[1]
        c.sendall(b"after the header")
        got = b""
        while len(got) < 16:
            d = c.recv(100)
            assert d, "closed after %r" % got
            got += d
    assert got == b"after the header"
    rec = wait_for(lambda: up.accepted() and "pp" in up.accepted()[0]
                   and up.accepted()[0], 10, what="upstream record")
    info = rec["pp"]
    assert info is not None, "no v2 header, got %r" % rec.get("raw")
    assert info["version"] == 2 and info["command"] == 1, info
    assert (info["src"], info["sport"]) == (SECOND, sport), info
    assert (info["dst"], info["dport"]) == ("127.0.0.1", b.port), info


def test_api_options_proxy_protocol_v1_and_acl(env, tcp_upstream):
    """The same options set through POST /api/proxy/: PROXY v1 and an
    ACL (allow 127.0.0.0/8, deny 127.0.0.3); a bridge started with the
    allocation's credentials applies them."""
    hub = hub_with_range(env)
    st, alloc = hub.api("POST", "/api/proxy/", {
        "proxy_protocol": "v1",
        "acl": {"allow": ["cidr:127.0.0.0/8"], "deny": ["ip:%s" % THIRD]}})
    assert st == 201, (st, alloc)
    up = tcp_upstream(handler_pp_v1_echo)
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % up.port, creds=alloc)
    assert b.identity == alloc["identity"]

    with tcp_connect(b.port, source=SECOND, timeout=10) as c:
        sport = c.getsockname()[1]
        c.sendall(b"v1 payload")
        got = b""
        while len(got) < 10:
            d = c.recv(100)
            assert d, "closed after %r" % got
            got += d
    assert got == b"v1 payload"
    rec = wait_for(lambda: up.accepted() and "pp_v1" in up.accepted()[0]
                   and up.accepted()[0], 10, what="upstream record")
    assert rec["pp_v1"] == "PROXY TCP4 %s 127.0.0.1 %d %d" % (
        SECOND, sport, b.port), rec

    how, data, took = refusal(b.port, source=THIRD, timeout=5)
    assert how in ("eof", "reset") and data == b"", (how, data)
    up.sync()
    assert len(up.accepted()) == 1, [r["peer"] for r in up.accepted()]


def test_acl_deny_never_dials(env, tcp_upstream):
    """--deny ip:127.0.0.2: the hub closes that user at once and asks the
    bridge for nothing. With no pool (--pool 0) each user needs an `open`:
    an allowed user after the denied one reaches the upstream, and the
    upstream saw that one connection only."""
    hub = hub_with_range(env)
    up = tcp_upstream(handler_echo)
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % up.port, pool=0,
                    args=["--deny", "ip:%s" % SECOND])
    for _ in range(3):
        how, data, took = refusal(b.port, source=SECOND,
                                  payload=b"denied bytes", timeout=5)
        assert how in ("eof", "reset") and data == b"", (how, data)
        assert took < scaled(2), took
    assert echo_ok(b.port, b"allowed", source=THIRD, timeout=15)
    up.sync()
    peers = [r["peer"] for r in up.accepted()]
    assert len(peers) == 1, peers


def test_acl_allow_list(env, tcp_upstream):
    """--allow cidr:127.0.0.0/8 --deny ip:127.0.0.2: 127.0.0.3 passes,
    127.0.0.2 does not; --allow alone makes everything else denied."""
    hub = hub_with_range(env)
    up = tcp_upstream(handler_echo)
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % up.port,
                    args=["--allow", "cidr:127.0.0.0/8",
                          "--deny", "ip:%s" % SECOND])
    assert echo_ok(b.port, b"x", source=THIRD)
    how, data, _ = refusal(b.port, source=SECOND)
    assert how in ("eof", "reset") and data == b"", (how, data)

    up2 = tcp_upstream(handler_echo)
    b2 = stream_node(env, hub, "tcp://127.0.0.1:%d" % up2.port,
                     args=["--allow", "ip:%s" % THIRD])
    assert b2.port != b.port
    assert echo_ok(b2.port, b"y", source=THIRD)
    how, data, _ = refusal(b2.port, source="127.0.0.1")
    assert how in ("eof", "reset") and data == b"", (how, data)
    up2.sync()
    assert len(up2.accepted()) == 1


def test_udp_acl_deny(env, udp_upstream):
    hub = hub_with_range(env)
    up = udp_upstream(reply_prefix=b"re:")
    b = stream_node(env, hub, "udp://127.0.0.1:%d" % up.port,
                    args=["--deny", "ip:%s" % SECOND])
    denied = udp_socket(source=SECOND)
    allowed = udp_socket(source=THIRD)
    try:
        assert udp_ask(denied, b.port, b"no", timeout=1) is None
        assert udp_ask(allowed, b.port, b"yes") == b"re:yes"
        # the allowed datagram went after the denied one through the same
        # hub and node: the upstream has seen all it will
        assert [d for _, d in up.received] == [b"yes"], up.received
    finally:
        denied.close()
        allowed.close()


def test_max_connections(env, tcp_upstream):
    """--max-conns 2: a third concurrent user is closed at once; once one
    leaves, a new one is served."""
    hub = hub_with_range(env)
    up = tcp_upstream(handler_echo)
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % up.port,
                    args=["--max-conns", "2"])
    held = []
    try:
        for i in range(2):
            c = tcp_connect(b.port, timeout=10)
            held.append(c)
            c.sendall(b"held%d" % i)
            assert c.recv(100) == b"held%d" % i
        how, data, took = refusal(b.port, timeout=5)
        assert how in ("eof", "reset") and data == b"", (how, data)
        up.sync()
        assert len(up.accepted()) == 2
        held.pop(0).close()
        # the hub notices the close and frees the slot
        wait_for(lambda: try_ok(lambda: echo_ok(b.port, b"again")), 10,
                 interval=0.2, what="a slot free after one user left")
    finally:
        for c in held:
            c.close()


def test_max_sessions_udp(env, udp_upstream):
    """--max-sessions 2: a third user address gets no flow while two are
    live; with --udp-idle-ms 1000 the two expire and the third is then
    served."""
    idle = ["--udp-idle-ms", "1000"]
    hub = hub_with_range(env, args=idle)
    up = udp_upstream(reply_prefix=b"re:")
    b = stream_node(env, hub, "udp://127.0.0.1:%d" % up.port,
                    args=["--max-sessions", "2"] + idle)
    socks = [udp_socket() for _ in range(3)]
    try:
        assert udp_ask(socks[0], b.port, b"a") == b"re:a"
        assert udp_ask(socks[1], b.port, b"b") == b"re:b"
        assert udp_ask(socks[2], b.port, b"c", timeout=1) is None
        assert len(set(up.peers())) == 2
        # both flows idle past the timeout (swept), then room again
        time.sleep(3.0)
        assert udp_ask(socks[2], b.port, b"d", timeout=5) == b"re:d"
    finally:
        for s in socks:
            s.close()


def test_bad_option_values_are_refused(env, tmp_path):
    """A wrong --proxy-protocol, ACL rule or cap is an error at start that
    names the flag, not a bridge with the option silently off."""
    hub = hub_with_range(env)
    for i, args in enumerate((["--proxy-protocol", "v3"],
                              ["--deny", "host:example"],
                              ["--allow", "cidr:127.0.0.0/33"],
                              ["--max-conns", "-1"],
                              ["--max-sessions", "lots"])):
        node = Node(tmp_path, hub, "tcp://127.0.0.1:9", name="bad%d" % i,
                    args=args, wait=False)
        try:
            rc = node.proc.wait(10)
            out = node_log(node)
            assert rc not in (None, 0), (args, rc, out[-1000:])
            assert args[0] in out, (args, out[-1000:])
            assert not BRIDGE_RE.search(node.proc.stdout())
            assert sanitizer_report(node.proc.stderr()) is None
        finally:
            node.proc.kill_group()


def test_api_caps(env, tcp_upstream, udp_upstream):
    """"max_connections" and "max_sessions" set through POST /api/proxy/
    hold for bridges started with those allocations' credentials."""
    hub = hub_with_range(env)
    st, ta = hub.api("POST", "/api/proxy/", {"max_connections": 1})
    assert st == 201, (st, ta)
    st, ua = hub.api("POST", "/api/proxy/", {"max_sessions": 1})
    assert st == 201, (st, ua)
    tup = tcp_upstream(handler_echo)
    uup = udp_upstream(reply_prefix=b"re:")
    t = stream_node(env, hub, "tcp://127.0.0.1:%d" % tup.port, creds=ta)
    u = stream_node(env, hub, "udp://127.0.0.1:%d" % uup.port, creds=ua)

    with tcp_connect(t.port, timeout=10) as held:
        held.sendall(b"one")
        assert held.recv(10) == b"one"
        how, data, _ = refusal(t.port, timeout=5)
        assert how in ("eof", "reset") and data == b"", (how, data)
    tup.sync()
    assert len(tup.accepted()) == 1

    a, b = udp_socket(), udp_socket()
    try:
        assert udp_ask(a, u.port, b"a") == b"re:a"
        assert udp_ask(b, u.port, b"b", timeout=1) is None
        assert len(set(uup.peers())) == 1
    finally:
        a.close()
        b.close()


def test_bridge_create_tcp_through_node_api(env, tcp_upstream):
    """`sluice bridge create tcp://...` (the node's POST /api/bridge/)
    adds a TCP bridge beside the first: its own identity and port."""
    hub = hub_with_range(env)
    up1 = tcp_upstream(handler_echo)
    up2 = tcp_upstream(handler_echo)
    first = stream_node(env, hub, "tcp://127.0.0.1:%d" % up1.port)
    st, body = first.node.add_bridge("tcp://127.0.0.1:%d" % up2.port)
    assert st in (200, 201), (st, body)
    from streams_support import StreamBridge, wait_bridge_line
    second = StreamBridge(first.node, wait_bridge_line(first.node, n=2))
    assert second.identity != first.identity
    assert second.port != first.port
    assert second.target == "tcp://127.0.0.1:%d" % up2.port
    assert echo_ok(second.port, b"second")
    up2.sync()
    up1.sync()
    assert len(up2.accepted()) == 1 and len(up1.accepted()) == 0
