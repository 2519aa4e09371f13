"""Slow bodies, silent upstreams and connection caps on the hub (issue 8,
item 4), through a real hub, a real bridge node and raw users:

- 20 POSTs announcing 100,000,000 bytes and sending one: before the fix
  they held 20 user connections, 20 data connections and 20 upstream
  sockets for ever. Now the client timeout answers each `408` and frees
  the hub's descriptors and the upstream's sockets;
- a body that trickles in (progress) outlives the timeout;
- an upstream that never answers: `504 Proxy not connected` once the
  server timeout passes with nothing sent; one that stops mid-response:
  the user connection is closed (the body is short, never complete);
- an upgraded (101) pair idle both ways is closed after the tunnel
  timeout;
- caps, each with its exact answer while another user is served: user
  connections per source address (`429 Too Many Requests`), user
  connections in all (`503 Service Unavailable`), concurrent requests per
  identity (`503 Service Unavailable`), data connections per identity
  (`429 Too Many Requests` to the bridge); each burst of refusals is
  logged once;
- the defaults, from `--help` and the hub's start line.

Timeouts are given small through the hub's flags (scaled) so the tests
stay short; every wait is bounded and waits on a condition.
"""

import os
import re
import socket
import threading
import time

import pytest

from helpers import TcpUpstream, scaled, wait_for
from tunnel_x_support import (TunnelEnv, data_conn, http_get,
                              new_fingerprint, read_head, read_response)

CLIENT_MS = int(scaled(1.5) * 1000)
SERVER_MS = int(scaled(1.5) * 1000)
TUNNEL_MS = int(scaled(1.5) * 1000)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def env(tmp_path):
    e = TunnelEnv(tmp_path)
    ups = []
    e.upstreams = ups
    yield e
    for u in ups:
        u.close()
    problems = e.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def upstream(env, handler):
    u = TcpUpstream(handler)
    env.upstreams.append(u)
    return u


