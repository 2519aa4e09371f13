"""Peers for the heavy tunnel tests (test_tunnel_x_*.py) and bench/tunnel:
the hub and the bridge node as processes, upstreams that hash what they
get or name themselves, a WebSocket echo server, a raw data-connection
client and a small Python bridge speaking the control protocol.

The hub and the node run in their own process groups with output in files
(helpers.Proc). problems() gives what a test must fail on: an exit code
other than 0 after SIGTERM, or a sanitizer report.

SLUICE_TEST_BIG_MB (default 100) sizes the big transfers; a sanitizer build
on a small machine may want 30.

TLS (all optional, off by default): Hub(tls=True) or Hub(https_port=P)
adds an `--https` listener (hub.https_port, hub.https_url, hub.ca: the
local CA's certificate), Hub(http=False) leaves the plain one out;
Hub(stream_ports="A-B") gives the hub `--stream-ports A-B` (the ports of
TCP and UDP tunnels; streams_support.free_range finds a free range);
Node(hub_url=URL, hub_ca=FILE) dials the hub at URL. With
SLUICE_TUNNEL_TLS=1 in the environment, TunnelEnv's hubs get an https
listener and nodes dial it (https:// with --hub-ca), so every tunnel test
runs its bridges over TLS; users still use the plain port. Two tests
assume the bridge uses the plain port and fail in that mode by design:
test_bridge_cli (`bridge create` with hub.url is a second hub to the node)
and test_tunnel_connections_watched_by_the_kernel (it looks for the
tunnel's sockets on hub.port).

PostgreSQL: SLUICE_TUNNEL_PG=<URI of a server> gives every Hub `--store`
on a database of its own (pg_support.py; test_multihub.py runs a subset
so).

Protocol v2: SLUICE_TUNNEL_MUX=N (1-4) gives every Hub `--mux N` (each
bridge keeps N multiplexed data connections and user connections ride on
them as streams), SLUICE_TUNNEL_MUX=0 gives `--no-mux` (a data connection
per user connection, from the pool); unset, the hub's default. A test
that passes --mux or --no-mux itself keeps its own. So the tunnel tests
run in both modes:
  SLUICE_TUNNEL_MUX=2 python3 -m pytest tests/e2e/test_tunnel_*.py
"""

import asyncio
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers import (Proc, recv_all, sanitizer_report, scaled, sluice_bin,
                     tcp_listening, wait_for, free_port)

BIG_MB = int(os.environ.get("SLUICE_TEST_BIG_MB", "100") or "100")

HUB_RE = re.compile(r"^hub listening http://(\S+):(\d+) domain (\S+)$", re.M)
HUB_TLS_RE = re.compile(r"^hub listening https://(\S+):(\d+) domain (\S+)$",
                        re.M)
HUB_CA_RE = re.compile(r"^hub ca (\S+)$", re.M)

# SLUICE_TUNNEL_TLS=1: TunnelEnv's hubs listen on https too and nodes dial
# it. A hub restarted on the same plain port gets the same https port.
TUNNEL_TLS = os.environ.get("SLUICE_TUNNEL_TLS", "") not in ("", "0")
# SLUICE_TUNNEL_MUX=N: hubs get --mux N (0: --no-mux); "": their default.
TUNNEL_MUX = os.environ.get("SLUICE_TUNNEL_MUX", "").strip()
# SLUICE_TUNNEL_PG=<postgres URI of a server>: every Hub on a PostgreSQL
# store, a database per state directory (pg_support.db_for_state).
TUNNEL_PG = os.environ.get("SLUICE_TUNNEL_PG", "").strip()
_TLS_PORTS = {}
BRIDGE_RE = re.compile(r"^bridge ([a-z0-9]{12}) (\S+) -> (\S+)$", re.M)


