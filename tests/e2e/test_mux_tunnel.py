"""Protocol v2 (issue 11): many user connections on one multiplexed data
connection, through the real hub and node.

- 1,000 concurrent user connections over one mux connection, each with a
  different body checked by SHA-256 at the upstream, and the hub's
  descriptors towards the bridge staying O(bridges);
- head-of-line: one stream's upstream stops reading for 10 s while 200
  other streams on the same connection complete;
- half-close after an upgrade both ways, a WebSocket upgrade, and a large
  upload and download, all on streams;
- the per-connection pool stays the fallback: a node with --no-mux on a
  hub with --mux, and a hub with --no-mux, both still serve.
"""

import asyncio
import hashlib
import json
import os
import socket
import time

import pytest

from helpers import scaled, wait_for
from mux_support import AsyncHashUpstream, hub_fds, post_hashed
import test_tunnel_x_edges
import test_tunnel_x_transfer
import tunnel_x_support
from tunnel_x_support import BIG_MB, http_get, read_response


def mux_hub(env, n=1, args=()):
    return env.hub(args=["--mux", str(n), "--max-conns-per-ip", "4000",
                         "--max-pairs", "4000"] + list(args))


def wait_mux(hub, ident, n=1):
    wait_for(lambda: hub.proxy(ident).get("mux", 0) >= n, 15,
             what="%d mux connection(s) of %s at the hub" % (n, ident))


def test_thousand_users_on_one_mux_connection(env):
    up = AsyncHashUpstream()
    env.others.append(up)
    hub = mux_hub(env, 1)
    node = env.node(hub, up.url)
    ident = node.identity
    wait_mux(hub, ident, 1)
    host = hub.host(ident)
    before = hub_fds(hub.pid)
    bodies = [os.urandom(1 + (i * 7919) % 30000) for i in range(1000)]
    peak = []

    async def main():
        async def one(i):
            return await post_hashed(hub.port, host, "/u%d" % i, bodies[i],
                                     timeout=120)

        async def watch():
            while True:
                peak.append(hub_fds(hub.pid))
                await asyncio.sleep(0.05)
        w = asyncio.ensure_future(watch())
        try:
            return await asyncio.gather(*(one(i) for i in range(1000)))
        finally:
            w.cancel()
    answers = asyncio.run(main())
    for i, a in enumerate(answers):
        assert a.get("sha256") == hashlib.sha256(bodies[i]).hexdigest(), \
            (i, a)
        assert a["length"] == len(bodies[i])
        assert a["path"] == "/u%d" % i
    assert up.requests == 1000
    p = hub.proxy(ident)
    assert p["mux"] == 1 and p["pool"] == 0, p
    # Towards the bridge the hub held one mux connection (and the control
    # one) whatever the users: its descriptors grew by the users alone.
    assert max(peak) - before <= 1000 + 20, (before, max(peak))
    err = hub.proc.stderr()
    assert "multiplexed connection 1 of 1" in err
    # Every stream ended: nothing left paired.
    wait_for(lambda: hub.proxy(ident)["pairs"] == 0, 10,
             what="every pair ended")


def test_stalled_stream_stops_only_itself(env):
    stall = 10.0
    up = AsyncHashUpstream(stall=stall)
    env.others.append(up)
    hub = mux_hub(env, 1)
    node = env.node(hub, up.url)
    ident = node.identity
    wait_mux(hub, ident, 1)
    host = hub.host(ident)
    big = os.urandom(16 << 20)  # far past any window: it must wait
    small = [os.urandom(1000 + i * 37) for i in range(200)]

    async def main():
        stalled = asyncio.ensure_future(
            post_hashed(hub.port, host, "/stall", big, timeout=120))
        await asyncio.get_running_loop().run_in_executor(
            None, up.stalled.wait, scaled(10))
        t0 = time.monotonic()
        got = await asyncio.gather(*(post_hashed(hub.port, host,
                                                 "/s%d" % i, small[i])
                                     for i in range(200)))
        took = time.monotonic() - t0
        done_before_unstall = not up.unstalled.is_set()
        return got, took, done_before_unstall, await stalled
    got, took, early, answer = asyncio.run(main())
    for i, a in enumerate(got):
        assert a.get("sha256") == hashlib.sha256(small[i]).hexdigest(), a
    # All 200 went through while the stalled upstream read nothing.
    assert early, "the 200 streams waited for the stalled one (%.1fs)" % took
    assert took < stall
    assert answer["sha256"] == hashlib.sha256(big).hexdigest()
    assert answer["length"] == len(big)