def read_head_bytes(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        b = conn.recv(65536)
        if not b:
            return None
        data += b
    return data


def handler_swallow(conn, rec):
    """Reads everything until the other side closes; never answers."""
    conn.settimeout(None)
    while conn.recv(65536):
        pass


def handler_ok(conn, rec):
    """Answers 200 "ok" to each request without a body, keep-alive."""
    conn.settimeout(None)
    while read_head_bytes(conn) is not None:
        conn.sendall(OK)


def open_upstream_sockets(u):
    return sum(1 for r in u.accepted() if not r["done"].is_set())


def hub_fds(hub):
    return len(os.listdir("/proc/%d/fd" % hub.pid))


def user(hub, source=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(10))
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", hub.port))
    return s


def get(hub, host, source=None):
    s = user(hub, source)
    try:
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
        return read_response(s)
    finally:
        s.close()


def eof_within(sock, seconds, deadline=None):
    """Reads until EOF or reset within seconds (or by deadline, a
    time.monotonic() value); returns all it got, or None if the
    connection was still open then."""
    if deadline is None:
        deadline = time.monotonic() + scaled(seconds)
    got = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            b = sock.recv(65536)
            if not b:
                return got
            got += b
    except ConnectionResetError:
        return got
    except socket.timeout:
        return None


def log_count(hub, pattern):
    return len(re.findall(pattern, hub.proc.stderr()))


# --------------------------------------------------------- slow bodies

def test_slow_post_bodies_time_out(env):
    """The attack of issue 8 item 4: 20 POSTs with Content-Length
    100000000 and one body byte. Before the fix the hub held them (and
    their data connections and upstream sockets) for ever; now each gets
    `408 Request Timeout` after the client timeout and everything is
    freed, while another user is served throughout."""
    hub = env.hub(args=["--client-timeout-ms", str(CLIENT_MS)])
    swallow = upstream(env, handler_swallow)
    node = env.node(hub, "http://127.0.0.1:%d" % swallow.port)
    ok = upstream(env, handler_ok)
    node2 = env.node(hub, "http://127.0.0.1:%d" % ok.port, name="node-ok")
    host = hub.host(node.identity)
    base_fds = hub_fds(hub)

    attackers = []
    try:
        for _ in range(20):
            s = user(hub)
            s.sendall(("POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: "
                       "100000000\r\n\r\nA" % host).encode())
            attackers.append(s)
        wait_for(lambda: open_upstream_sockets(swallow) >= 20, 20,
                 what="20 upstream sockets held by the slow POSTs")
        held_fds = hub_fds(hub)
        # 20 user and 20 data connections at least; with multiplexing
        # (protocol v2) the data connections are streams of one, no
        # descriptor each.
        muxed = hub.proxy(node.identity).get("mux", 0) > 0
        assert held_fds >= base_fds + (18 if muxed else 36), (base_fds,
                                                              held_fds)
        st, _, body = get(hub, hub.host(node2.identity))
        assert (st, body) == (200, b"ok")

        # The fix: freed within the timeout (plus the sweep and slack).
        deadline = time.monotonic() + scaled(CLIENT_MS / 1000.0 * 3 + 5)
        answers = [eof_within(s, 0, deadline) for s in attackers]
        held = sum(1 for a in answers if a is None)
        assert held == 0, (
            "%d of 20 slow POSTs still held after %d ms; upstream sockets "
            "open %d, hub descriptors %d (%d before the attack)"
            % (held, CLIENT_MS * 3, open_upstream_sockets(swallow),
               hub_fds(hub), base_fds))
        for a in answers:
            assert a.startswith(b"HTTP/1.1 408 "), a[:200]
            assert a.endswith(b"Request Timeout"), a[-200:]
        wait_for(lambda: open_upstream_sockets(swallow) == 0, 10,
                 what="the upstream's sockets closed")
        wait_for(lambda: hub_fds(hub) <= base_fds + 2, 10,
                 what="the hub's descriptors back to %d" % base_fds)
        assert log_count(hub, r"no progress for \d+ ms while reading the "
                              r"request body, answering 408") == 20
        st, _, body = get(hub, hub.host(node2.identity))
        assert (st, body) == (200, b"ok")
    finally:
        for s in attackers:
            s.close()


def test_trickling_body_outlives_the_timeout(env):
    """Progress resets the idle timer: a body sent a byte at a time, each
    within a quarter of the client timeout, over twice the timeout, is
    relayed whole."""
    got = {}

    def handler(conn, rec):
        conn.settimeout(scaled(30))
        data = read_head_bytes(conn)
        head, _, body = data.partition(b"\r\n\r\n")
        n = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        while len(body) < n:
            b = conn.recv(65536)
            if not b:
                return
            body += b
        got["body"] = body
        conn.sendall(OK)

    hub = env.hub(args=["--client-timeout-ms", str(CLIENT_MS)])
    u = upstream(env, handler)
    node = env.node(hub, "http://127.0.0.1:%d" % u.port)
    n = 8
    s = user(hub)
    try:
        s.sendall(("POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                   "\r\n" % (hub.host(node.identity), n)).encode())
        tick = threading.Event()
        for i in range(n):
            tick.wait(CLIENT_MS / 1000.0 / 4)  # pacing, not a wait on state
            s.sendall(b"%d" % i)
        st, _, body = read_response(s)
        assert (st, body) == (200, b"ok")
        assert got["body"] == b"01234567"
    finally:
        s.close()


# ------------------------------------------------------ silent upstreams

def test_upstream_never_answers_gets_504(env):
    """An upstream that reads the request and never answers: today the
    user waited for ever; now `504 Proxy not connected` after the server
    timeout, and the upstream's socket is closed."""
    hub = env.hub(args=["--server-timeout-ms", str(SERVER_MS)])
    u = upstream(env, handler_swallow)
    node = env.node(hub, "http://127.0.0.1:%d" % u.port)
    s = user(hub)
    try:
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n"
                   % hub.host(node.identity)).encode())
        got = eof_within(s, SERVER_MS / 1000.0 * 3 + 5)
        assert got is not None, "no answer after the server timeout"
        assert got.startswith(b"HTTP/1.1 504 "), got[:200]
        assert got.endswith(b"Proxy not connected"), got
        wait_for(lambda: open_upstream_sockets(u) == 0, 10,
                 what="the upstream's socket closed")
        assert log_count(hub, r"no progress for \d+ ms while waiting for "
                              r"the response, answering 504") == 1
    finally:
        s.close()


def test_upstream_stalls_mid_response_is_closed(env):
    """Response bytes went out already: no 504 can follow, the user
    connection is closed, so a client sees a short body."""
    def handler(conn, rec):
        conn.settimeout(None)
        read_head_bytes(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        while conn.recv(65536):
            pass

    hub = env.hub(args=["--server-timeout-ms", str(SERVER_MS)])
    u = upstream(env, handler)
    node = env.node(hub, "http://127.0.0.1:%d" % u.port)
    s = user(hub)
    try:
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n"
                   % hub.host(node.identity)).encode())
        got = eof_within(s, SERVER_MS / 1000.0 * 3 + 5)
        assert got is not None, "still open after the server timeout"
        assert got.startswith(b"HTTP/1.1 200 OK"), got
        assert got.endswith(b"\r\n\r\nabc"), got
        wait_for(lambda: open_upstream_sockets(u) == 0, 10,
                 what="the upstream's socket closed")
    finally:
        s.close()


