"""Plans and licences (issue 13): grants signed with keys of `sluice grant
keygen` and checked by openssl, the free plan (one bridge, 10,240,000
bytes), `Bridge not allowed` said by the node and no tight retry loop,
expired, forged, tampered and misdirected grants refused with their
reason, a grant that expires downgrading its allocation at once, a
password rotated during a long download, and a 10 Mbit/s bandwidth cap
measured with 1 and 8 connections both ways.

SLUICE_TEST_ROTATE_MB (default 200) sizes the download the rotation runs
under."""

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import time

import pytest

from helpers import scaled, sluice_bin, wait_for
from streams_support import free_range, range_arg, stream_node
from tunnel_x_support import (basic, big_file, curl_via, http_get,
                              read_head, upgrade_request)

FREE_TRAFFIC = 10240000
BUFFER = 64 * 1024
RATE = 1250000  # 10 Mbit/s
ROTATE_MB = int(os.environ.get("SLUICE_TEST_ROTATE_MB", "200") or "200")


def run(*args, check=True, timeout=30):
    p = subprocess.run([sluice_bin()] + [str(a) for a in args],
                       capture_output=True, text=True, errors="replace",
                       timeout=scaled(timeout), stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def split(token):
    a, b = token.split(".")
    return b64url_decode(a), b64url_decode(b)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs of `sluice grant keygen`: the hub's and a stranger's."""
    d = tmp_path_factory.mktemp("grant-keys")
    out = {}
    for name in ("hub", "other"):
        kd = os.path.join(str(d), name)
        run("grant", "keygen", "--out", kd)
        out[name] = kd
    return out


def sign(keydir, *args):
    return run("grant", "sign", "--key", os.path.join(keydir, "grant.key"),
               *args).stdout.strip()


def grant_hub(env, keys, *args):
    return env.hub(args=["--grant-key", os.path.join(keys["hub"],
                                                     "grant.pub")]
                   + list(args))


def control(hub, grant=None, creds=None):
    """One control upgrade: (status, JSON body or None)."""
    s = socket.create_connection(("127.0.0.1", hub.port), timeout=scaled(10))
    try:
        h = {}
        if creds is not None:
            h["Authorization"] = basic(creds["username"], creds["password"])
        if grant is not None:
            h["Sluice-Grant"] = grant
        s.sendall(upgrade_request("/_sluice/v1/control",
                                  "127.0.0.1:%d" % hub.port, h))
        st, head, rest = read_head(s)
        m = re.search(r"(?im)^content-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(rest) < n:
            b = s.recv(4096)
            if not b:
                break
            rest += b
        try:
            return st, json.loads(rest) if n else None
        except ValueError:
            return st, rest
    finally:
        s.close()


def node_creds(node):
    with open(os.path.join(node.state_dir, "bridges.json")) as f:
        b = json.load(f)["bridges"][0]
    return {"username": b["username"], "password": b["password"],
            "identity": b["identity"]}


# ------------------------------------------------------------ keys, tokens

def test_keys_and_tokens_cross_checked_with_openssl(keys, tmp_path):
    d = keys["hub"]
    key, pub = os.path.join(d, "grant.key"), os.path.join(d, "grant.pub")
    assert os.stat(key).st_mode & 0o777 == 0o600
    # Both files are what openssl reads, and the public half matches.
    derived = subprocess.run(["openssl", "pkey", "-in", key, "-pubout"],
                             capture_output=True, text=True, check=True)
    with open(pub) as f:
        assert derived.stdout == f.read()
    subprocess.run(["openssl", "pkey", "-pubin", "-in", pub, "-noout"],
                   check=True)
    assert "ED25519" in subprocess.run(
        ["openssl", "pkey", "-in", key, "-noout", "-text"],
        capture_output=True, text=True, check=True).stdout

    token = sign(d, "--features", "bridge,tcp,udp", "--bridges", "3",
                 "--traffic", "50GB", "--rate", "100Mbit", "--expires",
                 "2027-12-31", "--identity", "ab1234567890")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    payload, sig = split(token)
    assert json.loads(payload) == {
        "v": 1, "features": ["bridge", "tcp", "udp"], "bridges": 3,
        "traffic": 51200000000, "rate": 12500000,
        "expires": "2027-12-31T23:59:59Z", "identity": "ab1234567890"}
    # Plain Ed25519 over exactly the payload bytes.
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig").write_bytes(sig)
    v = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                        pub, "-rawin", "-in", str(tmp_path / "payload"),
                        "-sigfile", str(tmp_path / "sig")],
                       capture_output=True, text=True)
    assert v.returncode == 0 and "Signature Verified Successfully" in \
        v.stdout, (v.stdout, v.stderr)

    # The other way: openssl signs, sluice checks.
    mine = b'{"v":1,"features":["bridge"],"subject":"made by openssl"}'
    (tmp_path / "p2").write_bytes(mine)
    subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", key, "-rawin",
                    "-in", str(tmp_path / "p2"), "-out",
                    str(tmp_path / "s2")], check=True)
    t2 = b64url(mine) + "." + b64url((tmp_path / "s2").read_bytes())
    shown = run("grant", "show", t2, "--key", pub)
    assert "subject   made by openssl" in shown.stdout
    assert "status    valid" in shown.stdout
    # Without the key: what it says, the signature unchecked.
    shown = run("grant", "show", t2)
    assert "signature not checked" in shown.stdout
    # One changed signature byte: invalid, exit status 1.
    bad = bytearray((tmp_path / "s2").read_bytes())
    bad[10] ^= 1
    t3 = b64url(mine) + "." + b64url(bytes(bad))
    shown = run("grant", "show", t3, "--key", pub, check=False)
    assert shown.returncode == 1
    assert "Grant signature invalid" in shown.stdout
    # Another key's signature: invalid too.
    shown = run("grant", "show", token, "--key",
                os.path.join(keys["other"], "grant.pub"), check=False)
    assert shown.returncode == 1 and "INVALID" in shown.stdout
    # An expired grant says so (and @FILE is read).
    old = sign(d, "--expires", "2020-01-01")
    (tmp_path / "old.tok").write_text(old + "\n")
    shown = run("grant", "show", "@" + str(tmp_path / "old.tok"), "--key",
                pub, check=False)
    assert shown.returncode == 1 and "Grant expired" in shown.stdout


# ------------------------------------------------------------ refusals

def test_grants_refused_with_their_reason(env, keys):
    hub = grant_hub(env, keys)
    alloc = hub.create()
    ident = alloc["identity"]
    d = keys["hub"]
    good = sign(d, "--identity", ident, "--bridges", "2")
    cases = [
        (sign(d, "--features", "tcp,udp"), alloc, "Bridge not allowed"),
        (sign(d, "--expires", "2020-01-01"), alloc, "Grant expired"),
        (sign(keys["other"], "--identity", ident), alloc,
         "Grant signature invalid"),
        (sign(d, "--identity", "zz1234567890"), alloc,
         "Grant for another identity"),
        # A new allocation cannot be the one a bound grant names.
        (good, None, "Grant for another identity"),
        ("not-a-grant", alloc, "Grant malformed"),
    ]
    for token, creds, why in cases:
        st, body = control(hub, token, creds)
        assert st == 403, (why, st, body)
        assert body["error"] == why and body["code"] == 403, body
        assert body["reason"], body
    # A tampered byte anywhere in the token: refused, never accepted.
    for i in range(0, len(good), max(1, len(good) // 40)):
        c = good[i]
        t = good[:i] + ("A" if c != "A" else "B") + good[i + 1:]
        st, body = control(hub, t, alloc)
        assert st == 403, (i, st, body)
        assert body["error"] in ("Grant malformed",
                                 "Grant signature invalid"), body
    # The grant for this identity opens it.
    st, _ = control(hub, good, alloc)
    assert st == 101


def test_bridge_not_allowed_said_by_the_node_without_tight_loop(env, keys):
    hub = grant_hub(env, keys)
    web = env.nginx(files={"x.txt": b"x\n"})
    token = sign(keys["hub"], "--features", "tcp")
    node = env.node(hub, web.url, args=["--grant", token], wait=False)
    wait_for(lambda: "Bridge not allowed" in node.proc.stderr(), 10,
             what="the node saying Bridge not allowed")
    err = node.proc.stderr()
    assert re.search(r"refused the control connection: Bridge not allowed "
                     r"\(403: the grant lacks the bridge feature\)", err), err
    m = re.search(r": Bridge not allowed; retrying in (\d+) ms", err)
    assert m, err
    assert int(m.group(1)) >= 30000, m.group(0)
    # A few seconds on, the hub has seen that one attempt only.
    time.sleep(scaled(3))
    refusals = hub.proc.stderr().count("Bridge not allowed (the grant "
                                       "lacks the bridge feature)")
    assert refusals == 1, hub.proc.stderr()


def test_expired_grant_said_by_the_node(env, keys):
    hub = grant_hub(env, keys)
    web = env.nginx(files={"x.txt": b"x\n"})
    token = sign(keys["hub"], "--expires", "2020-01-01")
    node = env.node(hub, web.url, args=["--grant", token], wait=False)
    wait_for(lambda: "Grant expired (403: the grant has expired)"
             in node.proc.stderr(), 10, what="the node saying Grant expired")


# ------------------------------------------------------------ the free plan

def test_free_plan_one_bridge_and_10mb(env, keys):
    hub = grant_hub(env, keys, "--limit-rate", "800Mbit")
    web = env.nginx()
    big_file(os.path.join(web.root, "big.bin"), 16)
    node = env.node(hub, web.url)
    ident = node.identity
    p = hub.proxy(ident)
    assert p["plan"] == "free", p
    assert p["limits"]["bridges"] == 1
    assert p["limits"]["traffic"] == FREE_TRAFFIC
    assert p["rate"] == 100000000  # the hub's --limit-rate
    assert p["features"] == ["bridge"]

    # A second bridge on the allocation: refused in the seed's words.
    creds = node_creds(node)
    second = env.node(hub, web.url, name="second", creds=creds, wait=False)
    wait_for(lambda: "Bridge not allowed" in second.proc.stderr(), 10,
             what="the second bridge refused")
    assert re.search(r"Bridge not allowed \(429: the free plan allows 1 "
                     r"bridge and 1 is connected\)", second.proc.stderr())
    assert hub.proxy(ident)["bridges"] == 1
    second.stop()

    # 10,240,000 bytes, then Traffic limit exceeded.
    r = curl_via(hub, ident, "/big.bin", "-o", "/dev/null", "-w",
                 "%{size_download}")
    got = int(r.stdout)
    assert got < 16 << 20, got
    assert got <= FREE_TRAFFIC + BUFFER, got

    def limited():
        j = hub.proxy(ident)
        return j if j["limited"] else None
    j = wait_for(limited, 10, what="the allocation marked limited")
    t = j["traffic"]["user"]
    assert FREE_TRAFFIC <= t["down"] + t["up"] <= FREE_TRAFFIC + BUFFER, t
    st, _, body = http_get(hub.port, hub.host(ident), "/big.bin")
    assert st == 429 and b"Traffic limit exceeded" in body, (st, body)


def test_grant_in_force_then_expired_downgrades_at_once(env, keys):
    hub = grant_hub(env, keys)
    web = env.nginx(files={"x.txt": b"x\n"})
    token = sign(keys["hub"], "--bridges", "2", "--traffic", "1GB",
                 "--rate", "40Mbit", "--expires", "8s", "--subject", "acme")
    t0 = time.time()
    node = env.node(hub, web.url, args=["--grant", token])
    ident = node.identity
    p = hub.proxy(ident)
    assert p["plan"] == "grant", p
    assert p["grant"]["subject"] == "acme"
    assert p["limits"] == {"bridges": 2, "traffic": 1024000000}, p
    assert p["rate"] == 5000000
    # The grant is the allocation's: a second bridge without one joins.
    second = env.node(hub, web.url, name="second", creds=node_creds(node))
    assert second.identity == ident
    wait_for(lambda: hub.proxy(ident)["bridges"] == 2, 10,
             what="two bridges under the grant")
    expires = json.loads(split(token)[0])["expires"]
    exp = time.mktime(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")) - \
        time.timezone
    assert exp - t0 < 10

    def downgraded():
        j = hub.proxy(ident)
        return j if j["plan"] == "free" else None
    j = wait_for(downgraded, 15, interval=0.05, what="the free plan")
    assert time.time() - exp < 2.0, time.time() - exp
    assert j["limits"]["bridges"] == 1 and j["rate"] == 0
    wait_for(lambda: hub.proxy(ident)["bridges"] == 1, 5,
             what="the bridge over the free plan closed")
    assert "its grant expired; downgraded at once" in hub.proc.stderr()


# ------------------------------------------------------------ rotation

def test_rotation_during_a_long_download(env, tmp_path):
    hub = env.hub(args=["--rotate-grace-ms", str(int(scaled(4) * 1000))])
    web = env.nginx()
    digest = big_file(os.path.join(web.root, "big.bin"), ROTATE_MB)
    alloc = hub.create()
    ident = alloc["identity"]
    node = env.node(hub, web.url, creds=alloc)
    api = ["--api", "127.0.0.1:%d" % hub.api_port]
    # Slow enough to outlast the rotation and its grace.
    rate = max(ROTATE_MB * 1024 * 1024 // 12, 1 << 20)
    out = tmp_path / "big.out"
    host = "%s.%s" % (ident, hub.domain)
    dl = subprocess.Popen(["curl", "-sS", "--limit-rate", str(rate),
                           "--resolve", "%s:%d:127.0.0.1" % (host, hub.port),
                           "-o", str(out), "-w", "%{http_code}",
                           "http://%s:%d/big.bin" % (host, hub.port)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 1 << 20, 20,
                 what="the download under way")
        r = json.loads(run("proxy", "rotate", ident, "--json", *api).stdout)
        new = r["password"]
        assert new != alloc["password"] and len(new) == 24
        assert r["old_password_until"] >= r["rotated_at"]
        listed = hub.proxy(ident)
        assert listed["rotated_at"] is not None
        # The old password opens a control connection in its grace.
        assert control(hub, creds=alloc)[0] == 101
        run("bridge", "update", ident, "--password", new, "--api",
            "127.0.0.1:%d" % node.api_port)
        # After the grace: the old password gets 401, the new one opens.
        time.sleep(scaled(4) + 0.5)
        assert control(hub, creds=alloc)[0] == 401
        assert control(hub, creds={"username": alloc["username"],
                                   "password": new})[0] == 101
        assert dl.poll() is None, "the download ended before the grace"
        so, se = dl.communicate(timeout=scaled(120))
    finally:
        if dl.poll() is None:
            dl.kill()
            dl.wait()
    assert dl.returncode == 0 and so == "200", (dl.returncode, so, se)
    assert out.stat().st_size == ROTATE_MB << 20
    h = hashlib.sha256()
    with open(out, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    assert h.hexdigest() == digest
    # The bridge came back with its new password and serves users.
    wait_for(lambda: hub.proxy(ident)["bridges"] == 1, 20,
             what="the bridge back with the new password")
    wait_for(lambda: curl_via(hub, ident, "/big.bin", "-o", "/dev/null",
                              "-r", "0-99", "-w", "%{http_code}").stdout
             == "206", 20, what="a request through the bridge")
    rows = run("proxy", "list", *api).stdout
    # (ROTATED is followed by the PORTS and CERT columns)
    assert re.search(r"%s .* (just now|\d+s ago)(\s|$)" % ident, rows,
                     re.M), rows


# ------------------------------------------------------------ rate

WINDOW = 5.0


def _parallel_curls(argvs, window):
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
             for a in argvs]
    outs = []
    for p in procs:
        so, _ = p.communicate(timeout=scaled(window + 30))
        outs.append(so)
    return outs


def _down(hub, ident, n):
    host = "%s.%s" % (ident, hub.domain)
    argv = ["curl", "-s", "--max-time", str(WINDOW), "--resolve",
            "%s:%d:127.0.0.1" % (host, hub.port), "-o", "/dev/null", "-w",
            "%{size_download}", "http://%s:%d/big.bin" % (host, hub.port)]
    return [int(o) for o in _parallel_curls([argv] * n, WINDOW)]


def _up(hub, ident, n, path):
    """n uploads for the window; what the hub moved is read from its
    counters once they run (a second in), to the window's end: curl's own
    figure counts what waits in socket buffers."""
    host = "%s.%s" % (ident, hub.domain)
    argv = ["curl", "-s", "--max-time", str(WINDOW), "--resolve",
            "%s:%d:127.0.0.1" % (host, hub.port), "-o", "/dev/null",
            "-H", "Expect:", "--data-binary", "@" + path,
            "http://%s:%d/up" % (host, hub.port)]
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(n)]
    time.sleep(1.0)
    before = hub.proxy(ident)["traffic"]["user"]["up"]
    t0 = time.time()
    time.sleep(WINDOW - 1.3)
    moved = hub.proxy(ident)["traffic"]["user"]["up"] - before
    elapsed = time.time() - t0
    for p in procs:
        p.wait(timeout=scaled(30))
    return moved / elapsed


def _within(rate, what):
    print("%s: %.0f B/s (%.1f%% of the cap)" % (what, rate,
                                                100.0 * rate / RATE))
    assert 0.9 * RATE <= rate <= 1.1 * RATE, "%s: %.0f B/s against %d" % (
        what, rate, RATE)


def test_rate_10mbit_both_ways_1_and_8_connections(env, tmp_path):
    hub = env.hub(args=["--flush-ms", "1000"])
    web = env.nginx()
    big_file(os.path.join(web.root, "big.bin"), 32)
    sink = env.hash_upstream("sink")
    up_file = str(tmp_path / "up.bin")
    big_file(up_file, 32)
    st, up = hub.api("POST", "/api/proxy/", {"rate": RATE})
    assert st == 201, up
    # The same through the CLI, as an operator does.
    down = json.loads(run("proxy", "create", "--rate", "10Mbit", "--json",
                          "--api", "127.0.0.1:%d" % hub.api_port).stdout)
    assert down["rate"] == RATE and down["plan"] == "allocation"
    env.node(hub, web.url, creds=down, name="web")
    env.node(hub, sink.url, creds=up, name="sink")

    one = _down(hub, down["identity"], 1)
    _within(one[0] / WINDOW, "download, 1 connection")
    eight = _down(hub, down["identity"], 8)
    _within(sum(eight) / WINDOW, "download, 8 connections")
    # Fair: every connection had its share.
    mean = sum(eight) / 8
    assert min(eight) > 0.5 * mean and max(eight) < 1.5 * mean, eight
    # The live bandwidth the API shows stays at the cap.
    bw = hub.proxy(down["identity"])["bandwidth"]["down"]
    assert bw <= RATE * 1.07, bw

    _within(_up(hub, up["identity"], 1, up_file), "upload, 1 connection")
    _within(_up(hub, up["identity"], 8, up_file), "upload, 8 connections")
    assert hub.proxy(up["identity"])["bandwidth"]["up"] <= RATE * 1.07


def handler_source(conn, rec):
    """Sends bytes until the peer goes."""
    chunk = b"x" * 65536
    try:
        while True:
            conn.sendall(chunk)
    except OSError:
        pass


def test_rate_applies_to_tcp_stream_users(env, tcp_upstream):
    """The hub's --limit-rate caps a tcp:// bridge's users as it caps HTTP:
    a public TCP port's user reads at the cap."""
    hub = env.hub(args=["--limit-rate", "10Mbit"],
                  stream_ports=range_arg(free_range(4)))
    src = tcp_upstream(handler_source)
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % src.port)
    assert hub.proxy(b.identity)["rate"] == RATE
    s = socket.create_connection(("127.0.0.1", b.port), timeout=scaled(10))
    try:
        s.settimeout(1.0)
        n, t_start = 0, None
        deadline = time.monotonic() + 1.0 + WINDOW
        while time.monotonic() < deadline:
            try:
                got = len(s.recv(262144))
            except socket.timeout:
                continue
            assert got, "the stream ended"
            if t_start is None and time.monotonic() > deadline - WINDOW:
                t_start = time.monotonic()
            elif t_start is not None:
                n += got
        rate = n / (time.monotonic() - t_start)
    finally:
        s.close()
    _within(rate, "TCP stream port, towards the user")


