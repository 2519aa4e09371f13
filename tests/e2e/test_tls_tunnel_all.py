"""Everything that works over `--http` works over `--https`: a
representative subset of the tunnel tests (test_tunnel_x_transfer,
test_tunnel_x_limits, test_tunnel_node), each run twice: `http` (users on
the plain port, the bridge over ws://) and `https` (users on the TLS port,
the bridge over wss:// verified with --hub-ca). Both runs use a hub with
both listeners, so only the path differs.

The user side does not verify the hub's certificate here (test_tls_hub.py
does): these tests are about the bytes through the tunnel.

SLUICE_TLS_TEST_MB (default 32) sizes the transfers checked by SHA-256.
To run the whole tunnel suite with the bridges over TLS, set
SLUICE_TUNNEL_TLS=1 (tunnel_x_support.py).
"""

import asyncio
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from helpers import recv_all, require_binary, scaled, wait_for
from tls_support import client_context
from tunnel_x_support import big_file, pool_or_mux, read_response

MB = int(os.environ.get("SLUICE_TLS_TEST_MB", "32") or "32")

SCHEMES = pytest.mark.parametrize("scheme", ["http", "https"])


class Path:
    """One way through the hub: the port users connect to, how they
    connect, and where the node dials."""

    def __init__(self, env, scheme, hub_args=()):
        self.env = env
        self.scheme = scheme
        self.tls = scheme == "https"
        self.hub = env.hub(tls=True, args=list(hub_args))
        self.port = self.hub.https_port if self.tls else self.hub.port

    def node(self, upstream, **kw):
        if self.tls:
            kw.setdefault("hub_url", self.hub.https_url)
            kw.setdefault("hub_ca", self.hub.ca)
        n = self.env.node(self.hub, upstream, **kw)
        if self.tls:
            assert n.bridges()[0][1].startswith("https://"), n.bridges()
        return n

    def name(self, ident):
        return "%s.%s" % (ident, self.hub.domain)

    def host(self, ident):
        return "%s:%d" % (self.name(ident), self.port)

    def connect(self, ident, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port),
                                     timeout=scaled(timeout))
        if self.tls:
            s = client_context(verify=False).wrap_socket(
                s, server_hostname=self.name(ident))
        return s

    def curl(self, ident, path, *args, timeout=120):
        name = self.name(ident)
        argv = ["curl", "-sS", "-k", "--resolve",
                "%s:%d:127.0.0.1" % (name, self.port)] + \
            [str(a) for a in args] + \
            ["%s://%s:%d%s" % (self.scheme, name, self.port, path)]
        return subprocess.run(argv, capture_output=True, text=True,
                              errors="replace", timeout=scaled(timeout),
                              stdin=subprocess.DEVNULL)

    def get(self, ident, path="/"):
        """(status, body) of one request on its own connection."""
        s = self.connect(ident)
        try:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close"
                       "\r\n\r\n" % (path, self.host(ident))).encode())
            st, _, body = read_response(s)
            return st, body
        finally:
            s.close()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


@SCHEMES
@pytest.mark.parametrize("framing", ["raw", "framed"])
def test_upload_and_download_sha256(env, tmp_path, scheme, framing):
    p = Path(env, scheme)
    web = env.nginx()
    want_down = big_file(os.path.join(web.root, "big.bin"), MB)
    up = env.hash_upstream()
    args = ["--framed"] if framing == "framed" else []
    down_node = p.node(web.url, args=args)
    up_node = p.node(up.url, name="upnode", args=args)
    out = str(tmp_path / "down.bin")
    cp = p.curl(down_node.identity, "/big.bin", "--fail", "-o", out)
    assert cp.returncode == 0, cp.stderr
    assert os.path.getsize(out) == MB << 20
    assert file_sha256(out) == want_down
    src = str(tmp_path / "up.bin")
    want_up = big_file(src, MB)
    cp = p.curl(up_node.identity, "/upload", "--fail", "-T", src)
    assert cp.returncode == 0, cp.stderr
    got = json.loads(cp.stdout)
    assert (got["length"], got["sha256"]) == (MB << 20, want_up)
    # chunked POST twice on one keep-alive connection
    small = str(tmp_path / "small.bin")
    want_small = big_file(small, 2)
    url = "%s://%s%s" % (scheme, p.host(up_node.identity), "/c")
    cp = p.curl(up_node.identity, "/c", "-H", "Transfer-Encoding: chunked",
                "--data-binary", "@" + small, url, "--next", "-k",
                "--resolve", "%s:%d:127.0.0.1" % (p.name(up_node.identity),
                                                  p.port),
                "-H", "Transfer-Encoding: chunked", "--data-binary",
                "@" + small)
    assert cp.returncode == 0, cp.stderr
    answers = [json.loads(x) for x in re.findall(r"\{[^}]*\}", cp.stdout)]
    assert len(answers) == 2, cp.stdout
    for a in answers:
        assert (a["length"], a["sha256"]) == (2 << 20, want_small)


@SCHEMES
def test_websocket_echo(env, scheme):
    websockets = pytest.importorskip("websockets")
    p = Path(env, scheme)
    echo = env.ws_echo()
    node = p.node(echo.url)
    mib = os.urandom(1 << 20)
    messages = ["hello", b"\x00\x01binary", "h\u00e9llo", mib, "x" * 70000,
                b"", "last"]

    async def run():
        sock = socket.create_connection(("127.0.0.1", p.port),
                                        timeout=scaled(10))
        sock.setblocking(False)
        kw = {}
        if p.tls:
            kw = {"ssl": client_context(verify=False),
                  "server_hostname": p.name(node.identity)}
        scheme_ws = "wss" if p.tls else "ws"
        async with websockets.connect(
                "%s://%s/" % (scheme_ws, p.host(node.identity)), sock=sock,
                max_size=4 << 20, open_timeout=scaled(15), **kw) as ws:
            for m in messages:
                await ws.send(m)
                back = await asyncio.wait_for(ws.recv(), scaled(15))
                assert type(back) is type(m) and back == m
            for m in messages:
                await ws.send(m)
            for m in messages:
                assert await asyncio.wait_for(ws.recv(), scaled(15)) == m
    asyncio.run(asyncio.wait_for(run(), scaled(60)))