def _problems(role):
    """What the test must fail on for one hub or node: a stop by SIGTERM
    (at teardown or earlier in the test) that did not exit 0 in time, a
    death nobody asked for, or a sanitizer report in stderr (even after a
    deliberate SIGKILL: what it printed before dying still counts)."""
    proc = role.proc
    out = []
    if not role.stops:
        if proc.alive():
            role.stop()
        else:
            out.append("%s died during the test with code %s"
                       % (proc.name, proc.popen.returncode))
    for sig, rc in role.stops:
        if sig == signal.SIGKILL:
            continue  # a crash on purpose: any code
        if rc is None:
            out.append("%s did not exit within %.0fs of %s"
                       % (proc.name, scaled(15), signal.Signals(sig).name))
        elif rc != 0:
            out.append("%s exited with code %d after %s"
                       % (proc.name, rc, signal.Signals(sig).name))
    proc.kill_group()
    report = sanitizer_report(proc.stderr())
    if report:
        out.append("sanitizer report in %s's stderr:\n%s"
                   % (proc.name, report))
    return out


class Role:
    """Common part of Hub and Node. Every stop is recorded (signal, exit
    code) and judged at teardown by problems(), so a test that stops a
    process and ignores the exit code still fails on a bad one."""
    proc = None

    @property
    def stops(self):
        if "_stops" not in self.__dict__:
            self._stops = []
        return self._stops

    @property
    def stopped(self):
        return bool(self.stops)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig and waits; returns the exit code (None: it did not
        exit in time and was killed). A SIGTERM stop must give 0 and a
        clean stderr, else the test fails at teardown."""
        self.proc.signal(sig)
        rc = self.proc.wait(timeout)
        if rc is None:
            self.proc.kill_group()
        self.stops.append((sig, rc))
        return rc

    def kill(self):
        """SIGKILL, as a crash would: its exit code is not judged, its
        stderr still is (a sanitizer report before the kill)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = self.proc.wait(10)
        self.stops.append((signal.SIGKILL, rc))
        return rc

    def problems(self):
        return _problems(self)

    def alive(self):
        return self.proc.alive()

    def rss_kib(self, field="VmRSS"):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return None


class Hub(Role):
    """`sluice boot up --proxy` on free loopback ports (public and API)."""

    def __init__(self, workdir, name="hub", args=(), binary=None, env=None,
                 http_port=None, state_dir=None, global_args=(),
                 https_port=None, tls=False, http=True, stream_ports=None):
        self.workdir = str(workdir)
        self.port = http_port or free_port()
        self.api_port = free_port()
        self.state_dir = state_dir or os.path.join(self.workdir,
                                                   name + "-state")
        self.https_port = https_port
        if self.https_port is None and (tls or not http):
            self.https_port = (_TLS_PORTS.setdefault(self.port, free_port())
                               if http_port else free_port())
        listen = []
        if http:
            listen += ["--http", "127.0.0.1:%d" % self.port]
        if self.https_port:
            listen += ["--https", "127.0.0.1:%d" % self.https_port]
        argv = [binary or sluice_bin()] + list(global_args) + [
                "boot", "up", "--proxy"] + listen + [
                "--api", "127.0.0.1:%d" % self.api_port,
                "--state-dir", self.state_dir] + list(args)
        if TUNNEL_PG and "--store" not in args:
            from pg_support import db_for_state
            argv += ["--store", db_for_state(TUNNEL_PG, self.state_dir)]
        self.stream_ports = stream_ports
        if stream_ports:
            argv += ["--stream-ports", str(stream_ports)]
        if TUNNEL_MUX and not {"--mux", "--no-mux"} & set(args):
            argv += ["--no-mux"] if TUNNEL_MUX == "0" else [
                "--mux", TUNNEL_MUX]
        self.proc = Proc(argv, self.workdir, name, env=env)
        self.pid = self.proc.pid

        def ready():
            if not self.proc.alive():
                raise AssertionError("hub exited before listening:\n"
                                     + self.proc.describe())
            out = self.proc.stdout()
            m = HUB_RE.search(out) if http else None
            t = HUB_TLS_RE.search(out) if self.https_port else None
            if (http and not m) or (self.https_port and not t):
                return None
            return (m or t) if tcp_listening(self.api_port) else None
        m = wait_for(ready, 20, what="hub listening line(s)")
        self.domain = m.group(3)
        self.url = "http://127.0.0.1:%d" % self.port
        self.https_url = None
        if self.https_port:
            self.https_url = "https://127.0.0.1:%d" % self.https_port
        if not http:
            self.port = self.https_port
            self.url = self.https_url

    @property
    def ca(self):
        """The local CA's certificate: the path of the `hub ca` line, else
        where the hub keeps it (<state-dir>/tls/ca.pem)."""
        m = HUB_CA_RE.search(self.proc.stdout())
        return m.group(1) if m else os.path.join(self.state_dir, "tls",
                                                 "ca.pem")

    def host(self, identity):
        return "%s.%s:%d" % (identity, self.domain, self.port)

    def api(self, method, path, body=None, timeout=10):
        """(status, parsed JSON or text) of one admin API request."""
        c = http.client.HTTPConnection("127.0.0.1", self.api_port,
                                       timeout=scaled(timeout))
        try:
            data = json.dumps(body).encode() if body is not None else None
            hdrs = {"Content-Type": "application/json"} if data else {}
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            raw = r.read().decode("utf-8", "replace")
            try:
                return r.status, json.loads(raw)
            except ValueError:
                return r.status, raw
        finally:
            c.close()

    def create(self, bridges=0, traffic=0):
        st, j = self.api("POST", "/api/proxy/",
                         {"limits": {"bridges": bridges,
                                     "traffic": traffic}}, timeout=30)
        assert st == 201, (st, j)
        return j

    def proxy(self, identity):
        st, j = self.api("GET", "/api/proxy/%s/" % identity)
        assert st == 200, (st, j)
        return j

    def metrics(self):
        """{name or name{labels}: float} of /metrics."""
        st, text = self.api("GET", "/metrics")
        assert st == 200, (st, text)
        out = {}
        for line in str(text).splitlines():
            if not line or line.startswith("#"):
                continue
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
        return out


