"""The life of a stream port (issue 10): a port already taken on the host
is skipped, an exhausted range is an error for that bridge only, the
lease is kept when the bridge reconnects and when the hub restarts, a
killed bridge's users are closed within the dead-peer time, and a 1 MB
traffic limit cuts a TCP stream after about 1 MB and refuses new ones.
"""

import os
import socket
import time

from helpers import free_port, handler_echo, scaled, wait_for
from streams_support import (NO_FREE_PORT, close_state, echo_ok, free_range,
                             handler_sink, range_arg, stream_node,
                             tcp_connect, try_ok, udp_ask, udp_socket,
                             wait_log, refusal)
from tunnel_x_support import BRIDGE_RE, http_get

QUOTA = 1024000          # --limit-traffic 1MB (1 MB = 1,024,000 bytes)
BUFFER = 64 * 1024


def test_taken_port_is_skipped(env, tcp_upstream):
    """The first port of the range is held by another program (TCP): the
    hub skips it and leases the next."""
    rng = free_range(3)
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", rng[0]))
    holder.listen(1)
    try:
        hub = env.hub(stream_ports=range_arg(rng))
        up = tcp_upstream(handler_echo)
        b = stream_node(env, hub, "tcp://127.0.0.1:%d" % up.port)
        assert b.port != rng[0] and rng[0] < b.port <= rng[1], (b.port, rng)
        assert echo_ok(b.port)
    finally:
        holder.close()


def test_exhausted_range_fails_that_bridge_only(env, tcp_upstream,
                                                udp_upstream):
    """A range of one port: the first TCP bridge gets it, a second TCP
    bridge gets a clear error ("no free stream port") and no port; the
    first keeps serving, a UDP bridge still gets the same number (its
    own lease) and an HTTP bridge on the same hub is unaffected."""
    rng = free_range(1)
    hub = env.hub(stream_ports=range_arg(rng))
    up = tcp_upstream(handler_echo)
    first = stream_node(env, hub, "tcp://127.0.0.1:%d" % up.port)
    assert first.port == rng[0]

    second = env.node(hub, "tcp://127.0.0.1:%d" % up.port, wait=False)
    wait_log(second, NO_FREE_PORT, timeout=20)
    assert not BRIDGE_RE.search(second.proc.stdout()), \
        second.proc.stdout()

    assert echo_ok(first.port)
    uup = udp_upstream(reply_prefix=b"re:")
    u = stream_node(env, hub, "udp://127.0.0.1:%d" % uup.port)
    assert u.port == rng[0]
    c = udp_socket()
    try:
        assert udp_ask(c, u.port, b"udp") == b"re:udp"
    finally:
        c.close()

    web = env.hash_upstream("web")
    h = env.node(hub, web.url)
    st, _, body = http_get(hub.port, hub.host(h.identity), "/x")
    assert (st, body) == (200, b"web /x")
    # The refused bridge is not counted as using the port.
    assert hub.proxy(first.identity).get("tcp_port") == rng[0]


def test_bridge_killed_then_back_on_same_port(env, tcp_upstream):
    """SIGKILL the node: a user mid-stream is closed (FIN or reset)
    within the dead-peer time; the node started again with the same state
    directory gets the same identity and the same port, which serves."""
    keepalive = ["--ping-ms", "200", "--dead-ms", "1000"]
    dead_s = 1.0
    hub = env.hub(stream_ports=range_arg(free_range(4)), args=keepalive)
    up = tcp_upstream(handler_echo)
    target = "tcp://127.0.0.1:%d" % up.port
    b = stream_node(env, hub, target, name="bridge-k", args=keepalive)
    # The kill comes once the node has saved its bridge (see
    # test_identity_saved_before_killed_node_restarts for the moment
    # before that).
    wait_for(lambda: b.identity in _saved_bridges(b.node), 10,
             what="the node's state file naming its bridge")
    user = tcp_connect(b.port, timeout=10)
    try:
        user.sendall(b"before")
        assert user.recv(100) == b"before"
        b.node.kill()
        how, data, took = close_state(user, timeout=dead_s + scaled(5))
        assert how in ("eof", "reset"), (how, took)
        assert took <= dead_s + scaled(1), took
    finally:
        user.close()
    # New users while the bridge is away are closed (no bridge to pair
    # with: at the latest after the pairing window), not left hanging.
    how, data, took = refusal(b.port, timeout=8 + scaled(4))
    assert how in ("eof", "reset") and data == b"", (how, data, took)

    b2 = stream_node(env, hub, target, name="bridge-k", args=keepalive)
    assert (b2.identity, b2.port) == (b.identity, b.port), (b, b2)
    assert echo_ok(b2.port, b"after")
    assert hub.proxy(b.identity).get("tcp_port") == b.port


def _saved_bridges(node):
    try:
        with open(os.path.join(node.state_dir, "bridges.json")) as f:
            return f.read()
    except OSError:
        return ""


