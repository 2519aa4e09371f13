"""Issue 8, items 6 and 9: attacks on allocations and the smaller holes.

Each test performs the attack against the real hub or node (raw sockets,
python3-websockets, a small fake hub speaking the control protocol) and
checks what sluice must do instead:
- allocations without a gateway token are rate-limited per source (/64
  for IPv6) and globally, answered 429 `Too many allocations`;
- a hub listening beyond loopback without a gateway token warns at start;
- an allocation without a bridge for --allocation-idle-expiry is removed,
  its saved credentials then get 401;
- a hub cannot overwrite the credentials a node dialled with;
- control characters from a hub reach the node's text log escaped;
- an unknown username costs the same scrypt as a wrong password;
- tokens come from a file or the environment, not only argv;
- an existing hub.db (and -wal, -shm) is made 0600;
- `10MB` means 10,240,000 bytes on every CLI flag that takes a size;
- pool connections refused by the hub back off one step per round.
"""

import base64
import hashlib
import json
import os
import re
import socket
import stat
import statistics
import subprocess
import threading
import time

import pytest

from helpers import free_port, scaled, sluice_bin, wait_for
from netns import Netns
from tunnel_x_support import (Hub, basic, control_attempt, read_head,
                              upgrade_request)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def control_full(port, username=None, password=None, source=None,
                 host="127.0.0.1", query="", timeout=10):
    """One control upgrade: (status, head text, first bytes after it)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(scaled(timeout))
    try:
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        h = {}
        if username is not None:
            h["Authorization"] = basic(username, password)
        s.sendall(upgrade_request("/_sluice/v1/control" + query,
                                  "%s:%d" % (host, port), h))
        st, head, rest = read_head(s, timeout)
        if st is not None and st != 101:
            s.settimeout(scaled(2))
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    rest += b
            except OSError:
                pass
        return st, head, rest
    finally:
        s.close()


def ws_frames(buf):
    """Unmasked server frames in buf: list of (opcode, payload)."""
    out = []
    while len(buf) >= 2:
        op, n = buf[0] & 0x0F, buf[1] & 0x7F
        off = 2
        if n == 126:
            n, off = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            n, off = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < off + n:
            break
        out.append((op, buf[off:off + n]))
        buf = buf[off + n:]
    return out


def allocate(port, source=None):
    """A credential-less control upgrade that says hello and reads the
    welcome: returns (welcome dict, socket kept open)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(30))
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(upgrade_request("/_sluice/v1/control", "127.0.0.1:%d" % port))
    st, head, rest = read_head(s, 30)
    assert st == 101, head
    hello = json.dumps({"type": "hello", "version": 1,
                        "capabilities": ["http"], "pool": 0}).encode()
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(hello)]) + mask +
              bytes(b ^ mask[i % 4] for i, b in enumerate(hello)))
    buf = rest
    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:
        for op, p in ws_frames(buf):
            if op == 1:
                m = json.loads(p)
                if m.get("type") == "welcome":
                    return m, s
        b = s.recv(65536)
        if not b:
            break
        buf += b
    s.close()
    raise AssertionError("no welcome")


# ------------------------------------------------------- item 6: allocations

def test_allocations_rate_limited_per_source(env):
    hub = env.hub()
    statuses = [control_full(hub.port, source="127.0.0.5")
                for _ in range(12)]
    codes = [s[0] for s in statuses]
    assert 429 in codes, codes
    first = codes.index(429)
    assert first >= 1 and all(c == 429 for c in codes[first:]), codes
    st, head, body = statuses[first]
    assert b"Too many allocations" in body, (head, body)
    assert re.search(r"(?im)^retry-after: \d+", head), head
    # Another source is not affected.
    assert control_full(hub.port, source="127.0.0.6")[0] == 101
    assert "too many allocations from 127.0.0.5" in hub.proc.stderr()


def test_allocations_rate_limited_globally(env):
    hub = env.hub(args=["--allocation-rate-global", "4"])
    codes = [control_full(hub.port, source="127.0.0.%d" % (20 + i))[0]
             for i in range(7)]
    assert codes[:4] == [101] * 4 and codes[4:] == [429] * 3, codes
    assert "too many allocations in total" in hub.proc.stderr()