def test_idle_upgraded_pair_closed_after_tunnel_timeout(env):
    """After a 101 the pair is an opaque relay: bytes both ways keep it,
    silence for the tunnel timeout ends it."""
    def handler(conn, rec):
        conn.settimeout(None)
        read_head_bytes(conn)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        while True:
            b = conn.recv(65536)
            if not b:
                return
            conn.sendall(b)

    hub = env.hub(args=["--tunnel-timeout-ms", str(TUNNEL_MS),
                        "--client-timeout-ms", "600000",
                        "--server-timeout-ms", "600000"])
    u = upstream(env, handler)
    node = env.node(hub, "http://127.0.0.1:%d" % u.port)
    s = user(hub)
    try:
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: x\r\n"
                   "Connection: Upgrade\r\n\r\n"
                   % hub.host(node.identity)).encode())
        st, _, _ = read_head(s)
        assert st == 101
        # Echoes within the timeout keep it open, past the timeout.
        tick = threading.Event()
        for i in range(6):
            tick.wait(TUNNEL_MS / 1000.0 / 3)  # pacing
            s.sendall(b"ping%d" % i)
            want = b"ping%d" % i
            s.settimeout(scaled(10))
            echo = b""
            while len(echo) < len(want):
                b = s.recv(64)
                assert b, "closed while bytes flowed"
                echo += b
            assert echo == want
        got = eof_within(s, TUNNEL_MS / 1000.0 * 3 + 5)
        assert got == b"", got
        wait_for(lambda: open_upstream_sockets(u) == 0, 10,
                 what="the upstream's socket closed")
        assert log_count(hub, r"no progress for \d+ ms while relaying "
                              r"after 101, closing") == 1
    finally:
        s.close()


# --------------------------------------------------------------- caps

def keepalive_users(hub, host, n, source=None):
    """n user connections that each had one answer and stay open."""
    out = []
    for _ in range(n):
        s = user(hub, source)
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
        st, _, body = read_response(s)
        assert (st, body) == (200, b"ok")
        out.append(s)
    return out


def test_cap_per_source_address(env):
    """Three user connections from 127.0.0.1 at --max-conns-per-ip 3: the
    fourth and fifth get `429 Too Many Requests` (one log line for the
    burst); a user from 127.0.0.2 and the bridge's own connections from
    127.0.0.1 go on; a freed place serves 127.0.0.1 again."""
    hub = env.hub(args=["--max-conns-per-ip", "3"])
    ok = upstream(env, handler_ok)
    node = env.node(hub, "http://127.0.0.1:%d" % ok.port, pool=0)
    host = hub.host(node.identity)
    held = keepalive_users(hub, host, 3)
    try:
        for _ in range(2):
            st, head, body = get(hub, host)
            assert (st, body) == (429, b"Too Many Requests"), (st, body)
        # Another address is served: the bridge dials a data connection
        # from 127.0.0.1 (pool 0) and is not refused.
        st, _, body = get(hub, host, source="127.0.0.2")
        assert (st, body) == (200, b"ok")
        assert log_count(hub, r"over 3 user connections from 127\.0\.0\.1"
                              r", answering 429") == 1
        held.pop().close()
        wait_for(lambda: hub.metrics()["sluice_hub_user_connections"] <= 2,
                 10, what="a place freed")
        st, _, body = get(hub, host)
        assert (st, body) == (200, b"ok")
    finally:
        for s in held:
            s.close()


def test_cap_user_connections_in_all(env):
    """--max-user-conns 3, three held from three addresses: the next
    gets `503 Service Unavailable`, while a held connection's next
    request is served."""
    hub = env.hub(args=["--max-user-conns", "3"])
    ok = upstream(env, handler_ok)
    node = env.node(hub, "http://127.0.0.1:%d" % ok.port)
    host = hub.host(node.identity)
    held = []
    try:
        for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            held += keepalive_users(hub, host, 1, source=src)
        st, _, body = get(hub, host, source="127.0.0.5")
        assert (st, body) == (503, b"Service Unavailable"), (st, body)
        s = held[0]
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
        st, _, body = read_response(s)
        assert (st, body) == (200, b"ok")
        assert log_count(hub, r"over 3 user connections in all, "
                              r"answering 503") == 1
    finally:
        for s in held:
            s.close()


