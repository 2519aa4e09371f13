"""Helpers for the tests of TCP and UDP through bridges
(test_bridge_streams_*.py) and bench/tunnel-streams: a free range of
public stream ports, stream bridges (a node with a tcp:// or udp://
upstream) and what they print, small TCP and UDP clients, and a DNS
client that keeps many queries in flight from many source ports.

A hub hands out public ports from its --stream-ports range (TCP and UDP
each their own lease); a stream bridge prints
`bridge <identity> tcp://<domain>:<port> -> tcp://127.0.0.1:<target>`.
Users reach the public port on the address of the hub's --http listener,
127.0.0.1 in these tests.
"""

import random
import re
import select
import socket
import struct
import time

from helpers import scaled, wait_for

STREAM_URL_RE = re.compile(r"^(tcp|udp)://([^:/\s]+):(\d+)$")

# A node or hub log line for a range with no port left.
NO_FREE_PORT = "no free stream port"


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
            return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _port_free(port, host="127.0.0.1"):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_range(n=8, host="127.0.0.1"):
    """(first, last) of n consecutive ports free for TCP and UDP on host
    right now, below the kernel's ephemeral range (so no outgoing
    connection of another test takes one of them meanwhile), picked at
    random so that parallel runs rarely meet."""
    lo_eph, _ = _ephemeral_range()
    top = min(lo_eph, 32768) - n
    for _ in range(500):
        base = random.randrange(20000, top)
        if all(_port_free(p, host) for p in range(base, base + n)):
            return base, base + n - 1
    raise RuntimeError("no free range of %d ports" % n)


def range_arg(rng):
    return "%d-%d" % rng


def parse_stream_url(url):
    """(scheme, domain, port) of tcp://<domain>:<port>, or None."""
    m = STREAM_URL_RE.match(url)
    if not m:
        return None
    return m.group(1), m.group(2), int(m.group(3))


class StreamBridge:
    """A node with one stream bridge, as the bridge line describes it:
    .node (the tunnel_x_support.Node), .identity, .url
    (tcp://<domain>:<port>), .scheme, .port (the public port), .target
    (what the line says after the arrow)."""

    def __init__(self, node, line):
        self.node = node
        self.identity, self.url, self.target = line
        parsed = parse_stream_url(self.url)
        assert parsed, "bridge line with no stream URL: %r" % (line,)
        self.scheme, self.domain, self.port = parsed

    def __repr__(self):
        return "StreamBridge(%s %s -> %s)" % (self.identity, self.url,
                                              self.target)


def node_log(node):
    return node.proc.stdout() + node.proc.stderr()


def stream_node(env, hub, upstream, args=(), name=None, creds=None,
                pool=None, timeout=20):
    """Starts `sluice boot up --bridge --upstream tcp://... | udp://...`
    through env (a TunnelEnv: its teardown judges the exit code and the
    sanitizer report) and waits for its bridge line. Returns a
    StreamBridge. No wait for a pool connection: a TCP user pairs through
    `open` when none is idle, and a UDP bridge need have none."""
    kw = {}
    if name is not None:
        kw["name"] = name
    node = env.node(hub, upstream, creds=creds, pool=pool, args=list(args),
                    wait=False, **kw)
    return StreamBridge(node, wait_bridge_line(node, timeout=timeout))


def wait_bridge_line(node, n=1, timeout=20):
    """The n-th bridge line of node (identity, url, target)."""
    def ready():
        b = node.bridges()
        if len(b) >= n:
            return b
        if not node.proc.alive():
            raise AssertionError("node exited:\n" + node.proc.describe())
        return None
    b = wait_for(ready, timeout, what="%d bridge line(s) of %s"
                 % (n, node.proc.name))
    node.identity = b[0][0]
    return b[n - 1]


def wait_log(node, text, timeout=20):
    """Waits until text appears in the node's (or hub's) stdout or
    stderr; returns that output."""
    def seen():
        out = node_log(node)
        return out if text in out else None
    return wait_for(seen, timeout, what="%r in %s's log"
                    % (text, node.proc.name))


def alloc_by_port(hub, kind, port):
    """The allocation of the hub's list whose <kind>_port is port."""
    st, lst = hub.api("GET", "/api/proxy/")
    assert st == 200, (st, lst)
    items = lst if isinstance(lst, list) else lst.get("proxies", lst)
    for a in items:
        if a.get(kind + "_port") == port:
            return a
    return None


# ------------------------------------------------------------------ TCP

def tcp_connect(port, source=None, timeout=5, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(timeout))
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def echo_ok(port, payload=b"ping", source=None, timeout=10):
    """True if payload comes back whole through an echo upstream."""
    with tcp_connect(port, source=source, timeout=timeout) as c:
        c.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = c.recv(65536)
            if not b:
                return False
            got += b
        return got == payload


def try_ok(fn):
    """fn() or False when it raises OSError (a refused or reset try)."""
    try:
        return fn()
    except OSError:
        return False


def close_state(sock, timeout=5):
    """How the peer ends the connection within timeout when we only
    read: ('eof' | 'reset' | 'timeout', bytes read, seconds waited)."""
    sock.settimeout(0.05)
    t0 = time.monotonic()
    data = b""
    deadline = t0 + scaled(timeout)
    while time.monotonic() < deadline:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return "reset", data, time.monotonic() - t0
        if not b:
            return "eof", data, time.monotonic() - t0
        data += b
    return "timeout", data, time.monotonic() - t0