def test_allocation_rate_keys_ipv6_on_64(tmp_path):
    """Two sources of one /64 share a budget; another /64 has its own."""
    with Netns(tmp_path) as ns:
        for a in ("2001:db8:1::1/64", "2001:db8:1::2/64", "2001:db8:2::1/64"):
            ns.run("ip", "addr", "add", a, "dev", "lo", "nodad", check=True)
        port = 18080
        api = 18081
        sd = os.path.join(str(tmp_path), "hub6")
        p = ns.proc("hub6", sluice_bin(), "boot", "up", "--proxy", "--http",
                    "[2001:db8:1::1]:%d" % port, "--api",
                    "127.0.0.1:%d" % api, "--state-dir", sd,
                    "--allocation-rate", "2")
        try:
            wait_for(lambda: "hub listening" in p.stdout(), 20,
                     what="hub6 listening")
            script = r'''
import socket, sys, base64, os
def one(src):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(20)
    s.bind((src, 0))
    s.connect(("2001:db8:1::1", %d))
    k = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /_sluice/v1/control HTTP/1.1\r\nHost: x\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %%s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               %% k).encode())
    b = b""
    while b"\r\n" not in b:
        c = s.recv(100)
        if not c: break
        b += c
    s.close()
    return b.split(b" ")[1].decode() if b else "closed"
print(" ".join(one(a) for a in sys.argv[1:]))
''' % port
            cp = ns.run("/usr/bin/python3", "-c", script, "2001:db8:1::1",
                        "2001:db8:1::2", "2001:db8:1::1", "2001:db8:2::1",
                        timeout=120)
            assert cp.returncode == 0, cp.stderr
            assert cp.stdout.split() == ["101", "101", "429", "101"], \
                (cp.stdout, p.stderr())
            assert "2001:db8:1::/64" in p.stderr()
        finally:
            p.signal(15)
            p.wait(scaled(15))


def test_warns_when_public_without_gateway_token(tmp_path):
    with Netns(tmp_path) as ns:
        ns.add_address("198.51.100.1/24")
        sd = os.path.join(str(tmp_path), "hubw")
        p = ns.proc("hubw", sluice_bin(), "boot", "up", "--proxy", "--http",
                    "198.51.100.1:18080", "--api", "127.0.0.1:18081",
                    "--state-dir", sd)
        try:
            wait_for(lambda: "hub listening" in p.stdout(), 20,
                     what="hub listening")
            err = p.stderr()
            assert re.search(r"WARN.*198\.51\.100\.1:18080.*without "
                             r"--gateway-token", err), err
        finally:
            p.signal(15)
            p.wait(scaled(15))
    # A loopback hub does not warn.
    with Netns(tmp_path) as ns:
        sd = os.path.join(str(tmp_path), "hubl")
        p = ns.proc("hubl", sluice_bin(), "boot", "up", "--proxy", "--http",
                    "127.0.0.1:18080", "--api", "127.0.0.1:18081",
                    "--state-dir", sd)
        try:
            wait_for(lambda: "hub listening" in p.stdout(), 20,
                     what="hub listening")
            assert "without --gateway-token" not in p.stderr()
        finally:
            p.signal(15)
            p.wait(scaled(15))


def test_idle_allocation_expires(env):
    hub = env.hub(args=["--allocation-idle-expiry", "3s", "--flush-ms",
                        "200"])
    idle, s1 = allocate(hub.port)
    s1.close()
    live, s2 = allocate(hub.port)
    try:
        wait_for(lambda: "hub alloc %s: expired" % idle["identity"]
                 in hub.proc.stderr(), 20, what="the idle one expired")
        st, _, body = control_full(hub.port, idle["username"],
                                   idle["password"])
        assert st == 401, body
        st, _ = hub.api("GET", "/api/proxy/%s/" % idle["identity"])
        assert st == 404
        # The one with a bridge stays.
        st, j = hub.api("GET", "/api/proxy/%s/" % live["identity"])
        assert st == 200, j
        assert "hub alloc %s: expired" % live["identity"] \
            not in hub.proc.stderr()
    finally:
        s2.close()


def test_idle_expiry_zero_means_never(env):
    hub = env.hub(args=["--allocation-idle-expiry", "0", "--flush-ms",
                        "100"])
    w, s = allocate(hub.port)
    s.close()
    # Nothing to wait on for an event that must not happen: several flush
    # periods pass, bounded, and the allocation is still there.
    deadline = time.monotonic() + scaled(2)
    while time.monotonic() < deadline:
        time.sleep(0.1)
    st, _ = hub.api("GET", "/api/proxy/%s/" % w["identity"])
    assert st == 200
    assert "expired" not in hub.proc.stderr()


# ------------------------------------------------- a hub as the node sees it