def test_cap_pairs_per_identity(env):
    """--max-pairs 2: two requests wait on an upstream that holds them;
    a third to the same identity gets `503 Service Unavailable` at once,
    a request to another identity is served; once the two are answered
    the identity serves again."""
    release = threading.Event()

    def handler(conn, rec):
        conn.settimeout(None)
        while True:
            head = read_head_bytes(conn)
            if head is None:
                return
            if b"GET /hold " in head:
                release.wait(scaled(60))
            conn.sendall(OK)

    hub = env.hub(args=["--max-pairs", "2"])
    u = upstream(env, handler)
    node = env.node(hub, "http://127.0.0.1:%d" % u.port)
    ok = upstream(env, handler_ok)
    node2 = env.node(hub, "http://127.0.0.1:%d" % ok.port, name="node-ok")
    host = hub.host(node.identity)
    waiting = []
    try:
        for _ in range(2):
            s = user(hub)
            s.sendall(("GET /hold HTTP/1.1\r\nHost: %s\r\n\r\n"
                       % host).encode())
            waiting.append(s)
        wait_for(lambda: sum(1 for r in u.accepted()) >= 2, 20,
                 what="two held requests at the upstream")
        st, _, body = get(hub, host)
        assert (st, body) == (503, b"Service Unavailable"), (st, body)
        st, _, body = get(hub, hub.host(node2.identity))
        assert (st, body) == (200, b"ok")
        assert log_count(hub, r"over 2 requests for %s, answering 503"
                         % node.identity) == 1
        release.set()
        for s in waiting:
            st, _, body = read_response(s)
            assert (st, body) == (200, b"ok")
            s.close()
        waiting = []
        st, _, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)
                               (get(hub, host)), 10,
                               what="the identity serving again")
        assert body == b"ok"
    finally:
        release.set()
        for s in waiting:
            s.close()


def test_cap_data_connections_per_identity(env):
    """--max-data-conns 2: two idle data connections of one identity are
    held, the third gets `429 Too Many Requests`; a user of another
    identity is served meanwhile."""
    hub = env.hub(args=["--max-data-conns", "2"])
    ok = upstream(env, handler_ok)
    node = env.node(hub, "http://127.0.0.1:%d" % ok.port)
    creds = hub.create()
    ident, name, pw = creds["identity"], creds["username"], creds["password"]

    def taken_in(fp):
        # A second connection with the same fingerprint gets 409 once the
        # first is in the pool.
        p = data_conn(hub, name, pw, "%s|%s" % (ident, fp))
        try:
            st, _, _ = read_head(p, timeout=20)
        finally:
            p.close()
        return st

    pool = []
    try:
        for _ in range(2):
            fp = new_fingerprint()
            pool.append(data_conn(hub, name, pw, "%s|%s" % (ident, fp)))
            assert taken_in(fp) in (409, 429)
        third = data_conn(hub, name, pw, "%s|%s" % (ident,
                                                   new_fingerprint()))
        pool.append(third)
        st, head, rest = read_head(third, timeout=20)
        assert st == 429, (st, head)
        third.settimeout(scaled(10))
        body = rest
        while len(body) < len(b"Too Many Requests"):
            b = third.recv(100)
            if not b:
                break
            body += b
        assert body == b"Too Many Requests", body
        assert log_count(hub, r"over 2 data connections for %s, "
                              r"answering 429" % ident) >= 1
        st, _, body = get(hub, hub.host(node.identity))
        assert (st, body) == (200, b"ok")
    finally:
        for s in pool:
            s.close()


# ------------------------------------------------------------ defaults

def test_defaults_in_help_and_start_line(env):
    """The defaults are what docs/hub.md says: in --help, and in the line
    the hub logs at start (the global cap is at most half the process's
    descriptors, as HAProxy derives maxconn from them)."""
    import subprocess
    from helpers import sluice_bin
    out = subprocess.run([sluice_bin(), "boot", "up", "--proxy", "--help"],
                         capture_output=True, text=True,
                         timeout=scaled(20)).stdout
    for flag, default in (("--client-timeout-ms", "60000"),
                          ("--server-timeout-ms", "60000"),
                          ("--tunnel-timeout-ms", "3600000"),
                          ("--max-user-conns", "10000"),
                          ("--max-conns-per-ip", "256"),
                          ("--max-pairs", "1024"),
                          ("--max-data-conns", "max-pairs + 16")):
        m = re.search(re.escape(flag) + r"[^\n]*\n?[^\n]*default "
                      + re.escape(default), out)
        assert m, (flag, default, out)
    hub = env.hub()
    with open("/proc/%d/limits" % hub.pid) as f:
        soft = int(re.search(r"Max open files\s+(\d+)", f.read()).group(1))
    users = min(10000, max(1, (soft - 64) // 2))
    line = wait_for(lambda: re.search(r"hub: timeouts client \S+", 
                                      hub.proc.stderr()), 10)
    text = hub.proc.stderr()
    assert ("hub: timeouts client 60000 ms, server 60000 ms, tunnel "
            "3600000 ms; caps %d user connections, 256 per address, 1024 "
            "requests and 1040 data connections per identity" % users
            ) in text, text
    assert line
