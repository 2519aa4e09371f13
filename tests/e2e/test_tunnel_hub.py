"""The hub alone, driven by Python peers that speak the tunnel protocol
(docs/protocol.md): routing errors, allocation and welcome, pairing
through the pool and through `open`, the pairing window, credentials and
their rate limit, the hijack header, slowloris, keep-alive across
identities, framed data connections and the traffic limit."""

import asyncio
import concurrent.futures
import datetime
import json
import re
import select
import socket
import time

import pytest

from helpers import scaled, wait_for
from tunnel_x_support import (PyBridge, basic, control_attempt, data_conn,
                              http_get, new_fingerprint, read_head,
                              read_response, upgrade_request)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(60)))


def user_get(hub, identity, path="/", **kw):
    return http_get(hub.port, hub.host(identity), path, **kw)


def wait_pooled(hub, identity, n=1, timeout=15):
    """Waits until n data connections of an allocation sit idle in the
    hub's pool (the API's `pool`), so a user request pairs at once.
    Returns the time it showed."""
    wait_for(lambda: hub.proxy(identity).get("pool", 0) >= n, timeout,
             what="%d pool connection(s) of %s registered" % (n, identity))
    return time.monotonic()


def answer_at(sock, timeout):
    """Waits (scaled) until sock has something to read (an answer, EOF or
    a reset) and returns the time, or fails."""
    r, _, _ = select.select([sock], [], [], scaled(timeout))
    assert r, "no answer within %.1fs" % scaled(timeout)
    return time.monotonic()


def closed(sock, timeout=10):
    """True if the peer closes sock (EOF or reset) within timeout (scaled),
    whatever it sent before; a timeout is False."""
    sock.settimeout(scaled(timeout))
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        return False
    finally:
        sock.close()
    return True


def nothing_sent(sock):
    """True if the peer has sent nothing (no byte, no EOF) so far."""
    r, _, _ = select.select([sock], [], [], 0)
    return not r


def test_unknown_identity_404(hubs):
    hub = hubs()
    st, _, body = user_get(hub, "zz0000000000")
    assert (st, body) == (404, b"Proxy not available")
    # Not an identity label at all under the domain.
    st, _, body = http_get(hub.port, "www.%s:%d" % (hub.domain, hub.port))
    assert (st, body) == (404, b"Proxy not available")
    # The hub itself: only the bridge endpoints.
    st, _, body = http_get(hub.port, "127.0.0.1:%d" % hub.port, "/x")
    assert st == 404
    assert json.loads(body) == {"error": "Not found", "code": 404}


def test_502_before_bridge_then_allocation_and_welcome(hubs):
    hub = hubs()
    creds = hub.create()
    st, _, body = user_get(hub, creds["identity"])
    assert (st, body) == (502, b"Proxy not connected")

    async def main():
        b = PyBridge(hub.port)               # no credentials: allocate
        w = await b.connect()
        assert w["identity"] and len(w["identity"]) == 12
        assert w["url"] == "http://%s.localhost:%d/" % (w["identity"],
                                                        hub.port)
        assert len(w["username"]) == 6 and len(w["password"]) == 24
        assert w["pairing_window"] == 8 and w["ping_interval"] == 15
        await b.close()
        # The same credentials authenticate again; no password this time.
        b2 = PyBridge(hub.port, w["username"], w["password"])
        w2 = await b2.connect()
        assert w2["identity"] == w["identity"]
        assert "password" not in w2
        await b2.close()
    run(main())