class FakeHub:
    """A hub in Python: answers control upgrades with 101 and the frames
    of `script(n)` (n: the control dial's number), and data upgrades with
    429. Records every request (path, headers, time)."""

    def __init__(self, script, hold=True):
        self.script = script
        self.hold = hold
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.conns = []
        self.stopped = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        c.settimeout(30)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                b = c.recv(4096)
                if not b:
                    c.close()
                    return
                buf += b
        except OSError:
            c.close()
            return
        head = buf.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        hdrs = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        with self.lock:
            self.requests.append((path, hdrs, time.monotonic()))
            nctl = sum(1 for r in self.requests
                       if r[0].startswith("/_sluice/v1/control"))
        if path.startswith("/_sluice/v1/data"):
            c.sendall(b"HTTP/1.1 429 Too Many Requests\r\n"
                      b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            c.close()
            return
        acc = base64.b64encode(hashlib.sha1(
            (hdrs["sec-websocket-key"] + WS_GUID).encode()).digest()).decode()
        out = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
               % acc).encode()
        for msg in self.script(nctl):
            p = json.dumps(msg).encode()
            if len(p) < 126:
                out += bytes([0x81, len(p)]) + p
            else:
                out += bytes([0x81, 126]) + len(p).to_bytes(2, "big") + p
        try:
            c.sendall(out)
        except OSError:
            pass
        if self.hold:
            self.conns.append(c)
        else:
            c.close()

    def controls(self):
        with self.lock:
            return [r for r in self.requests
                    if r[0].startswith("/_sluice/v1/control")]

    def datas(self):
        with self.lock:
            return [r for r in self.requests
                    if r[0].startswith("/_sluice/v1/data")]

    def stop(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def welcome(identity="ab1234567890", **extra):
    m = {"type": "welcome", "identity": identity,
         "url": "http://%s.localhost:1/" % identity,
         "limits": {"bridges": 0, "traffic": 0},
         "ping_interval": 15, "pairing_window": 8}
    m.update(extra)
    return m


def test_welcome_cannot_overwrite_saved_credentials(env):
    """A hub (or whoever holds its name) answers a node that dialled with
    credentials with a welcome carrying others: the node keeps its own."""
    fake = FakeHub(lambda n: [welcome(username="evil00",
                                      password="E" * 24)], hold=False)
    env.others.append(fake)
    up = "http://127.0.0.1:%d" % free_port()
    node = env.node(fake, up, creds={"username": "good00",
                                     "password": "G" * 24}, pool=0)
    wait_for(lambda: len(fake.controls()) >= 2, 20,
             what="the node's second control dial")
    auths = [r[1].get("authorization") for r in fake.controls()[:2]]
    assert auths == [basic("good00", "G" * 24)] * 2, auths
    assert "credentials" in node.proc.stderr() and \
        "ignored" in node.proc.stderr(), node.proc.stderr()


def test_welcome_credentials_taken_when_dialled_without(env):
    fake = FakeHub(lambda n: [welcome(username="fresh0",
                                      password="F" * 24)], hold=False)
    env.others.append(fake)
    up = "http://127.0.0.1:%d" % free_port()
    env.node(fake, up, pool=0)
    wait_for(lambda: len(fake.controls()) >= 2, 20,
             what="the node's second control dial")
    c = fake.controls()
    assert "authorization" not in c[0][1]
    assert c[1][1].get("authorization") == basic("fresh0", "F" * 24)


def test_hub_that_never_welcomes_is_left_after_the_head_timeout(env):
    """A hub that upgrades the control connection and then says nothing
    held the bridge for ever (a hub answering pings keeps the dead-peer
    check quiet; here pings are off): the node now leaves it after its
    head timeout (10 s), says why, and dials again with back-off."""
    fake = FakeHub(lambda n: [])
    env.others.append(fake)
    up = "http://127.0.0.1:%d" % free_port()
    node = env.node(fake, up, pool=0, wait=False,
                    args=["--ping-ms", "1800000", "--dead-ms", "3600000"])
    wait_for(lambda: len(fake.controls()) >= 2, 10 + 2 + 5,
             what="the node's second control dial")
    c = fake.controls()
    gap = c[1][2] - c[0][2]
    # the deadline, then the first back-off step (1-2 s)
    assert 10 - 0.5 <= gap <= 10 + 2 + scaled(2), gap
    wait_for(lambda: "no welcome from hub" in node.proc.stderr(), 5,
             what="the node's reason")


def test_control_characters_from_hub_are_escaped(env):
    evil = "bad\nFORGED 2026 error injected\x1b[2J\r"
    fake = FakeHub(lambda n: [welcome(),
                              {"type": "open", "fingerprint":
                               "7a0e3f5e-8e8b-4a55-9b8e-1f1f8c1a2b3c",
                               "kind": "x\nFORGED kind"},
                              {"type": "error", "message": evil,
                               "code": 400}])
    env.others.append(fake)
    up = "http://127.0.0.1:%d" % free_port()
    node = env.node(fake, up, creds={"username": "good00",
                                     "password": "G" * 24}, pool=0)
    wait_for(lambda: "hub says" in node.proc.stderr(), 20,
             what="the hub's error logged")
    wait_for(lambda: "refused" in node.proc.stderr(), 20,
             what="the odd open logged")
    err = node.proc.stderr()
    assert not re.search(r"(?m)^FORGED", err), err
    assert "\x1b" not in err and "\r" not in err.replace("\r\n", "\n")
    assert "bad\\nFORGED 2026 error injected\\x1b[2J\\r" in err, err
    assert "x\\nFORGED kind" in err, err


def test_pool_backoff_one_step_per_round(env):
    """The hub refuses every pool connection (429): with the default pool
    of 2, the rounds of dials come 1-2 s, 2-4 s, 4-8 s apart."""
    fake = FakeHub(lambda n: [welcome()])
    env.others.append(fake)
    up = "http://127.0.0.1:%d" % free_port()
    env.node(fake, up, creds={"username": "good00", "password": "G" * 24})

    def rounds():
        ts = [r[2] for r in fake.datas()]
        out = []
        for t in ts:
            if not out or t - out[-1][-1] > 0.5:
                out.append([t])
            else:
                out[-1].append(t)
        return out
    wait_for(lambda: len(rounds()) >= 4 and len(rounds()[3]) >= 2,
             1.5 * (2 + 4 + 8) + 5, what="four rounds of pool dials")
    r = rounds()
    assert all(len(x) == 2 for x in r[:4]), r
    gaps = [r[i + 1][0] - r[i][0] for i in range(3)]
    slack = 0.4
    for g, (lo, hi) in zip(gaps, ((1, 2), (2, 4), (4, 8))):
        assert lo - 0.05 <= g <= hi + slack, gaps


# ---------------------------------------------------- item 9c: auth limits

def test_unknown_username_costs_like_a_known_one(env):
    hub = env.hub()
    known = hub.create()
    times = {"known": [], "unknown": []}
    for i in range(8):
        for kind, user in (("known", known["username"]),
                           ("unknown", "zz%04d" % i)):
            t = time.monotonic()
            st, _, _ = control_full(hub.port, user, "wrong-password-%d" % i,
                                    source="127.0.%d.%d" % (
                                        1 + (kind == "known"), 10 + i))
            times[kind].append(time.monotonic() - t)
            assert st == 401, (kind, st)
    mk = statistics.median(times["known"])
    mu = statistics.median(times["unknown"])
    assert mu * 3 >= mk and mk * 3 >= mu, (mk, mu, times)


def test_auth_failures_keyed_on_ipv6_64(tmp_path):
    """Wrong passwords from two addresses of one /64 count together."""
    with Netns(tmp_path) as ns:
        for a in ("2001:db8:1::1/64", "2001:db8:1::2/64", "2001:db8:2::1/64"):
            ns.run("ip", "addr", "add", a, "dev", "lo", "nodad", check=True)
        sd = os.path.join(str(tmp_path), "hubauth")
        p = ns.proc("hubauth", sluice_bin(), "boot", "up", "--proxy",
                    "--http", "[2001:db8:1::1]:18080", "--api",
                    "127.0.0.1:18081", "--state-dir", sd)
        try:
            wait_for(lambda: "hub listening" in p.stdout(), 20,
                     what="hub listening")
            script = r'''
import socket, sys, base64, os
def one(src):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(30)
    s.bind((src, 0))
    s.connect(("2001:db8:1::1", 18080))
    k = base64.b64encode(os.urandom(16)).decode()
    a = base64.b64encode(b"nobody:wrong").decode()
    s.sendall(("GET /_sluice/v1/control HTTP/1.1\r\nHost: x\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Authorization: Basic %s\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (a, k)).encode())
    b = b""
    while b"\r\n" not in b:
        c = s.recv(100)
        if not c: break
        b += c
    s.close()
    return b.split(b" ")[1].decode() if b else "closed"
srcs = ["2001:db8:1::1", "2001:db8:1::2"] * 3 + ["2001:db8:1::2",
        "2001:db8:2::1"]
print(" ".join(one(a) for a in srcs))
'''
            cp = ns.run("/usr/bin/python3", "-c", script, timeout=120)
            assert cp.returncode == 0, cp.stderr
            # 5 failures of one username from the /64 block it (the 6th
            # is already refused); the other /64 is not blocked.
            assert cp.stdout.split() == ["401"] * 5 + ["429", "429",
                                                       "401"], \
                (cp.stdout, p.stderr())
        finally:
            p.signal(15)
            p.wait(scaled(15))


# ------------------------------------------------- item 9d: secrets in argv

def test_gateway_token_from_environment(env):
    hub = env.hub(env={**os.environ, "SLUICE_GATEWAY_TOKEN": "s3cret-env"})
    assert control_attempt(hub) == 401
    st, _, _ = control_full(hub.port, query="?token=s3cret-env")
    assert st == 101
    with open("/proc/%d/cmdline" % hub.pid, "rb") as f:
        assert b"s3cret" not in f.read()


def test_gateway_and_api_token_from_files(env, tmp_path):
    gt = tmp_path / "gateway.token"
    gt.write_text("s3cret-file\n")
    at = tmp_path / "api.token"
    at.write_text("api-s3cret\n")
    hub = env.hub(args=["--gateway-token-file", str(gt),
                        "--api-token-file", str(at),
                        "--api-require-token"])
    assert control_attempt(hub) == 401
    assert control_full(hub.port, query="?token=s3cret-file")[0] == 101
    st, _ = hub.api("GET", "/api/proxy/")
    assert st == 401
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", hub.api_port,
                                   timeout=scaled(10))
    c.request("GET", "/api/proxy/",
              headers={"Authorization": "Bearer api-s3cret"})
    assert c.getresponse().status == 200
    c.close()
    with open("/proc/%d/cmdline" % hub.pid, "rb") as f:
        assert b"s3cret" not in f.read()