WRK_ERRORS_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), "
                           r"write (\d+), timeout (\d+)")
WRK_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_REQS_RE = re.compile(r"(\d+) requests in")


@SCHEMES
def test_wrk_64_keepalive(env, scheme):
    wrk = require_binary("wrk")
    p = Path(env, scheme)
    web = env.nginx(files={"small.txt": b"s" * 1024})
    node = p.node(web.url)
    cp = subprocess.run(
        [wrk, "-t2", "-c64", "-d3s", "--timeout", "%ds" % int(scaled(10)),
         "-H", "Host: %s" % p.host(node.identity),
         "%s://127.0.0.1:%d/small.txt" % (scheme, p.port)],
        capture_output=True, text=True, timeout=scaled(60))
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out
    assert not WRK_ERRORS_RE.search(out), out
    assert not WRK_NON2XX_RE.search(out), out
    assert int(WRK_REQS_RE.search(out).group(1)) >= 64, out
    wait_for(lambda: p.hub.metrics().get("sluice_hub_user_connections")
             == 0, 15, what="user connections back to 0")


@SCHEMES
def test_keepalive_two_identities_and_errors(env, scheme):
    p = Path(env, scheme)
    alpha = env.hash_upstream("alpha")
    beta = env.hash_upstream("beta")
    node = p.node(alpha.url)
    st, body = node.add_bridge(beta.url)
    assert st == 201, (st, body)
    ids = {up: ident for ident, _, up in node.wait_bridges(2)}
    a, b = ids[alpha.url], ids[beta.url]
    for ident in (a, b):
        wait_for(lambda: pool_or_mux(p.hub, ident), 10,
                 what="pool or mux of %s" % ident)
    s = p.connect(a)
    try:
        for ident, path, want in ((a, "/1", b"alpha /1"),
                                  (b, "/2", b"beta /2"),
                                  (a, "/3", b"alpha /3")):
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                       % (path, p.host(ident))).encode())
            status, head, data = read_response(s)
            assert (status, data) == (200, want), head
        s.sendall(("GET /5 HTTP/1.1\r\nHost: %s\r\n\r\n"
                   "GET /6 HTTP/1.1\r\nHost: %s\r\n\r\n"
                   % (p.host(a), p.host(b))).encode())
        st5, _, d5 = read_response(s)
        st6, _, d6 = read_response(s)
        assert (st5, d5, st6, d6) == (200, b"alpha /5", 200, b"beta /6")
    finally:
        s.close()
    try:
        st, body = p.get("zz0000000000")
        assert st == 404 and b"Proxy not available" in body
    except ssl.SSLError as e:
        # over TLS the hub may refuse the name in the handshake instead
        assert p.tls and "UNRECOGNIZED_NAME" in str(e).upper(), e
    ident = p.hub.create()["identity"]
    assert p.get(ident) == (502, b"Proxy not connected")


@SCHEMES
def test_traffic_limit_1mb(env, scheme):
    quota = 1000000
    p = Path(env, scheme)
    web = env.nginx(files={"small.txt": b"hello\n"})
    big_file(os.path.join(web.root, "big.bin"), 8)
    alloc = p.hub.create(traffic=quota)
    node = p.node(web.url, creds=alloc, pool=1)
    ident = alloc["identity"]
    assert node.identity == ident
    st, body = p.get(ident, "/small.txt")
    assert (st, body) == (200, b"hello\n")
    s = p.connect(ident)
    try:
        s.sendall(("GET /big.bin HTTP/1.1\r\nHost: %s\r\n\r\n"
                   % p.host(ident)).encode())
        got = b""
        deadline = time.monotonic() + scaled(15)
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except (ssl.SSLError, ConnectionError, socket.timeout):
                break
            if not b:
                break
            got += b
    finally:
        s.close()
    assert quota - (64 << 10) <= len(got) <= quota + (128 << 10), len(got)
    wait_for(lambda: p.hub.proxy(ident)["limited"], 10,
             what="allocation limited")
    st, body = p.get(ident, "/small.txt")
    assert st == 429 and b"Traffic limit exceeded" in body, (st, body)


@SCHEMES
def test_bridge_killed_mid_download(env, scheme):
    p = Path(env, scheme)
    web = env.nginx()
    size_mb = max(16, min(MB, 64))
    big_file(os.path.join(web.root, "big.bin"), size_mb)
    node = p.node(web.url)
    ident = node.identity
    s = p.connect(ident)
    try:
        s.sendall(("GET /big.bin HTTP/1.1\r\nHost: %s\r\n\r\n"
                   % p.host(ident)).encode())
        got = 0
        while got < 1 << 20:
            b = s.recv(65536)
            assert b, "EOF after %d bytes" % got
            got += len(b)
        node.kill()
        t0 = time.monotonic()
        try:
            rest, how = recv_all(s, timeout=10)
        except ssl.SSLError:
            rest, how = b"", "reset"
        assert how in ("eof", "reset"), how
        assert got + len(rest) < (size_mb << 20) + 1024
        assert time.monotonic() - t0 < scaled(5)
    finally:
        s.close()
    wait_for(lambda: p.hub.proxy(ident)["bridges"] == 0, 10,
             what="the hub seeing the bridge gone")
    assert p.get(ident) == (502, b"Proxy not connected")