def test_identity_saved_before_killed_node_restarts(env):
    """A node killed just after its bridge line comes back with the same
    identity, so the same port: the line announces a bridge the state
    directory already holds. Ten kills, each right after the line."""
    # every lost identity is a new allocation: lift the per-source rate
    hub = env.hub(stream_ports=range_arg(free_range(32)),
                  args=["--allocation-rate", "1000"])
    lost = []
    for i in range(10):
        name = "quick%d" % i
        b = stream_node(env, hub, "tcp://127.0.0.1:9", name=name)
        b.node.kill()
        saved = b.identity in _saved_bridges(b.node)
        b2 = stream_node(env, hub, "tcp://127.0.0.1:9", name=name)
        if (b2.identity, b2.port) != (b.identity, b.port):
            lost.append("%s:%d -> %s:%d (state file %s it)" % (
                b.identity, b.port, b2.identity, b2.port,
                "named" if saved else "did not name"))
        b2.node.kill()
    assert not lost, "%d of 10 restarts got a new identity and port: %s" % (
        len(lost), "; ".join(lost))


def test_hub_restart_keeps_ports(env, tcp_upstream, udp_upstream, tmp_path):
    """The hub stopped and started again with the same state directory:
    both bridges come back on the same TCP and UDP ports."""
    port = free_port()
    state = str(tmp_path / "hubstate")
    rng = range_arg(free_range(6))
    hub = env.hub(http_port=port, state_dir=state, stream_ports=rng)
    tup = tcp_upstream(handler_echo)
    uup = udp_upstream(reply_prefix=b"re:")
    t = stream_node(env, hub, "tcp://127.0.0.1:%d" % tup.port)
    u = stream_node(env, hub, "udp://127.0.0.1:%d" % uup.port)
    assert echo_ok(t.port)
    c = udp_socket()
    try:
        assert udp_ask(c, u.port, b"1") == b"re:1"
        assert hub.stop() == 0

        hub2 = env.hub(http_port=port, state_dir=state, stream_ports=rng)
        # The nodes reconnect with back-off (1 s, doubling): wait for both
        # ports to serve again.
        wait_for(lambda: try_ok(lambda: echo_ok(t.port, timeout=3)), 40,
                 interval=0.3, what="TCP port %d serving after the hub "
                 "restart" % t.port)
        wait_for(lambda: udp_ask(c, u.port, b"2", timeout=0.5) == b"re:2",
                 40, interval=0.1, what="UDP port %d serving after the "
                 "hub restart" % u.port)
        assert hub2.proxy(t.identity).get("tcp_port") == t.port
        assert hub2.proxy(u.identity).get("udp_port") == u.port
    finally:
        c.close()


def test_traffic_limit_cuts_tcp_stream(env, tcp_upstream):
    """--limit-traffic 1MB on the hub: an upload into a sink is cut after
    about 1 MB (between the quota less a buffer and 1.5 MB reach the
    upstream), the allocation is marked limited, and new connections are
    closed at once without reaching the upstream."""
    hub = env.hub(stream_ports=range_arg(free_range(4)),
                  args=["--limit-traffic", "1MB"])
    up = tcp_upstream(handler_sink)
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % up.port)
    chunk = os.urandom(16384)
    sent = 0
    how = None
    c = tcp_connect(b.port, timeout=10)
    try:
        deadline = time.monotonic() + scaled(30)
        while sent < 16 * QUOTA and time.monotonic() < deadline:
            try:
                c.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                how = "reset"
                break
            except socket.timeout:
                how = "stalled"
                break
            sent += len(chunk)
        if how is None:
            how, _, _ = close_state(c, timeout=10)
    finally:
        c.close()
    assert how in ("eof", "reset"), (
        "still open after %d bytes sent (quota %d): %s" % (sent, QUOTA, how))
    rec = wait_for(lambda: up.accepted() and up.accepted()[0]["done"].wait(
        scaled(10)) and up.accepted()[0], 15, what="upstream closed")
    got = rec["bytes"]
    print("quota %d: the upstream got %d bytes before the cut (%d sent)"
          % (QUOTA, got, sent))
    assert QUOTA - BUFFER <= got <= 1536000, (
        "upstream got %d bytes before the cut (quota %d)" % (got, QUOTA))

    j = wait_for(lambda: (lambda j: j if j["limited"] else None)(
        hub.proxy(b.identity)), 10, what="allocation marked limited")
    t = j["traffic"]["user"]
    assert t["up"] + t["down"] >= QUOTA - BUFFER, t

    for _ in range(2):
        how, data, took = refusal(b.port, timeout=5)
        assert how in ("eof", "reset") and data == b"", (how, data)
        assert took < scaled(2), took
    up.sync()
    assert len(up.accepted()) == 1