def refusal(port, source=None, payload=None, timeout=5):
    """Connects (from source), sends payload if given, and reads until the
    peer ends the connection: (how, bytes read, seconds from the connect).
    A reset that comes while connecting or sending counts as 'reset' (a
    hub that refuses at once may reset before connect() returns)."""
    t0 = time.monotonic()
    try:
        c = tcp_connect(port, source=source, timeout=timeout)
    except (ConnectionResetError, ConnectionRefusedError):
        return "reset", b"", time.monotonic() - t0
    with c:
        if payload:
            try:
                c.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                return "reset", b"", time.monotonic() - t0
        how, data, _ = close_state(c, timeout=timeout)
        return how, data, time.monotonic() - t0


def handler_sink(conn, rec):
    """Reads until EOF or error, counting the bytes in rec['bytes'] as it
    goes (a test reads it while the connection lives)."""
    rec["bytes"] = 0
    try:
        while True:
            b = conn.recv(262144)
            if not b:
                break
            rec["bytes"] += len(b)
    except OSError as e:
        rec["error"] = repr(e)


def handler_hold(conn, rec):
    """Accepts and waits until the peer closes (idle connections)."""
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass


def handler_pp_v1_echo(conn, rec):
    """Expects a PROXY v1 line, records it in rec['pp_v1'], then echoes."""
    buf = b""
    while b"\r\n" not in buf:
        b = conn.recv(256)
        if not b:
            rec["pp_v1"] = None
            rec["raw"] = buf
            return
        buf += b
        if len(buf) > 107:  # the longest v1 line
            rec["pp_v1"] = None
            rec["raw"] = buf
            return
    line, _, rest = buf.partition(b"\r\n")
    rec["pp_v1"] = line.decode("latin-1")
    if rest:
        conn.sendall(rest)
    while True:
        b = conn.recv(65536)
        if not b:
            return
        conn.sendall(b)


# ------------------------------------------------------------------ UDP

def udp_socket(source="127.0.0.1", timeout=5):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind((source, 0))
    c.settimeout(scaled(timeout))
    return c


def udp_ask(c, port, payload, timeout=5, host="127.0.0.1"):
    """Sends payload, returns the first answer (or None on timeout)."""
    c.settimeout(scaled(timeout))
    c.sendto(payload, (host, port))
    try:
        data, _ = c.recvfrom(70000)
    except socket.timeout:
        return None
    return data


def dns_query(name, qid):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack("!HH", 1, 1)


def dns_blast(port, total, nsockets=50, name="test.local", answer=None,
              per_query_timeout=2.0, overall=60.0, host="127.0.0.1"):
    """total DNS queries from nsockets UDP sockets (each its own source
    port), each socket with one query in flight at a time, as a stub
    resolver has. A query unanswered within per_query_timeout counts as
    lost (no retry). Returns a dict: answered, lost, wrong (an answer with
    the wrong id or address), seconds, qps."""
    socks = [udp_socket(timeout=1) for _ in range(nsockets)]
    for s in socks:
        s.setblocking(False)
    want = None
    if answer:
        want = socket.inet_aton(answer)
    out = {"answered": 0, "lost": 0, "wrong": 0, "sent": 0}
    inflight = {}  # fd -> (socket, qid, sent at)
    byfd = {s.fileno(): s for s in socks}
    nextid = 1
    t0 = time.monotonic()
    deadline = t0 + scaled(overall)
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)

    def send(s):
        nonlocal nextid
        qid = nextid & 0xFFFF
        nextid += 1
        s.sendto(dns_query(name, qid), (host, port))
        inflight[s.fileno()] = (s, qid, time.monotonic())
        out["sent"] += 1

    try:
        for s in socks:
            if out["sent"] < total:
                send(s)
        while inflight and time.monotonic() < deadline:
            for fd, _ in poller.poll(50):
                s = byfd[fd]
                while True:
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        break
                    entry = inflight.get(fd)
                    if entry is None:
                        continue  # a late answer to a query given up
                    qid = struct.unpack("!H", data[:2])[0]
                    if qid != entry[1]:
                        continue  # a late answer to an earlier query
                    del inflight[fd]
                    if want is not None and want not in data[12:]:
                        out["wrong"] += 1
                    else:
                        out["answered"] += 1
                    if out["sent"] < total:
                        send(s)
                    break
            now = time.monotonic()
            for fd, (s, qid, at) in list(inflight.items()):
                if now - at > scaled(per_query_timeout):
                    del inflight[fd]
                    out["lost"] += 1
                    if out["sent"] < total:
                        send(s)
        out["lost"] += len(inflight) + (total - out["sent"])
    finally:
        for s in socks:
            s.close()
    out["seconds"] = time.monotonic() - t0
    out["qps"] = out["answered"] / out["seconds"] if out["seconds"] else 0
    return out


def rss_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def sha256_file(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)



def iperf3_json(argv, timeout=60, busy_retry_s=5.0):
    """Runs an iperf3 client (argv with -J) and returns its parsed JSON.
    iperf3's server serves one test at a time and answers "the server is
    busy" until it has seen the previous test's connections close; through
    any relay that close arrives a moment later than directly, so a busy
    answer is tried again for up to busy_retry_s. Other errors are
    returned as they are (the "error" member)."""
    import json
    import subprocess
    deadline = time.monotonic() + scaled(busy_retry_s)
    while True:
        cp = subprocess.run([str(a) for a in argv], capture_output=True,
                            timeout=scaled(timeout), stdin=subprocess.DEVNULL)
        try:
            j = json.loads(cp.stdout)
        except ValueError:
            j = {"error": "no JSON from iperf3 (exit %d): %r %r" % (
                cp.returncode, cp.stdout[-500:], cp.stderr[-500:])}
        if "busy" in str(j.get("error", "")) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        return j
