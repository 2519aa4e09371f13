"""Traffic limits of a proxy allocation, enforced by the hub: an allocation
made through the admin API with a 1 MB quota, used by a real bridge (started with the allocation's --username and
--password), is cut off after
about 1 MB with `429 Traffic limit exceeded`, and the API's counters match
the bytes the user actually moved within one buffer (64 KiB)."""

import os
import socket
from types import SimpleNamespace

from helpers import recv_all, scaled, wait_for
from tunnel_x_support import FreezeProxy, big_file, http_get

BUFFER = 64 * 1024
QUOTA = 1000000


def user_traffic(j):
    t = j["traffic"]["user"]
    return t["down"], t["up"]


def test_traffic_limit_1mb(env):
    # Pool connections age out every 2 s, so the node keeps dialling new
    # ones, which the hub refuses once the quota is spent (the pool's
    # back-off is measured: a hub without multiplexing).
    hub = env.hub(args=["--pool-age-ms", "2000", "--no-mux"])
    # The node reaches the hub through a forwarder that notes the time of
    # every connection it accepts: the node's dials as the hub sees them.
    proxy = FreezeProxy(hub.port)
    env.others.append(proxy)
    web = env.nginx(files={"small.txt": b"hello\n"})
    big_file(os.path.join(web.root, "big.bin"), 8)
    alloc = hub.create(traffic=QUOTA)
    assert alloc["limits"]["traffic"] == QUOTA
    # one pool connection: each refusal is one failure, one back-off step
    node = env.node(SimpleNamespace(url=proxy.url), web.url, creds=alloc,
                    pool=1)
    ident = alloc["identity"]
    assert node.identity == ident

    sent = received = 0
    # A few small requests first: counted, well under the quota.
    for _ in range(3):
        req = ("GET /small.txt HTTP/1.1\r\nHost: %s\r\nConnection: close"
               "\r\n\r\n" % hub.host(ident)).encode()
        s = socket.create_connection(("127.0.0.1", hub.port),
                                     timeout=scaled(10))
        s.sendall(req)
        data, how = recv_all(s, timeout=10)
        s.close()
        assert how == "eof" and b" 200 " in data[:20], data[:200]
        sent += len(req)
        received += len(data)

    def counted():
        down, up = user_traffic(hub.proxy(ident))
        return (down, up) if down + up >= sent + received - BUFFER else None
    wait_for(counted, 10, what="small requests counted")

    # Then an 8 MiB download: the hub must end it after about 1 MB.
    req = ("GET /big.bin HTTP/1.1\r\nHost: %s\r\n\r\n"
           % hub.host(ident)).encode()
    s = socket.create_connection(("127.0.0.1", hub.port), timeout=scaled(10))
    try:
        s.sendall(req)
        data, how = recv_all(s, timeout=15)
    finally:
        s.close()
    assert how in ("eof", "reset"), how
    sent += len(req)
    received += len(data)
    moved = sent + received
    assert QUOTA - BUFFER <= moved <= QUOTA + 2 * BUFFER, \
        "connection ended after %d bytes moved (quota %d)" % (moved, QUOTA)

    # The API's counters match what moved, within one buffer.
    j = wait_for(lambda: (lambda j: j if j["limited"] else None)(
        hub.proxy(ident)), 10, what="allocation marked limited")
    down, up = user_traffic(j)
    assert abs(down - received) <= BUFFER, (down, received)
    assert abs(up - sent) <= BUFFER, (up, sent)
    assert abs((down + up) - moved) <= BUFFER

    # New requests are refused with the seed's words, and stay refused.
    for _ in range(2):
        st, _, body = http_get(hub.port, hub.host(ident), "/small.txt")
        assert st == 429, (st, body)
        assert b"Traffic limit exceeded" in body

    # Counters in /metrics agree with the API.
    m = hub.metrics()
    key = 'sluice_proxy_limited{identity="%s"}' % ident
    assert m.get(key) == 1, {k: v for k, v in m.items() if ident in k}

    # The node's new pool connections are refused (429) from now on: it
    # says so once and backs off as DESIGN says (1 s doubling to 60 s,
    # jittered: the n-th wait after a refusal is in [2^n, 2^(n+1)] s) instead
    # of redialling at once. Measured between the dials the forwarder
    # accepts, each refused in turn.
    wait_for(lambda: "refused data connection" in node.proc.stderr(), 15,
             what="a refused pool connection")
    first = len(proxy.accepts) - 1
    dials = wait_for(lambda: proxy.accepts[first:] if len(proxy.accepts)
                     >= first + 4 else None, 2 + 4 + 8 + 5,
                     what="three more pool dials")
    gaps = [b - a for a, b in zip(dials, dials[1:])][:3]
    for n, gap in enumerate(gaps):
        lo, hi = 2 ** n, 2 ** (n + 1)
        assert lo * 0.98 <= gap <= hi + scaled(1), (
            "wait %d after a refusal was %.2fs, not in [%d, %d] s: %s" % (
                n, gap, lo, hi, ["%.2f" % g for g in gaps]))
    assert node.proc.stderr().count("refused data connection") == 1, \
        node.proc.stderr()[-2000:]


def test_unlimited_allocation_not_cut(env):
    """The same download on an allocation without a quota goes through
    whole, and its counters grow by at least what moved."""
    hub = env.hub()
    web = env.nginx()
    big_file(os.path.join(web.root, "big.bin"), 8)
    alloc = hub.create()
    node = env.node(hub, web.url, creds=alloc)
    ident = node.identity
    req = ("GET /big.bin HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
           % hub.host(ident)).encode()
    s = socket.create_connection(("127.0.0.1", hub.port), timeout=scaled(10))
    try:
        s.sendall(req)
        data, how = recv_all(s, timeout=30)
    finally:
        s.close()
    assert how == "eof"
    assert len(data) > 8 << 20
    down, up = wait_for(lambda: (lambda t: t if t[0] >= len(data) else None)(
        user_traffic(hub.proxy(ident))), 10, what="download counted")
    assert abs(down - len(data)) <= BUFFER
    assert abs(up - len(req)) <= BUFFER
    assert hub.proxy(ident)["limited"] is False
