"""Heavy traffic through the tunnel (hub <-> bridge over WebSocket) with
real clients: big uploads and downloads checked by SHA-256, a WebSocket
echo, 200 concurrent keep-alive connections (wrk), two identities on one
keep-alive connection, and a bridge killed in the middle of a download.

SLUICE_TEST_BIG_MB (default 100) sizes the big transfers.
"""

import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from helpers import recv_all, require_binary, scaled, wait_for
from tunnel_x_support import (BIG_MB, big_file, curl_via,
                              http_get, read_response)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


FRAMING = pytest.mark.parametrize("framing", ["raw", "framed"])


def node_args(framing):
    return ["--framed"] if framing == "framed" else []


@FRAMING
def test_big_upload_sha256(env, tmp_path, framing):
    hub = env.hub()
    up = env.hash_upstream()
    node = env.node(hub, up.url, args=node_args(framing))
    path = str(tmp_path / "up.bin")
    want = big_file(path, BIG_MB)
    # PUT with Content-Length (curl asks Expect: 100-continue first)
    cp = curl_via(hub, node.identity, "/upload", "--fail", "-T", path,
                  timeout=240)
    assert cp.returncode == 0, cp.stderr
    got = json.loads(cp.stdout)
    assert got["length"] == BIG_MB << 20
    assert got["sha256"] == want
    assert got["forwarded_for"].endswith("127.0.0.1")
    # POST with a chunked body, twice on one connection (keep-alive: the
    # hub must find where each chunked body ends)
    small = str(tmp_path / "small.bin")
    want_small = big_file(small, 4)
    url = "http://%s.%s:%d/chunked" % (node.identity, hub.domain, hub.port)
    cp = curl_via(hub, node.identity, "/chunked", "--fail",
                  "-H", "Transfer-Encoding: chunked",
                  "--data-binary", "@" + small, "--next",
                  "--resolve", "%s.%s:%d:127.0.0.1" % (node.identity,
                                                       hub.domain, hub.port),
                  "-H", "Transfer-Encoding: chunked",
                  "--data-binary", "@" + small, url, timeout=120)
    assert cp.returncode == 0, cp.stderr
    answers = [json.loads(x) for x in
               re.findall(r"\{[^}]*\}", cp.stdout)]
    assert len(answers) == 2, cp.stdout
    for a in answers:
        assert a["sha256"] == want_small and a["length"] == 4 << 20


@FRAMING
def test_big_download_sha256(env, tmp_path, framing):
    hub = env.hub()
    web = env.nginx()
    want = big_file(os.path.join(web.root, "big.bin"), BIG_MB)
    node = env.node(hub, web.url, args=node_args(framing))
    out = str(tmp_path / "down.bin")
    cp = curl_via(hub, node.identity, "/big.bin", "--fail", "-o", out,
                  timeout=240)
    assert cp.returncode == 0, cp.stderr
    assert os.path.getsize(out) == BIG_MB << 20
    assert file_sha256(out) == want


@FRAMING
def test_websocket_echo(env, framing):
    websockets = pytest.importorskip("websockets")
    hub = env.hub()
    echo = env.ws_echo()
    node = env.node(hub, echo.url, args=node_args(framing))
    host = "%s.%s:%d" % (node.identity, hub.domain, hub.port)
    mib = os.urandom(1 << 20)
    messages = ["hello", b"\x00\x01\x02binary", "h\u00e9llo \u2603", mib,
                "x" * 70000, b"", "last"]

    async def run():
        sock = socket.create_connection(("127.0.0.1", hub.port),
                                        timeout=scaled(10))
        sock.setblocking(False)
        async with websockets.connect("ws://%s/" % host, sock=sock,
                                      max_size=4 << 20,
                                      open_timeout=scaled(15)) as ws:
            for m in messages:
                await ws.send(m)
                back = await asyncio.wait_for(ws.recv(), scaled(15))
                assert type(back) is type(m)
                assert back == m, "echo of a %d-byte %s differs" % (
                    len(m), type(m).__name__)
            # several in flight at once come back in order
            for m in messages:
                await ws.send(m)
            for m in messages:
                assert await asyncio.wait_for(ws.recv(), scaled(15)) == m
    asyncio.run(asyncio.wait_for(run(), scaled(90)))
    # the tunnel still serves plain requests to the same bridge: the echo
    # server (websockets) answers a GET without an upgrade 426
    cp = curl_via(hub, node.identity, "/", "-o", "/dev/null",
                  "-w", "%{http_code}")
    assert cp.stdout == "426", (cp.stdout, cp.stderr)


WRK_ERRORS_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), "
                           r"write (\d+), timeout (\d+)")
WRK_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_REQS_RE = re.compile(r"(\d+) requests in")