def test_token_file_errors_are_clear(tmp_path):
    cp = subprocess.run([sluice_bin(), "boot", "up", "--proxy",
                         "--state-dir", str(tmp_path / "s"),
                         "--gateway-token-file", str(tmp_path / "missing")],
                        capture_output=True, text=True, timeout=scaled(20))
    assert cp.returncode == 2, cp
    assert "--gateway-token-file" in cp.stderr and "missing" in cp.stderr
    cp = subprocess.run([sluice_bin(), "boot", "up", "--proxy", "--help"],
                        capture_output=True, text=True, timeout=scaled(20))
    out = cp.stdout + cp.stderr
    for w in ("--gateway-token-file", "SLUICE_GATEWAY_TOKEN",
              "--api-token-file", "SLUICE_API_TOKEN", "ps"):
        assert w in out, w


# ------------------------------------------------------ item 9e: hub.db mode

def test_existing_hub_db_made_private(env, tmp_path):
    sd = str(tmp_path / "state")
    hub = env.hub(state_dir=sd)
    hub.create()
    db = os.path.join(sd, "hub.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.chmod(db + suffix, 0o644)
    assert hub.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        if not os.path.exists(db + suffix):
            open(db + suffix, "ab").close()
        os.chmod(db + suffix, 0o644)
    hub2 = env.hub(state_dir=sd)
    hub2.create()
    for suffix in ("", "-wal", "-shm"):
        p = db + suffix
        if os.path.exists(p):
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


# ------------------------------------------------------- item 9f: sizes

def cli(*argv):
    cp = subprocess.run([sluice_bin()] + list(argv), capture_output=True,
                        text=True, timeout=scaled(30))
    return cp.returncode, cp.stdout, cp.stderr


def test_size_units_follow_design(env):
    hub = env.hub(args=["--limit-traffic", "10MB"])
    w, s = allocate(hub.port)
    s.close()
    assert w["limits"]["traffic"] == 10240000, w
    api = "127.0.0.1:%d" % hub.api_port
    for text, want in (("10MB", 10240000), ("1MiB", 1048576),
                       ("2GB", 2048000000), ("1.5kB", 1536),
                       ("100", 100)):
        rc, out, err = cli("proxy", "create", "--json", "--api", api,
                           "--traffic", text)
        assert rc == 0, err
        assert json.loads(out)["limits"]["traffic"] == want, (text, out)
    rc, out, err = cli("proxy", "create", "--api", api, "--traffic", "10XB")
    assert rc == 2 and "10XB" in err
    rc, out, err = cli("boot", "up", "--proxy", "--help")
    text = out + err
    assert "10,240,000" in text and "MiB" in text and "GB" in text, text
    rc, out, err = cli("proxy", "--help")
    text = out + err
    assert "10,240,000" in text and "MiB" in text, text