def test_request_paired_through_pool(hubs):
    hub = hubs()
    creds = hub.create()
    ident = creds["identity"]
    # The pool connection comes first and is seen in the pool before any
    # control connection or user: the request must take it, no `open`.
    d = data_conn(hub, creds["username"], creds["password"],
                  "%s|%s" % (ident, new_fingerprint()))
    wait_pooled(hub, ident)
    assert nothing_sent(d), "a pool connection is answered only when paired"

    async def main():
        b = PyBridge(hub.port, creds["username"], creds["password"],
                     answer=False)
        await b.connect()
        serving = asyncio.ensure_future(b.serve())   # records every open
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            fut = loop.run_in_executor(
                ex, lambda: user_get(hub, ident, "/hello",
                                     headers={"X-Forwarded-For": "1.2.3.4"}))
            st, head, rest = await loop.run_in_executor(
                None, lambda: read_head(d))
            assert st == 101
            assert "sluice-framing: raw" in head.lower()
            req = rest
            while b"\r\n\r\n" not in req:
                more = await loop.run_in_executor(None, d.recv, 65536)
                assert more, "EOF before the request head: %r" % req
                req += more
            text = req.decode()
            assert text.startswith("GET /hello HTTP/1.1\r\n")
            assert "X-Forwarded-For: 1.2.3.4, 127.0.0.1\r\n" in text
            assert "X-Forwarded-Proto: http\r\n" in text
            assert "X-Forwarded-Host: %s\r\n" % hub.host(ident) in text
            d.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npool")
            st, _, body = await fut
        assert (st, body) == (200, b"pool")
        assert b.fingerprints == []            # no open was needed
        d.close()
        await b.close()
        await serving
    run(main())


def test_request_paired_through_open(hubs):
    hub = hubs()
    creds = hub.create()

    async def main():
        b = PyBridge(hub.port, creds["username"], creds["password"],
                     body=b"hello from the bridge")
        await b.connect()
        task = asyncio.ensure_future(b.serve())
        loop = asyncio.get_running_loop()
        for i in range(3):
            st, _, body = await loop.run_in_executor(
                None, lambda: user_get(hub, creds["identity"]))
            assert (st, body) == (200, b"hello from the bridge")
        assert len(b.fingerprints) == 3 and len(set(b.fingerprints)) == 3
        # An answer to an open whose user has been served: refused.
        s = data_conn(hub, creds["username"], creds["password"],
                      "%s|%s" % (creds["identity"], b.fingerprints[0]))
        st, _, _ = await loop.run_in_executor(None, lambda: read_head(s))
        assert st == 409
        s.close()
        await b.close()
        await task
    run(main())


def test_pairing_window_504(hubs):
    hub = hubs("--pairing-window-ms", "300")
    creds = hub.create()

    async def main():
        b = PyBridge(hub.port, creds["username"], creds["password"],
                     answer=False)
        await b.connect()
        task = asyncio.ensure_future(b.serve())
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        st, _, body = await loop.run_in_executor(
            None, lambda: user_get(hub, creds["identity"]))
        took = time.monotonic() - t0
        assert (st, body) == (504, b"Proxy not connected")
        # --pairing-window-ms 300: not before, and not much after
        assert 0.3 - 0.02 <= took < 0.3 + scaled(1.5), took
        assert len(b.fingerprints) == 1
        await b.close()
        await task
    run(main())


def test_wrong_password_401_then_rate_limited(hubs):
    hub = hubs()
    creds = hub.create()
    for _ in range(5):
        assert control_attempt(hub, creds["username"], "x" * 24) == 401
    # Blocked for a minute now, even with the right password.
    assert control_attempt(hub, creds["username"], creds["password"]) == 429
    # Unknown username: 401 too (from another address, not blocked).
    assert control_attempt(hub, "nobody", "x", source="127.0.0.2") == 401


def test_gateway_token(hubs):
    hub = hubs("--token", "s3cret")
    s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
    s.sendall(upgrade_request("/_sluice/v1/control", "h"))
    st, _, body = read_head(s)
    assert st == 401
    s.close()
    s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
    s.sendall(upgrade_request("/_sluice/v1/control?token=s3cret", "h"))
    st, head, _ = read_head(s, timeout=30)
    assert st == 101 and "sluice-identity:" in head.lower()
    s.close()


def test_hijack_malformed_400_and_foreign_identity_403(hubs):
    hub = hubs()
    a = hub.create()
    b = hub.create()
    for bad in ["", "nonsense", a["identity"] + "|not-a-uuid",
                a["identity"] + new_fingerprint(),
                a["identity"].upper() + "|" + new_fingerprint()]:
        s = data_conn(hub, a["username"], a["password"], bad)
        st, _, _ = read_head(s)
        assert st == 400, bad
        s.close()
    s = data_conn(hub, a["username"], a["password"],
                  "%s|%s" % (b["identity"], new_fingerprint()))
    st, _, _ = read_head(s, timeout=30)
    assert st == 403
    s.close()