class Node(Role):
    """`sluice boot up --bridge --upstream URL`. With creds (the answer of
    the hub's POST /api/proxy/), --username and --password make the bridge
    use that allocation instead of asking for a new one."""

    def __init__(self, workdir, hub, upstream, name="node", creds=None,
                 pool=None, args=(), binary=None, env=None, wait=True,
                 global_args=(), hub_url=None, hub_ca=None):
        self.workdir = str(workdir)
        self.state_dir = os.path.join(self.workdir, name + "-state")
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.hub = hub
        self.upstream = upstream
        self.api_port = free_port()
        if hub_url is None and TUNNEL_TLS and getattr(hub, "https_url",
                                                      None):
            hub_url, hub_ca = hub.https_url, hub_ca or hub.ca
        self.hub_url = hub_url or hub.url
        argv = [binary or sluice_bin()] + list(global_args) + [
                "boot", "up", "--bridge",
                "--hub", self.hub_url, "--state-dir", self.state_dir,
                "--api", "127.0.0.1:%d" % self.api_port]
        if hub_ca:
            argv += ["--hub-ca", hub_ca]
        argv += ["--upstream", upstream]
        if creds is not None:
            argv += ["--username", creds["username"],
                     "--password", creds["password"]]
        if pool is not None:
            argv += ["--pool", str(pool)]
        argv += list(args)
        self.proc = Proc(argv, self.workdir, name, env=env)
        self.pid = self.proc.pid
        self.identity = None
        if wait:
            self.wait_bridges(1)
            if pool != 0 and hasattr(hub, "proxy"):
                # The bridge line comes with the welcome, before the pool
                # connections reach the hub: wait until one of this
                # identity's sits in the hub's pool, so a test's first
                # request does not race it (and get 502).
                ident = self.identity

                def paired_at_once():
                    p = hub.proxy(ident)
                    return p.get("pool", 0) >= 1 or p.get("mux", 0) >= 1
                wait_for(paired_at_once, 10,
                         what="a pool or mux connection of %s at the hub"
                         % ident)

    def bridges(self):
        return BRIDGE_RE.findall(self.proc.stdout())

    def wait_bridges(self, n, timeout=20):
        def ready():
            if not self.proc.alive():
                raise AssertionError("node exited:\n" + self.proc.describe())
            b = self.bridges()
            return b if len(b) >= n else None
        b = wait_for(ready, timeout, what="%d bridge line(s)" % n)
        self.identity = b[0][0]
        return b

    def add_bridge(self, upstream):
        c = http.client.HTTPConnection("127.0.0.1", self.api_port,
                                       timeout=scaled(10))
        try:
            c.request("POST", "/api/bridge/", body=json.dumps(
                {"upstream": upstream, "hub": self.hub_url}).encode(),
                headers={"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


# ------------------------------------------------------------ user side

def http_get(port, host, path="/", timeout=10, method="GET", body=None,
             headers=None):
    """(status, headers dict, body) of one request to the hub's public
    port with the given Host, on its own connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(timeout))
    try:
        h = {"Host": host}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def read_response(sock, timeout=10):
    """Reads one HTTP/1.1 response with Content-Length (or until EOF) from
    sock. Returns (status, head text, body)."""
    sock.settimeout(scaled(timeout))
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = sock.recv(65536)
        if not b:
            raise AssertionError("EOF before a response head: %r" % buf)
        buf += b
        assert len(buf) < 1 << 20
    head, _, rest = buf.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    status = int(text.split(" ", 2)[1])
    m = re.search(r"(?im)^content-length:\s*(\d+)", text)
    if m:
        n = int(m.group(1))
        while len(rest) < n:
            b = sock.recv(65536)
            if not b:
                raise AssertionError("EOF in a body")
            rest += b
        return status, text, rest[:n]
    data, _ = recv_all(sock, timeout=timeout)
    return status, text, rest + data


# ------------------------------------------------------------ upstreams

class _Threaded:
    def __init__(self, handler_cls, **attrs):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.server.daemon_threads = True
        # A client the hub cut off mid-request (the tests do that on
        # purpose) is no error of the test: no traceback on stderr.
        self.server.handle_error = lambda request, address: None
        for k, v in attrs.items():
            setattr(self.server, k, v)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _HashHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _body_chunks(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                n = int(line.split(b";")[0].strip(), 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b""):
                        pass
                    return
                left = n
                while left:
                    b = self.rfile.read(min(left, 1 << 20))
                    if not b:
                        return
                    left -= len(b)
                    yield b
                self.rfile.readline(16)
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                b = self.rfile.read(min(left, 1 << 20))
                if not b:
                    return
                left -= len(b)
                yield b

    def _hash(self):
        h = hashlib.sha256()
        n = 0
        for b in self._body_chunks():
            h.update(b)
            n += len(b)
        out = json.dumps({"sha256": h.hexdigest(), "length": n,
                          "forwarded_for": self.headers.get(
                              "X-Forwarded-For", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_POST = _hash
    do_PUT = _hash

    def do_GET(self):
        out = ("%s %s" % (self.server.name, self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class HashUpstream(_Threaded):
    """POST/PUT: answers {"sha256", "length"} of the body it read.
    GET: answers "<name> <path>", so a test can tell upstreams apart."""

    def __init__(self, name="upstream"):
        super().__init__(_HashHandler, name=name)


class WsEcho:
    """A websockets echo server (text stays text, binary stays binary) in
    its own thread and event loop."""

    def __init__(self, max_size=4 << 20):
        import websockets
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        started = threading.Event()

        async def echo(ws, path=None):
            try:
                async for msg in ws:
                    await ws.send(msg)
            except websockets.ConnectionClosed:
                pass

        async def main():
            self.server = await websockets.serve(echo, "127.0.0.1",
                                                 self.port, max_size=max_size)
            started.set()
            await self.server.wait_closed()

        def run():
            self.loop.run_until_complete(main())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not started.wait(scaled(10)):
            raise AssertionError("WebSocket echo server did not start")

    def stop(self):
        def close():
            self.server.close()
        self.loop.call_soon_threadsafe(close)
        self.thread.join(timeout=5)


class FreezeProxy:
    """A TCP forwarder to 127.0.0.1:target whose freeze() turns every
    connection it carries into a dead path, as a NAT that lost its state
    does: nothing more is forwarded either way and nothing is closed or
    reset. Connections made after freeze() are forwarded normally. One
    thread, select() over the sockets; stop() closes them all."""

    def __init__(self, target):
        import selectors
        self.target = target
        self.sel = selectors.DefaultSelector()
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.ls.setblocking(False)
        self.port = self.ls.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.sel.register(self.ls, 1, None)
        self.frozen = []
        self.accepts = []  # time.monotonic() of every connection accepted
        self.lock = threading.Lock()
        self.freeze_wanted = False
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def freeze(self):
        with self.lock:
            self.freeze_wanted = True
        wait_for(lambda: not self.freeze_wanted, 10, what="proxy frozen")

    def _run(self):
        while self.running:
            with self.lock:
                if self.freeze_wanted:
                    for key in list(self.sel.get_map().values()):
                        if key.data is not None:
                            self.sel.unregister(key.fileobj)
                            self.frozen.append(key.fileobj)
                    self.freeze_wanted = False
            for key, _ in self.sel.select(timeout=0.05):
                if key.data is None:
                    self._accept()
                    continue
                if key.fileobj.fileno() < 0:
                    continue  # closed with its peer earlier in this batch
                try:
                    d = key.fileobj.recv(65536)
                except OSError:
                    d = b""
                peer = key.data
                if not d:
                    for x in (key.fileobj, peer):
                        if x.fileno() >= 0:
                            try:
                                self.sel.unregister(x)
                            except KeyError:
                                pass  # frozen: not watched any more
                            x.close()
                    continue
                try:
                    peer.sendall(d)
                except OSError:
                    pass

    def _accept(self):
        try:
            a, _ = self.ls.accept()
        except OSError:
            return
        self.accepts.append(time.monotonic())
        try:
            b = socket.create_connection(("127.0.0.1", self.target), 5)
        except OSError:
            a.close()
            return
        self.sel.register(a, 1, b)
        self.sel.register(b, 1, a)

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        for x in self.frozen:
            x.close()
        self.sel.close()


def big_file(path, mb):
    """Writes mb MiB of pseudo-random bytes to path; returns the sha256."""
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(mb):
            # each MiB differs, so a misplaced block changes the hash
            b = i.to_bytes(8, "little") + block[8:]
            h.update(b)
            f.write(b)
    return h.hexdigest()


# ------------------------------------------------------ protocol clients

def basic(username, password):
    return "Basic " + base64.b64encode(
        ("%s:%s" % (username, password)).encode()).decode()


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path, host, headers=None):
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host,
             "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: %s" % ws_key(),
             "Sec-WebSocket-Version: 13"]
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock, timeout=10):
    """(status or None on EOF, head text, bytes after the head)."""
    sock.settimeout(scaled(timeout))
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            b = b""
        except socket.timeout:
            # A silent peer is not a close: say so instead of None.
            raise AssertionError("no answer head within %.1fs (got %r)"
                                 % (scaled(timeout), buf[:200]))
        if not b:
            return None, buf.decode("latin-1"), b""
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    return int(text.split(" ", 2)[1]), text, rest


def ws_frame_split(buf):
    """The first whole unmasked WebSocket frame in buf: (opcode, payload,
    the bytes after it), or None while it is incomplete."""
    if len(buf) < 2:
        return None
    op, n = buf[0] & 0x0F, buf[1] & 0x7F
    off = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = int.from_bytes(buf[2:10], "big"), 10
    if len(buf) < off + n:
        return None
    return op, buf[off:off + n], buf[off + n:]


def data_conn(hub, username, password, hijack, raw=True, source=None,
              timeout=10):
    """Opens a data connection with the given Sluice-Hijack value and
    returns the connected socket (the request sent, nothing read)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(timeout))
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", hub.port))
    h = {"Authorization": basic(username, password),
         "Sluice-Hijack": hijack}
    if raw:
        h["Sluice-Framing"] = "raw"
    s.sendall(upgrade_request("/_sluice/v1/data", "127.0.0.1:%d" % hub.port,
                              h))
    return s


def control_attempt(hub, username=None, password=None, source=None,
                    timeout=10):
    """One control upgrade; returns the status (None if closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(timeout))
    try:
        if source:
            s.bind((source, 0))
        s.connect(("127.0.0.1", hub.port))
        h = {}
        if username is not None:
            h["Authorization"] = basic(username, password)
        s.sendall(upgrade_request("/_sluice/v1/control",
                                  "127.0.0.1:%d" % hub.port, h))
        st, _, _ = read_head(s, timeout)
        return st
    finally:
        s.close()


class PyBridge:
    """A bridge written in Python on asyncio (websockets for the control
    connection, raw sockets for data): it answers every `open` with a data
    connection and, once paired, reads the user's request head and answers
    `200` with `body` (keep-alive), then keeps the pair open. Used to see
    the fingerprints the hub hands out and to hold many bridges at little
    cost (bench/tunnel). Run its coroutines on one event loop."""

    def __init__(self, hub_port, username=None, password=None, body=b"ok",
                 answer=True, bridge_id=None, host="127.0.0.1"):
        self.hub_port = hub_port
        self.host = host  # the hub's address (several hubs: test_multihub)
        self.username = username
        self.password = password
        self.body = body
        self.answer = answer
        self.bridge_id = bridge_id  # sent as Sluice-Bridge, as a node does
        self.identity = None
        self.fingerprints = []   # every fingerprint seen in `open`
        self.welcome = None
        self.ws = None
        self.pairs = []          # (reader, writer) of paired data conns
        self.errors = []

    async def connect(self):
        import websockets
        hdrs = {}
        if self.username:
            hdrs["Authorization"] = basic(self.username, self.password)
        if self.bridge_id:
            hdrs["Sluice-Bridge"] = self.bridge_id
        self.ws = await websockets.connect(
            "ws://%s:%d/_sluice/v1/control" % (self.host, self.hub_port),
            extra_headers=hdrs, max_size=1 << 16, ping_interval=None,
            open_timeout=scaled(30), close_timeout=1)
        await self.ws.send(json.dumps({"type": "hello", "version": 1,
                                       "capabilities": ["http"],
                                       "pool": 0}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("type") == "welcome":
                break
        self.welcome = msg
        self.identity = msg["identity"]
        if msg.get("username"):
            self.username = msg["username"]
            self.password = msg["password"]
        return msg

    async def serve(self):
        """Answers `open` messages until the control connection closes."""
        import websockets
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg.get("type") == "open":
                    self.fingerprints.append(msg["fingerprint"])
                    if self.answer:
                        asyncio.ensure_future(self._data(msg["fingerprint"]))
        except websockets.ConnectionClosed:
            pass

    async def _data(self, fingerprint):
        try:
            r, w = await asyncio.open_connection(self.host, self.hub_port)
            w.write(upgrade_request(
                "/_sluice/v1/data", "%s:%d" % (self.host, self.hub_port),
                {"Authorization": basic(self.username, self.password),
                 "Sluice-Hijack": "%s|%s" % (self.identity, fingerprint),
                 "Sluice-Framing": "raw"}))
            head = await r.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101") or \
                    b"sluice-framing: raw" not in head.lower():
                self.errors.append(head[:200])
                w.close()
                return
            self.pairs.append((r, w))
            while True:
                req = await r.readuntil(b"\r\n\r\n")
                if not req:
                    break
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                        b"Content-Type: text/plain\r\n\r\n%s"
                        % (len(self.body), self.body))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass

    async def close(self):
        for _, w in self.pairs:
            w.close()
        if self.ws is not None:
            await self.ws.close()


def pool_or_mux(hub, identity, n=1):
    """True when a user request of identity pairs at once: n data
    connections idle in the hub's pool, or (protocol v2) a mux connection
    to open a stream on."""
    p = hub.proxy(identity)
    return p.get("pool", 0) >= n or p.get("mux", 0) >= 1


def new_fingerprint():
    return str(uuid.uuid4())


# ------------------------------------------------------------ environment

class TunnelEnv:
    """What one test (or module) starts: hubs, nodes, upstreams. close()
    stops nodes first, then hubs, then the rest, and returns the problems
    (exit codes, sanitizer reports) the test must fail on."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.nodes = []
        self.hubs = []
        self.others = []
        self._n = 0

    def _dir(self, name):
        self._n += 1
        d = os.path.join(self.workdir, "%s%d" % (name, self._n))
        os.makedirs(d, exist_ok=True)
        return d

    def hub(self, **kw):
        if TUNNEL_TLS:
            kw.setdefault("tls", True)
        h = Hub(self.workdir, name="hub%d" % len(self.hubs), **kw)
        self.hubs.append(h)
        return h

    def node(self, hub, upstream, **kw):
        kw.setdefault("name", "node%d" % len(self.nodes))
        n = Node(self.workdir, hub, upstream, **kw)
        self.nodes.append(n)
        return n

    def nginx(self, files=None):
        from peers import HttpServer
        s = HttpServer(self._dir("nginx"), files=files)
        s.url = "http://127.0.0.1:%d" % s.port
        self.others.append(s)
        return s

    def hash_upstream(self, name="upstream"):
        u = HashUpstream(name)
        self.others.append(u)
        return u

    def ws_echo(self):
        u = WsEcho()
        self.others.append(u)
        return u

    def close(self):
        problems = []
        for r in self.nodes + self.hubs:
            problems.extend(r.problems())
        for o in self.others:
            try:
                o.stop()
            except Exception as e:  # a peer that fails to stop is no bug
                problems.append("stopping %r: %r" % (o, e))
        return problems


def curl(*args, timeout=60):
    """Runs curl -sS with args; returns the CompletedProcess (text)."""
    import subprocess
    return subprocess.run(["curl", "-sS"] + [str(a) for a in args],
                          capture_output=True, timeout=scaled(timeout),
                          text=True, errors="replace",
                          stdin=subprocess.DEVNULL)


def curl_via(hub, identity, path="/", *args, timeout=60):
    """curl to http://<identity>.<domain>:<port><path> resolved to
    loopback."""
    host = "%s.%s" % (identity, hub.domain)
    return curl("--resolve", "%s:%d:127.0.0.1" % (host, hub.port),
                "http://%s:%d%s" % (host, hub.port, path), *args,
                timeout=timeout)


# ------------------------------------------------------ network namespaces

def stop_clean(proc, timeout=15):
    """SIGTERM to a hub or node Proc started by hand (in a namespace, say):
    the problems the test must fail on, as for Role.problems(): no exit
    within timeout, an exit code other than 0, a sanitizer report."""
    out = []
    if not proc.alive():
        out.append("%s died during the test with code %s"
                   % (proc.name, proc.popen.returncode))
    else:
        proc.signal(signal.SIGTERM)
        rc = proc.wait(timeout)
        if rc is None:
            out.append("%s did not exit within %.0fs of SIGTERM"
                       % (proc.name, scaled(timeout)))
        elif rc != 0:
            out.append("%s exited with code %d after SIGTERM"
                       % (proc.name, rc))
    proc.kill_group()
    report = sanitizer_report(proc.stderr())
    if report:
        out.append("sanitizer report in %s's stderr:\n%s"
                   % (proc.name, report))
    return out


class NsTunnel:
    """A hub (127.0.0.1:18080, API :18082) and bridge nodes inside a
    netns.Netns: a fresh namespace has every port free. `node()` starts a
    bridge and returns (proc, identity); `get()` runs curl in the
    namespace; `close()` stops them all with SIGTERM and returns the
    problems (exit codes, sanitizer reports)."""

    HUB_PORT = 18080

    def __init__(self, ns, tmp_path, name="nshub"):
        self.ns = ns
        self.tmp_path = str(tmp_path)
        self.procs = []
        self.hub = self._start(name, sluice_bin(), "boot", "up", "--proxy",
                               "--http", "127.0.0.1:%d" % self.HUB_PORT,
                               "--api", "127.0.0.1:18082", "--state-dir",
                               os.path.join(self.tmp_path, name + "-state"))

        def ready():
            if not self.hub.alive():
                raise AssertionError("hub exited:\n" + self.hub.describe())
            return HUB_RE.search(self.hub.stdout())
        self.domain = wait_for(ready, 20, what="hub listening line").group(3)
        self.url = "http://127.0.0.1:%d" % self.HUB_PORT
        self._api = 18083

    def _start(self, name, *argv):
        p = self.ns.proc(name, *argv)
        self.procs.append(p)
        return p

    def node(self, name, upstream, *args):
        self._api += 1
        p = self._start(name, sluice_bin(), "boot", "up", "--bridge", "--hub",
                        self.url, "--upstream", upstream, "--state-dir",
                        os.path.join(self.tmp_path, name + "-state"),
                        "--api", "127.0.0.1:%d" % self._api, *args)

        def ready():
            if not p.alive():
                raise AssertionError("node exited:\n" + p.describe())
            return BRIDGE_RE.search(p.stdout())
        m = wait_for(ready, 20, what="%s's bridge line" % name)
        return p, m.group(1)

    def get(self, identity, path="/"):
        """(status, body) of curl in the namespace through the hub."""
        host = "%s.%s:%d" % (identity, self.domain, self.HUB_PORT)
        cp = self.ns.run("curl", "-sS", "-m", "%d" % int(scaled(15)),
                         "--resolve", "%s:127.0.0.1" % host, "-w",
                         "\n%{http_code}", "http://%s%s" % (host, path),
                         timeout=30)
        body, _, code = cp.stdout.rpartition("\n")
        assert code.isdigit() and code != "000", cp.stderr
        return int(code), body

    def close(self):
        problems = []
        for p in reversed(self.procs):
            problems.extend(stop_clean(p))
        return problems


# ---------------------------------------------- another process's sockets

def _pidfd_getfd(pid, fd):
    """A duplicate of process pid's fd (pidfd_getfd(2), Linux 5.6; needs
    ptrace rights over pid, which a parent running as root has)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        nr = {"x86_64": 438, "aarch64": 438}.get(os.uname().machine, 438)
        out = libc.syscall(nr, pidfd, fd, 0)
        if out < 0:
            e = ctypes.get_errno()
            raise OSError(e, "pidfd_getfd: " + os.strerror(e))
        return out
    finally:
        os.close(pidfd)


def tcp_sockets(pid):
    """[(local (ip, port), peer (ip, port), {option: value})] of every
    connected TCP socket of pid, the options read with getsockopt on a
    duplicate of its descriptor: SO_KEEPALIVE, TCP_KEEPIDLE,
    TCP_KEEPINTVL, TCP_KEEPCNT (seconds, count) and TCP_USER_TIMEOUT
    (ms)."""
    out = []
    fddir = "/proc/%d/fd" % pid
    for name in os.listdir(fddir):
        try:
            if not os.readlink(os.path.join(fddir, name)).startswith(
                    "socket:"):
                continue
            dup = _pidfd_getfd(pid, int(name))
        except (FileNotFoundError, ProcessLookupError):
            continue
        s = socket.socket(fileno=dup)
        try:
            if s.type != socket.SOCK_STREAM or s.family not in (
                    socket.AF_INET, socket.AF_INET6):
                continue
            try:
                peer = s.getpeername()[:2]
            except OSError:
                continue  # a listener
            opts = {
                "keepalive": s.getsockopt(socket.SOL_SOCKET,
                                          socket.SO_KEEPALIVE),
                "keepidle": s.getsockopt(socket.IPPROTO_TCP,
                                         socket.TCP_KEEPIDLE),
                "keepintvl": s.getsockopt(socket.IPPROTO_TCP,
                                          socket.TCP_KEEPINTVL),
                "keepcnt": s.getsockopt(socket.IPPROTO_TCP,
                                        socket.TCP_KEEPCNT),
                "user_timeout": s.getsockopt(socket.IPPROTO_TCP,
                                             socket.TCP_USER_TIMEOUT),
            }
            out.append((s.getsockname()[:2], peer, opts))
        finally:
            s.close()
    return out