def test_rate_from_a_new_grant_paces_a_live_tcp_stream(env, keys,
                                                      tcp_upstream):
    """A public TCP port's pair whose bytes move on the relay (zero-copy:
    the allocation had no cap when it started) is paced as soon as a cap
    comes: here the bridge presents a grant with a rate on a new control
    connection, and the user's stream already running falls to it."""
    hub = env.hub(args=["--grant-key",
                        os.path.join(keys["hub"], "grant.pub")],
                  stream_ports=range_arg(free_range(4)))
    src = tcp_upstream(handler_source)
    fast = sign(keys["hub"], "--features", "bridge,tcp", "--bridges", "4")
    capped = sign(keys["hub"], "--features", "bridge,tcp", "--bridges", "4",
                  "--rate", "10Mbit")
    b = stream_node(env, hub, "tcp://127.0.0.1:%d" % src.port,
                    args=["--grant", fast])
    assert hub.proxy(b.identity)["rate"] == 0
    s = socket.create_connection(("127.0.0.1", b.port), timeout=scaled(10))
    try:
        s.settimeout(1.0)
        got = 0
        t0 = time.monotonic()
        while got < 64 * RATE // 8 and time.monotonic() - t0 < 5:
            try:
                got += len(s.recv(262144))
            except socket.timeout:
                continue
        assert got >= 64 * RATE // 8, "the uncapped stream was slow"
        st, _ = control(hub, grant=capped, creds=node_creds(b.node))
        assert st == 101, st
        assert hub.proxy(b.identity)["rate"] == RATE
        n, t_start = 0, None
        deadline = time.monotonic() + 1.5 + WINDOW
        while time.monotonic() < deadline:
            try:
                k = len(s.recv(262144))
            except socket.timeout:
                continue
            assert k, "the stream ended"
            if t_start is None and time.monotonic() > deadline - WINDOW:
                t_start = time.monotonic()
            elif t_start is not None:
                n += k
        rate = n / (time.monotonic() - t_start)
    finally:
        s.close()
    _within(rate, "TCP stream port after the new grant's cap")