def test_wrk_200_keepalive(env):
    wrk = require_binary("wrk")
    hub = env.hub()
    web = env.nginx(files={"small.txt": b"s" * 1024})
    node = env.node(hub, web.url)
    cp = subprocess.run(
        [wrk, "-t2", "-c200", "-d5s", "--timeout", "%ds" % int(scaled(10)),
         "-H", "Host: %s" % hub.host(node.identity),
         "http://127.0.0.1:%d/small.txt" % hub.port],
        capture_output=True, text=True, timeout=scaled(60))
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out
    assert not WRK_ERRORS_RE.search(out), out
    assert not WRK_NON2XX_RE.search(out), out
    assert int(WRK_REQS_RE.search(out).group(1)) >= 200, out
    # every connection went back: none left open on the hub
    wait_for(lambda: hub.metrics().get("sluice_hub_user_connections") == 0,
             15, what="user connections back to 0")


def test_two_identities_one_keepalive_connection(env):
    hub = env.hub()
    alpha = env.hash_upstream("alpha")
    beta = env.hash_upstream("beta")
    node = env.node(hub, alpha.url)
    st, body = node.add_bridge(beta.url)
    assert st == 201, (st, body)
    bridges = node.wait_bridges(2)
    ids = {up: ident for ident, _, up in bridges}
    a, b = ids[alpha.url], ids[beta.url]
    assert a != b
    s = socket.create_connection(("127.0.0.1", hub.port), timeout=scaled(10))
    try:
        for ident, path, want in ((a, "/1", b"alpha /1"), (b, "/2", b"beta /2"),
                                  (b, "/3", b"beta /3"), (a, "/4", b"alpha /4")):
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                       % (path, hub.host(ident))).encode())
            status, head, data = read_response(s)
            assert status == 200, head
            assert data == want
        # pipelined: both requests sent before either answer is read
        s.sendall(("GET /5 HTTP/1.1\r\nHost: %s\r\n\r\n"
                   "GET /6 HTTP/1.1\r\nHost: %s\r\n\r\n"
                   % (hub.host(a), hub.host(b))).encode())
        st5, _, d5 = read_response(s)
        st6, _, d6 = read_response(s)
        assert (st5, d5, st6, d6) == (200, b"alpha /5", 200, b"beta /6")
    finally:
        s.close()


@FRAMING
def test_bridge_killed_mid_download(env, framing):
    hub = env.hub()
    web = env.nginx()
    size_mb = max(16, min(BIG_MB, 64))
    big_file(os.path.join(web.root, "big.bin"), size_mb)
    node = env.node(hub, web.url, args=node_args(framing))
    ident = node.identity
    s = socket.create_connection(("127.0.0.1", hub.port), timeout=scaled(10))
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(("GET /big.bin HTTP/1.1\r\nHost: %s\r\n\r\n"
                   % hub.host(ident)).encode())
        got = 0
        while got < 1 << 20:
            b = s.recv(65536)
            assert b, "EOF after %d bytes" % got
            got += len(b)
        # The user stops reading; back-pressure holds the rest upstream.
        node.kill()
        t0 = time.monotonic()
        rest, how = recv_all(s, timeout=10)
        ended = time.monotonic() - t0
        assert how in ("eof", "reset"), how
        assert got + len(rest) < (size_mb << 20) + 1024, \
            "the whole file arrived: the kill was not mid-transfer"
        assert ended < scaled(5), "user connection ended after %.1fs" % ended
    finally:
        s.close()
    # once the hub has seen the control connection go, a request is
    # answered 502 at once (not 504 after the pairing window)
    wait_for(lambda: hub.proxy(ident)["bridges"] == 0, 10,
             what="the hub seeing the bridge gone")
    t0 = time.monotonic()
    st, _, body = http_get(hub.port, hub.host(ident))
    assert (st, body) == (502, b"Proxy not connected"), (st, body)
    assert time.monotonic() - t0 < scaled(2)

    def drained():
        m = hub.metrics()
        return (m.get("sluice_hub_user_connections") == 0 and
                m.get("sluice_hub_data_connections") == 0 and
                m.get("sluice_hub_control_connections") == 0)
    wait_for(drained, 15, what="hub connection gauges back to 0")


def cpu_seconds(pid):
    """utime + stime of pid (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_regression_burst_after_allocation_scrypt_per_data_conn(env):
    """A burst of user connections right after a bridge got its new
    allocation: each data connection answering `open` carries the same
    (right) password. The hub must not run scrypt (~40 ms of CPU) for each
    of them: one check, then the cached MAC. It did, so 200 connections
    queued 8 s of scrypt, users hit the pairing window and the hub took
    longer than that to stop. CPU time is the measure, not wall time, so a
    loaded machine does not change the verdict."""
    hub = env.hub()
    web = env.nginx(files={"small.txt": b"s" * 1024})
    node = env.node(hub, web.url, pool=0)  # every pair answers an `open`
    n = 100
    results = []
    lock = threading.Lock()

    def one():
        try:
            r = http_get(hub.port, hub.host(node.identity), "/small.txt",
                         timeout=30)[0]
        except OSError as e:
            r = repr(e)
        with lock:
            results.append(r)
    before = cpu_seconds(hub.pid)
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(60))
    spent = cpu_seconds(hub.pid) - before
    # 100 scrypt checks would be about 4 CPU-seconds
    assert results.count(200) == n and spent < 1.5, (
        "%d of %d answered 200 (others: %s); hub used %.2f CPU-s" % (
            results.count(200), n, [r for r in results if r != 200][:5],
            spent))