@pytest.mark.parametrize("name", [
    "test_half_close_after_http_request",
    "test_half_close_user_side_after_upgrade",
    "test_half_close_upstream_side_after_upgrade"])
def test_half_close_on_a_stream(env, tcp_upstream, monkeypatch, name):
    """The half-close tests of the per-connection mode, on streams: FIN
    travels as a FIN frame, one direction goes on after the other ended."""
    monkeypatch.setattr(tunnel_x_support, "TUNNEL_MUX", "2")
    getattr(test_tunnel_x_edges, name)(env, tcp_upstream, "raw")
    assert "multiplexed connection 1 of 2" in env.hubs[0].proc.stderr()


def test_websocket_upgrade_on_a_stream(env, monkeypatch):
    """The WebSocket echo test of the per-connection mode, on streams:
    text and binary, 1 MiB messages, several in flight."""
    monkeypatch.setattr(tunnel_x_support, "TUNNEL_MUX", "2")
    test_tunnel_x_transfer.test_websocket_echo(env, "raw")
    assert "multiplexed connection 1 of 2" in env.hubs[0].proc.stderr()


def test_large_upload_and_download_on_a_stream(env):
    up = AsyncHashUpstream()
    env.others.append(up)
    hub = mux_hub(env, 1)
    node = env.node(hub, up.url)
    ident = node.identity
    wait_mux(hub, ident, 1)
    body = os.urandom(BIG_MB << 20)
    t0 = time.monotonic()
    a = asyncio.run(post_hashed(hub.port, hub.host(ident), "/up", body,
                                timeout=300))
    took = time.monotonic() - t0
    assert a["sha256"] == hashlib.sha256(body).hexdigest()
    assert a["length"] == len(body)
    # The window grew past its first 256 KiB for the transfer.
    err = node.proc.stderr() + hub.proc.stderr()
    assert "multiplexed connection" in err
    assert took < scaled(120)


def test_download_through_mux_matches(env):
    web = env.nginx()
    from tunnel_x_support import big_file
    path = os.path.join(web.root, "big.bin")
    big_file(path, BIG_MB)
    with open(path, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    hub = mux_hub(env, 2)
    node = env.node(hub, web.url)
    ident = node.identity
    wait_mux(hub, ident, 2)
    s = socket.create_connection(("127.0.0.1", hub.port), timeout=scaled(60))
    try:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: %s\r\n\r\n"
                  % hub.host(ident).encode())
        st, head, body = read_response(s, timeout=120)
    finally:
        s.close()
    assert st == 200
    assert hashlib.sha256(body).hexdigest() == want


@pytest.mark.parametrize("where", ["node", "hub"])
def test_pool_is_the_fallback(env, where):
    """--no-mux on either side: the bridge keeps its pool and requests go
    through it as before; the hub's API shows no mux connection."""
    up = AsyncHashUpstream()
    env.others.append(up)
    hub = env.hub(args=["--mux", "2"] if where == "node" else ["--no-mux"])
    node = env.node(hub, up.url, args=["--no-mux"] if where == "node"
                    else [])
    ident = node.identity
    st, _, body = http_get(hub.port, hub.host(ident), "/x", method="POST",
                           body=b"abc")
    assert st == 200
    assert json.loads(body)["sha256"] == hashlib.sha256(b"abc").hexdigest()
    p = hub.proxy(ident)
    assert p["mux"] == 0 and p["pool"] >= 1, p
    assert "multiplexed" not in hub.proc.stderr()