def test_slowloris_head_cut_off(hubs):
    """--head-timeout-ms 500: a head still trickling in after 500 ms gets
    408, not sooner (the timer counts from the connection, not from the
    last byte) and not much later; a head over 64 KiB gets 431 at once."""
    hub = hubs("--head-timeout-ms", "500")
    s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
    t0 = time.monotonic()          # the hub accepts, and arms it, after
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    answered = None
    # A header line every 20 ms is the attack itself (the wait is the
    # select on the socket); bounded to well past the head timeout.
    deadline = t0 + 0.5 + scaled(3)
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.02)
        if r:
            answered = time.monotonic() - t0
            break
        try:
            s.sendall(b"X-Slow: 1\r\n")
        except OSError:
            answered = time.monotonic() - t0
            break
    assert answered is not None, "slow head never cut off"
    assert 0.5 - 0.02 <= answered < 0.5 + scaled(1.5), answered
    st, head, _ = read_head(s)
    assert st == 408, head
    assert closed(s)
    # A head over 64 KiB: 431, long before the head timeout.
    s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
    t0 = time.monotonic()
    try:
        s.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024))
    except OSError:
        pass
    st, head, _ = read_head(s)
    took = time.monotonic() - t0
    assert st == 431, head
    assert took < scaled(2), took
    assert closed(s)
    assert hub.proc.stderr().count("answering 408") == 1
    assert hub.proc.stderr().count("answering 431") == 1


def test_malformed_heads_400_with_reason(hubs):
    """Each malformed head gets a 400 that says why, one log line each,
    and closes only its own connection."""
    hub = hubs()
    creds = hub.create()
    host = hub.host(creds["identity"]).encode()
    cases = [
        (b"GARBAGE\r\n\r\n", b"invalid"),
        (b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nHost: " + host +
         b"\r\n\r\n", b"more than one Host header"),
        (b"POST / HTTP/1.1\r\nHost: " + host +
         b"\r\nContent-Length: abc\r\n\r\n", b"content-length"),
        (b"POST / HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 3"
         b"\r\nTransfer-Encoding: chunked\r\n\r\n", b"content-length"),
    ]
    for raw, why in cases:
        s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
        try:
            s.sendall(raw)
            st, _, body = read_response(s)
        finally:
            s.close()
        assert st == 400, (raw, body)
        assert body.startswith(b"Bad Request: "), body
        assert why.lower() in body.lower(), (raw, body)
    log = hub.proc.stderr()
    assert log.count("malformed request head") == len(cases), log
    st, _, body = user_get(hub, creds["identity"])
    assert st == 502 and b"Proxy not connected" in body


def test_keepalive_two_identities(hubs):
    hub = hubs()
    c1, c2 = hub.create(), hub.create()

    async def main():
        b1 = PyBridge(hub.port, c1["username"], c1["password"], body=b"one")
        b2 = PyBridge(hub.port, c2["username"], c2["password"], body=b"two")
        await b1.connect()
        await b2.connect()
        tasks = [asyncio.ensure_future(b1.serve()),
                 asyncio.ensure_future(b2.serve())]
        loop = asyncio.get_running_loop()

        def user():
            s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
            got = []
            for c in (c1, c2, c2, c1):
                s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n"
                          % hub.host(c["identity"]).encode())
                st, _, body = read_response(s)
                got.append((st, body))
            s.close()
            return got
        got = await loop.run_in_executor(None, user)
        assert got == [(200, b"one"), (200, b"two"), (200, b"two"),
                       (200, b"one")]
        await b1.close()
        await b2.close()
        for t in tasks:
            await t
    run(main())