def test_traffic_limit_from_api(env, tcp_upstream):
    """The same through POST /api/proxy/ {"limits": {"traffic": N}} and a
    bridge started with the allocation's credentials, with an echo (both
    directions count)."""
    hub = env.hub(stream_ports=range_arg(free_range(4)))
    alloc = hub.create(traffic=QUOTA)
    up = tcp_upstream(handler_echo)
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % up.port, creds=alloc)
    assert b.identity == alloc["identity"]
    c = tcp_connect(b.port, timeout=10)
    moved = 0
    how = None
    try:
        block = os.urandom(8192)
        for _ in range(4 * QUOTA // len(block)):
            try:
                c.sendall(block)
                got = b""
                while len(got) < len(block):
                    d = c.recv(65536)
                    if not d:
                        how = "eof"
                        break
                    got += d
            except (BrokenPipeError, ConnectionResetError):
                how = "reset"
            moved += 2 * len(block)
            if how:
                break
    finally:
        c.close()
    assert how in ("eof", "reset"), "not cut after %d bytes" % moved
    print("quota %d: cut after %d bytes moved (echo, both directions)"
          % (QUOTA, moved))
    assert QUOTA - BUFFER <= moved <= 1536000, (moved, QUOTA)
    wait_for(lambda: hub.proxy(b.identity)["limited"], 10,
             what="allocation marked limited")
    how, data, took = refusal(b.port, timeout=5)
    assert how in ("eof", "reset") and data == b"", (how, data)


def _listeners(port):
    """The local addresses ('127.0.0.1', '0.0.0.0', ...) bound to port:
    TCP listeners and UDP sockets, from /proc/net."""
    out = {"tcp": set(), "udp": set()}
    for kind, state in (("tcp", "0A"), ("udp", None)):
        with open("/proc/net/" + kind) as f:
            next(f)
            for line in f:
                parts = line.split()
                addr, p = parts[1].split(":")
                if int(p, 16) != port or (state and parts[3] != state):
                    continue
                out[kind].add(socket.inet_ntoa(
                    int(addr, 16).to_bytes(4, "little")))
    return out


def test_stream_ports_bind_the_public_listeners_ip(env, tcp_upstream,
                                                   udp_upstream):
    """With --http 127.0.0.1:P the stream ports listen on 127.0.0.1 only,
    not on every address."""
    hub = env.hub(stream_ports=range_arg(free_range(4)))
    t = stream_node(env, hub, "tcp://127.0.0.1:%d"
                    % tcp_upstream(handler_echo).port)
    u = stream_node(env, hub, "udp://127.0.0.1:%d"
                    % udp_upstream().port)
    assert _listeners(t.port)["tcp"] == {"127.0.0.1"}, _listeners(t.port)
    assert _listeners(u.port)["udp"] == {"127.0.0.1"}, _listeners(u.port)


def test_tls_only_hub_binds_the_https_ip(env, tcp_upstream):
    """A hub with only --https: its stream ports listen on that IP, and a
    bridge over wss:// gets and serves one."""
    hub = env.hub(stream_ports=range_arg(free_range(4)), http=False)
    up = tcp_upstream(handler_echo)
    node = env.node(hub, "tcp://127.0.0.1:%d" % up.port, hub_url=hub.url,
                    hub_ca=hub.ca, wait=False)
    from streams_support import StreamBridge, wait_bridge_line
    b = StreamBridge(node, wait_bridge_line(node))
    assert _listeners(b.port)["tcp"] == {"127.0.0.1"}, _listeners(b.port)
    assert echo_ok(b.port)


def test_silently_dead_bridge_closes_users_within_dead_ms(env,
                                                          tcp_upstream):
    """The bridge's path to the hub goes silent (a NAT losing its state,
    a host losing power: no FIN, no reset). The hub declares the bridge
    dead after --dead-ms and its users are closed then, not left on a
    stream that can never move again; the node, back on a working path,
    serves the same port."""
    from types import SimpleNamespace
    from tunnel_x_support import FreezeProxy
    keepalive = ["--ping-ms", "200", "--dead-ms", "1000"]
    dead_s = 1.0
    hub = env.hub(stream_ports=range_arg(free_range(4)), args=keepalive)
    proxy = FreezeProxy(hub.port)
    env.others.append(proxy)
    up = tcp_upstream(handler_echo)
    via = SimpleNamespace(url=proxy.url)
    node = env.node(via, "tcp://127.0.0.1:%d" % up.port, args=keepalive,
                    wait=False)
    from streams_support import StreamBridge, wait_bridge_line
    b = StreamBridge(node, wait_bridge_line(node))
    user = tcp_connect(b.port, timeout=10)
    try:
        user.sendall(b"before")
        assert user.recv(100) == b"before"
        proxy.freeze()
        t0 = time.monotonic()
        wait_for(lambda: hub.proxy(b.identity)["bridges"] == 0,
                 dead_s + 5, interval=0.05,
                 what="the hub declaring the bridge dead")
        seen_dead = time.monotonic() - t0
        how, data, took = close_state(user, timeout=dead_s + scaled(10))
        took += seen_dead
        assert how in ("eof", "reset"), (
            "user still open %.1fs after the bridge's path froze, %.1fs "
            "after the hub declared the bridge dead (--dead-ms 1000)"
            % (took, took - seen_dead))
        assert took <= dead_s + scaled(2), took
    finally:
        user.close()
    # The node notices too (its own --dead-ms), dials again through the
    # proxy (new connections pass) and gets the same port back.
    wait_for(lambda: try_ok(lambda: echo_ok(b.port, b"after", timeout=3)),
             30, interval=0.3, what="the port serving after the node "
             "reconnected")
    assert hub.proxy(b.identity).get("tcp_port") == b.port