def test_framed_data_connection(hubs):
    hub = hubs()
    creds = hub.create()
    ident = creds["identity"]

    async def main():
        import websockets
        loop = asyncio.get_running_loop()
        fut = None

        async def bridge_side():
            ws = await websockets.connect(
                "ws://127.0.0.1:%d/_sluice/v1/data" % hub.port,
                extra_headers={"Authorization": basic(creds["username"],
                                                      creds["password"]),
                               "Sluice-Hijack": "%s|%s"
                               % (ident, new_fingerprint())},
                ping_interval=None, open_timeout=scaled(30))
            req = b""
            while b"\r\n\r\n" not in req:
                req += await ws.recv()
            assert req.startswith(b"GET /framed HTTP/1.1\r\n")
            await ws.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
            await ws.send(b"framed")
            return ws
        bt = asyncio.ensure_future(bridge_side())
        # The pool connection must be waiting before the user comes (no
        # control connection: without it the user would get a 502).
        await loop.run_in_executor(None, wait_pooled, hub, ident)
        fut = loop.run_in_executor(None, lambda: user_get(hub, ident,
                                                          "/framed"))
        ws = await bt
        st, _, body = await fut
        assert (st, body) == (200, b"framed")
        # The user has gone: the hub ends the data connection with a close
        # frame (or answers ours, whichever comes first).
        try:
            await asyncio.wait_for(ws.recv(), scaled(10))
        except websockets.ConnectionClosedOK:
            pass
        await ws.close()
        assert ws.close_code == 1000
    run(main())


def test_traffic_limit(hubs):
    hub = hubs()
    creds = hub.create(traffic=20000)

    async def main():
        b = PyBridge(hub.port, creds["username"], creds["password"],
                     body=b"x" * 4000)
        await b.connect()
        task = asyncio.ensure_future(b.serve())
        loop = asyncio.get_running_loop()
        codes = []
        for _ in range(10):
            st, _, _ = await loop.run_in_executor(
                None, lambda: user_get(hub, creds["identity"]))
            codes.append(st)
            if st == 429:
                break
        assert codes[-1] == 429 and set(codes[:-1]) == {200}, codes
        # 20000 bytes at about 4 KiB a response: the limit bites after a
        # few requests, not at once and not never
        assert 3 <= len(codes) <= 7, codes
        st, _, body = await loop.run_in_executor(
            None, lambda: user_get(hub, creds["identity"]))
        assert (st, body) == (429, b"Traffic limit exceeded")
        await b.close()
        await task
    run(main())
    # The flag is persisted and shown by the API.
    wait_for(lambda: hub.proxy(creds["identity"])["limited"], 15,
             what="limited in the API")


def test_newer_control_replaces_oldest_at_bridge_limit(hubs):
    hub = hubs()
    creds = hub.create(bridges=1)

    async def main():
        import websockets
        a = PyBridge(hub.port, creds["username"], creds["password"])
        await a.connect()
        b = PyBridge(hub.port, creds["username"], creds["password"])
        await b.connect()                    # never refused
        msgs = []
        try:
            async for raw in a.ws:
                msgs.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        assert {"type": "error", "message": "Replaced by a newer connection",
                "code": 409} in msgs
        # The newer one serves.
        task = asyncio.ensure_future(b.serve())
        loop = asyncio.get_running_loop()
        st, _, body = await loop.run_in_executor(
            None, lambda: user_get(hub, creds["identity"]))
        assert (st, body) == (200, b"ok")
        await b.close()
        await task
    run(main())


def test_dead_control_connection_closed(hubs):
    hub = hubs("--ping-ms", "100", "--dead-ms", "600")
    creds = hub.create()
    s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
    s.sendall(upgrade_request("/_sluice/v1/control", "h", {
        "Authorization": basic(creds["username"], creds["password"])}))
    st, _, rest = read_head(s, timeout=30)
    assert st == 101
    # Silent from here on: pings arrive, then the hub gives up.
    t0 = time.monotonic()
    got = rest
    s.settimeout(scaled(10))
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            b = b""
        if not b:
            break
        got += b
    took = time.monotonic() - t0
    assert got[:1] == b"\x89"                # a ping frame (FIN, opcode 9)
    # --dead-ms 600 counts from the 101: not before, and not much after
    assert 0.6 - 0.05 <= took < 0.6 + scaled(1.5), took
    s.close()


AGED_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z debug +"
                     r"hub data (\d+) \((\w+)\): pool connection aged "
                     r"out, answering 204$", re.M)


def test_pool_connection_ages_out_and_stats(hubs):
    age = 1.0
    hub = hubs("--pool-age-ms", "%d" % (age * 1000), "--flush-ms", "200")
    creds = hub.create()
    ident = creds["identity"]
    t_sent = time.monotonic()
    d = data_conn(hub, creds["username"], creds["password"],
                  "%s|%s" % (ident, new_fingerprint()))
    t_pooled = wait_pooled(hub, ident)
    t_answer = answer_at(d, age + 5)
    st, head, _ = read_head(d, timeout=10)
    assert st == 204, head
    assert closed(d)
    # Aged out after --pool-age-ms in the pool: not before (it was pooled
    # after t_sent), and not much after it was seen there.
    assert t_answer - t_sent >= age - 0.02, t_answer - t_sent
    assert t_answer - t_pooled < age + scaled(0.5), t_answer - t_pooled
    # It has left the pool: with no bridge at all, a user gets 502.
    st, _, body = user_get(hub, ident)
    assert (st, body) == (502, b"Proxy not connected")

    async def main():
        b = PyBridge(hub.port, creds["username"], creds["password"])
        await b.connect()
        loop = asyncio.get_running_loop()
        serve = asyncio.ensure_future(b.serve())
        st, _, _ = await loop.run_in_executor(
            None, lambda: user_get(hub, ident))
        assert st == 200
        await b.close()
        await serve
    run(main())
    # Counters reach the store (and the API) within a few flushes.
    def counted():
        t = hub.proxy(ident)["traffic"]["user"]
        return t["down"] > 0 and t["up"] > 0
    wait_for(counted, 15, what="user traffic in the API")


def test_node_pool_replaced_at_pool_age(env):
    """A real bridge keeps --pool 1: the hub ages its pool connection out
    every --pool-age-ms, the node replaces it at once, so the hub's
    aged-out lines come one pool age apart (the log's millisecond
    timestamps), each for a new connection. The pool's own test: a hub
    without multiplexing, where a bridge keeps its pool."""
    age = 0.5
    hub = env.hub(args=["--pool-age-ms", "%d" % (age * 1000), "--no-mux"],
                  global_args=["-L", "debug"])
    up = env.hash_upstream("aged")
    node = env.node(hub, up.url, pool=1)

    def aged():
        found = AGED_RE.findall(hub.proc.stderr())
        return found if len(found) >= 4 else None
    found = wait_for(aged, 4 * age + 10, what="four pool connections aged out")
    assert {f[2] for f in found} == {node.identity}, found
    ids = [int(f[1]) for f in found]
    assert len(set(ids)) == len(ids), ids          # each one replaced
    stamps = [datetime.datetime.strptime(f[0], "%Y-%m-%dT%H:%M:%S.%f")
              for f in found]
    for a, b in zip(stamps, stamps[1:]):
        gap = (b - a).total_seconds()
        # the replacement came after the 204, so its age ends one pool age
        # later at the earliest; a node that replaces at once is not late
        assert age - 0.002 <= gap < age + scaled(0.5), (gap, found)
    st, _, body = user_get(hub, node.identity, "/after")
    assert (st, body) == (200, b"aged /after")


@pytest.mark.parametrize("framed", [False, True])
def test_big_body_while_pairing(tmp_path, framed):
    """Regression: body bytes read while a request waits for its data
    connection (no idle pool: every request pairs through `open`) were
    bounded by the head limit, so a large POST was reset."""
    import hashlib
    from tunnel_x_support import TunnelEnv
    env = TunnelEnv(tmp_path)
    try:
        hub = env.hub()
        up = env.hash_upstream("big")
        args = ["--framed"] if framed else []
        node = env.node(hub, up.url, pool=0, args=args)
        for _ in range(3):
            payload = b"%d" % time.monotonic_ns() + bytes(3 << 20)
            st, _, body = http_get(hub.port, hub.host(node.identity), "/p",
                                   method="POST", body=payload, timeout=60)
            assert st == 200, body
            got = json.loads(body)
            assert got["length"] == len(payload)
            assert got["sha256"] == hashlib.sha256(payload).hexdigest()
    finally:
        problems = env.close()
    assert not problems, problems
