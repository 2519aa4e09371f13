"""Several hubs, one domain, one PostgreSQL (docs/scale-out.md).

Three hubs on 127.0.0.2, .3 and .4 share one database (`--store
postgres://...`, a real server started by pg_support as an unprivileged
user on loopback), one domain and one port. An allocation made on one hub
is served by all three: a bridge connects to each and curl through each
hub reaches the upstream. The first tests run one node process per hub
with the allocation's credentials; the last ones one node connected to
the three hubs:

- `--hub` repeated, no credentials: the first hub's welcome gives the
  identity, the two others are dialled with it; curl through each hub;
  one hub killed: requests through the two others never fail, the node
  shows that hub failed, and reconnects within its back-off once it is
  back; `sluice bridge list` shows each hub's state;
- one name resolving to the three addresses (a hosts file bind-mounted
  over /etc/hosts in a private mount namespace, so the system's is
  untouched; skipped where `unshare` cannot make one): the node dials
  each address with the name as Host, and follows the name when an
  address leaves it and comes back (looked up every 300 ms here);

- one hub killed: requests through the other two never fail; restarted,
  its node is back within its back-off;
- a 1 MB traffic limit spread over the three hubs cuts within the
  documented overshoot, and the store's total matches the bytes moved;
- PostgreSQL restarted under load: every request is served, /healthz says
  503 meanwhile, a new allocation gets a clear 503, and the counters add
  up afterwards (no counted byte lost);
- a new allocation's credentials open on the two other hubs at the first
  try, dialled the instant the welcome arrives (a Python bridge, then a
  node with --hub three times): no hub logs a failed login; a create the
  database refuses gets no welcome;
- a representative subset of the tunnel tests passes with every hub on a
  PostgreSQL store (SLUICE_TUNNEL_PG, read by tunnel_x_support).
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import Proc, free_port, scaled, sluice_bin, tcp_listening, \
    wait_for
from pg_support import postgres  # noqa: F401 (the session fixture)

DOMAIN = "multi.test"
IPS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
LIMIT = 1000000  # bytes
# docs/scale-out.md: another hub's bytes reach a hub's enforcement within
# its flush (1 s), its store cycle (0.5 s), this hub's store cycle (0.5 s)
# and this hub's flush (1 s).
SYNC_S = 3.0


class _Bytes(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        n = 16
        if self.path.startswith("/bytes/"):
            n = int(self.path.split("/")[2])
        body = b"x" * n
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        self.wfile.write(body)


class Upstream:
    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Bytes)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class MHub:
    """One hub of the cluster on its own loopback address."""

    def __init__(self, workdir, ip, store, name, port=None, api_port=None):
        self.ip, self.store, self.name = ip, store, name
        self.workdir = workdir
        self.port = port or free_port(ip)
        self.api_port = api_port or free_port(ip)
        self.state_dir = os.path.join(workdir, name + "-state")
        self.start()

    def start(self):
        argv = [sluice_bin(), "boot", "up", "--proxy",
                "--http", "%s:%d" % (self.ip, self.port),
                "--api", "%s:%d" % (self.ip, self.api_port),
                "--state-dir", self.state_dir, "--domain", DOMAIN,
                "--store", self.store]
        self.proc = Proc(argv, self.workdir, self.name)

        def ready():
            if not self.proc.alive():
                raise AssertionError("hub exited:\n" + self.proc.describe())
            return ("hub listening http://" in self.proc.stdout() and
                    tcp_listening(self.api_port))
        wait_for(ready, 20, what="%s listening" % self.name)

    def kill(self):
        self.proc.kill_group()
        self.proc.wait(10)

    def stop(self):
        self.proc.signal(15)
        return self.proc.wait(15)

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            "http://%s:%d%s" % (self.ip, self.api_port, path), data=data,
            method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=scaled(30)) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def get(self, identity, path="/", timeout=10):
        """(status, body) of a user request through this hub."""
        import http.client
        c = http.client.HTTPConnection(self.ip, self.port,
                                       timeout=scaled(timeout))
        try:
            c.request("GET", path, headers={
                "Host": "%s.%s:%d" % (identity, DOMAIN, self.port)})
            r = c.getresponse()
            return r.status, r.read()
        except OSError as e:
            return 0, repr(e).encode()
        finally:
            c.close()

    def healthz(self):
        try:
            with urllib.request.urlopen("http://%s:%d/healthz" % (
                    self.ip, self.port), timeout=scaled(5)) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0


class MNode:
    """A bridge to one hub with given credentials; or, given hub_urls, one
    node process connected to each of those hubs (credentials optional),
    its argv prefixed by wrap (e.g. a private mount namespace)."""

    def __init__(self, workdir, hub, upstream, creds, name, hub_urls=None,
                 wrap=(), extra=()):
        self.state_dir = os.path.join(workdir, name + "-state")
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.api_port = free_port()
        hubs = []
        for u in hub_urls or ["http://%s:%d" % (hub.ip, hub.port)]:
            hubs += ["--hub", u]
        argv = [sluice_bin(), "boot", "up", "--bridge"] + hubs + [
            "--state-dir", self.state_dir,
            "--api", "127.0.0.1:%d" % self.api_port,
            "--upstream", upstream.url] + list(extra)
        if creds is not None:
            argv += ["--username", creds["username"],
                     "--password", creds["password"]]
        self.proc = Proc(list(wrap) + argv, workdir, name)

    def bridges(self):
        try:
            with urllib.request.urlopen(
                    "http://127.0.0.1:%d/api/bridge/" % self.api_port,
                    timeout=scaled(5)) as r:
                return json.loads(r.read())["bridges"]
        except (OSError, ValueError):
            return []

    def hub_states(self):
        """{address: state} of the node's one bridge."""
        b = self.bridges()
        return {h["address"]: h["state"] for h in b[0]["hubs"]} if b else {}

    def stop(self):
        self.proc.signal(15)
        rc = self.proc.wait(15)
        self.proc.kill_group()
        return rc


def _common_port():
    """A port free on the three addresses (one name, one port)."""
    import socket
    for _ in range(50):
        port = free_port(IPS[0])
        ok = True
        for ip in IPS[1:]:
            with socket.socket() as s:
                try:
                    s.bind((ip, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise AssertionError("no port free on %s" % (IPS,))


class Cluster:
    def __init__(self, workdir, pg, db):
        self.workdir = workdir
        self.pg, self.db = pg, db
        self.store = pg.create_db(db)
        self.upstream = Upstream()
        self.port = _common_port()
        self.hubs = [MHub(workdir, ip, self.store, "hub%d" % i,
                          port=self.port)
                     for i, ip in enumerate(IPS)]
        self.nodes = []

    def allocation(self, traffic=0, on=0):
        st, j = self.hubs[on].api("POST", "/api/proxy/",
                                  {"limits": {"bridges": 0,
                                              "traffic": traffic}})
        assert st == 201, (st, j)
        return j

    def bridges(self, creds, tag):
        """A node per hub with creds; waits until each hub pairs."""
        ident = creds["identity"]
        nodes = [MNode(self.workdir, h, self.upstream, creds,
                       "node-%s-%d" % (tag, i))
                 for i, h in enumerate(self.hubs)]
        self.nodes += nodes
        for h in self.hubs:
            wait_for(lambda h=h: h.get(ident, "/bytes/4")[0] == 200, 30,
                     what="%s serving %s" % (h.name, ident))
        return nodes

    def row(self, ident):
        r = self.pg.sql("SELECT traffic_user_down + traffic_user_up, limited "
                        "FROM allocations WHERE identity = '%s'" % ident,
                        self.db)
        return (int(r[0][0]), int(r[0][1])) if r else (None, None)

    def close(self):
        bad = []
        for n in self.nodes:
            n.stop()
        for h in self.hubs:
            if h.proc.alive():
                rc = h.stop()
                if rc != 0:
                    bad.append("%s exited %s" % (h.name, rc))
            h.proc.kill_group()
        self.upstream.stop()
        return bad


@pytest.fixture(scope="module")
def cluster(postgres, tmp_path_factory):  # noqa: F811
    c = Cluster(str(tmp_path_factory.mktemp("multihub")), postgres,
                "multihub")
    yield c
    assert c.close() == []


@pytest.fixture(scope="module")
def alloc(cluster):
    creds = cluster.allocation()
    cluster.bridges(creds, "main")
    return creds


def test_every_hub_serves_the_allocation(cluster, alloc):
    ident = alloc["identity"]
    for h in cluster.hubs:
        assert h.healthz() == 200
        out = subprocess.run(
            ["curl", "-s", "--max-time", "10", "--resolve",
             "%s.%s:%d:%s" % (ident, DOMAIN, h.port, h.ip),
             "http://%s.%s:%d/bytes/1000" % (ident, DOMAIN, h.port)],
            capture_output=True, timeout=20)
        assert out.returncode == 0 and out.stdout == b"x" * 1000, (
            h.name, out)
    # The same row for all three: one allocation in the database.
    assert cluster.pg.sql("SELECT count(*) FROM allocations WHERE "
                          "identity = '%s'" % ident, cluster.db) == [["1"]]


def test_a_hub_killed_the_others_serve_it_comes_back(cluster, alloc):
    ident = alloc["identity"]
    victim = cluster.hubs[1]
    victim.kill()
    failures = []
    deadline = time.monotonic() + 5
    n = 0
    while time.monotonic() < deadline:
        for h in (cluster.hubs[0], cluster.hubs[2]):
            st, body = h.get(ident, "/bytes/100")
            n += 1
            if st != 200 or body != b"x" * 100:
                failures.append((h.name, st, body[:80]))
    assert n > 20 and failures == []
    victim.start()
    assert victim.healthz() == 200
    t0 = time.monotonic()
    wait_for(lambda: victim.get(ident, "/bytes/10")[0] == 200, 30,
             what="the node back on the restarted hub")
    # The node's back-off starts at 1 s and doubles: a few attempts.
    assert time.monotonic() - t0 < scaled(20)


def _pull(cluster, ident, size, period, stop_after):
    """Requests /bytes/size round robin over the hubs, one every period
    seconds, until one is refused or stop_after seconds pass. Returns
    (body bytes received, requests, the refusal or None)."""
    got, reqs, refused = 0, 0, None
    end = time.monotonic() + stop_after
    i = 0
    while time.monotonic() < end:
        h = cluster.hubs[i % len(cluster.hubs)]
        i += 1
        t = time.monotonic()
        st, body = h.get(ident, "/bytes/%d" % size)
        reqs += 1
        if st == 200:
            got += len(body)
        else:
            refused = (h.name, st, body[:200])
            break
        time.sleep(max(0.0, period - (time.monotonic() - t)))
    return got, reqs, refused


def test_traffic_limit_over_three_hubs(cluster):
    creds = cluster.allocation(traffic=LIMIT)
    ident = creds["identity"]
    cluster.bridges(creds, "limit")
    size, period = 16384, 0.04
    got, reqs, refused = _pull(cluster, ident, size, period, 40)
    assert refused is not None, "never cut (%d bytes moved)" % got
    assert refused[1] in (429, 502, 503, 504), refused
    # Each hub moves size/(3*period) B/s; the two others' bytes are seen
    # within SYNC_S; plus the request in flight on each hub.
    per_hub = size / (3 * period)
    bound = (len(cluster.hubs) - 1) * per_hub * SYNC_S + 3 * size
    assert got <= LIMIT + bound, (got, LIMIT, bound)
    assert got >= LIMIT * 0.9, (got, refused)
    # Every hub refuses it now, and the store says so.
    time.sleep(SYNC_S)
    for h in cluster.hubs:
        st, body = h.get(ident, "/bytes/10")
        assert st == 429 and b"Traffic limit exceeded" in body, (h.name, st)
    total, limited = cluster.row(ident)
    assert limited == 1
    # The total counts bodies and heads (at most ~1 KiB a request).
    assert got <= total <= got + (reqs + 3) * 1024, (got, total, reqs)
    print("limit %d: moved %d bytes of bodies (bound %d), store total %d, "
          "%d requests" % (LIMIT, got, LIMIT + bound, total, reqs))


def test_postgres_restart_under_load(cluster, alloc):
    ident = alloc["identity"]
    before, _ = cluster.row(ident)
    stop = threading.Event()
    results = {"ok": 0, "bytes": 0, "fail": []}

    def load(h):
        while not stop.is_set():
            st, body = h.get(ident, "/bytes/4096")
            if st == 200 and len(body) == 4096:
                results["ok"] += 1
                results["bytes"] += 4096
            else:
                results["fail"].append((h.name, st, body[:100]))
            time.sleep(0.01)
    threads = [threading.Thread(target=load, args=(h,)) for h in cluster.hubs]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        cluster.pg.stop()
        try:
            wait_for(lambda: all(h.healthz() == 503 for h in cluster.hubs),
                     10, what="/healthz 503 on every hub")
            # A new allocation: refused with a clear error.
            out = subprocess.run(
                ["curl", "-s", "-i", "--max-time", "10",
                 "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
                 "-H", "Sec-WebSocket-Version: 13",
                 "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "http://%s:%d/_sluice/v1/control" % (
                     cluster.hubs[0].ip, cluster.hubs[0].port)],
                capture_output=True, timeout=20, text=True)
            assert " 503 " in out.stdout.split("\r\n")[0], out.stdout
            assert "Store unavailable" in out.stdout, out.stdout
            time.sleep(2)
        finally:
            cluster.pg.start()
        wait_for(lambda: all(h.healthz() == 200 for h in cluster.hubs),
                 15, what="/healthz 200 again")
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert results["fail"] == [], results["fail"][:5]
    assert results["ok"] > 50
    # Every counted byte reached the store: two flushes and store cycles.
    moved = results["bytes"]

    def settled():
        total, _ = cluster.row(ident)
        return total if total - before >= moved else None
    total = wait_for(settled, 10, interval=0.5,
                     what="the store's total to include the bytes moved")
    assert total - before <= moved + (results["ok"] + 10) * 1024
    # A new allocation works again.
    st, j = cluster.hubs[2].api("POST", "/api/proxy/", {"limits": {}})
    assert st == 201, (st, j)


def _curl_each(cluster, ident):
    for h in cluster.hubs:
        out = subprocess.run(
            ["curl", "-s", "--max-time", "10", "--resolve",
             "%s.%s:%d:%s" % (ident, DOMAIN, h.port, h.ip),
             "http://%s.%s:%d/bytes/1000" % (ident, DOMAIN, h.port)],
            capture_output=True, timeout=20)
        assert out.returncode == 0 and out.stdout == b"x" * 1000, (
            h.name, out)


def _all_connected(node, n):
    """The node's bridge once it has an identity and n hubs connected."""
    bs = node.bridges()
    if not bs or not bs[0]["identity"] or len(bs[0]["hubs"]) != n:
        return None
    if any(h["state"] != "connected" for h in bs[0]["hubs"]):
        return None
    return bs[0]


def test_one_node_every_hub_by_repeated_hub(cluster):
    urls = ["http://%s:%d" % (h.ip, h.port) for h in cluster.hubs]
    # No credentials: the first hub to welcome the bridge gives them.
    node = MNode(cluster.workdir, None, cluster.upstream, None,
                 "node-every-hub", hub_urls=urls)
    cluster.nodes.append(node)
    b = wait_for(lambda: _all_connected(node, 3), 30,
                 what="the node connected to the three hubs")
    ident = b["identity"]
    assert b["state"] == "connected" and b["hub"] == ",".join(urls)
    assert sorted(h["address"] for h in b["hubs"]) == list(IPS)
    # One identity for the three, and one allocation in the store.
    assert cluster.pg.sql("SELECT count(*) FROM allocations WHERE "
                          "identity = '%s'" % ident, cluster.db) == [["1"]]
    assert node.proc.stdout().count("bridge %s " % ident) == 1
    _curl_each(cluster, ident)
    out = subprocess.run([sluice_bin(), "bridge", "list", "--api",
                          "127.0.0.1:%d" % node.api_port],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith(ident)]
    assert len(rows) == 4, out.stdout  # the bridge, then a row per hub
    for ip in IPS:
        assert any(ip in r and " connected" in r for r in rows), out.stdout

    victim = cluster.hubs[2]
    victim.kill()
    failures, n = [], 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for h in cluster.hubs[:2]:
            st, body = h.get(ident, "/bytes/100")
            n += 1
            if st != 200 or body != b"x" * 100:
                failures.append((h.name, st, body[:80]))
    assert n > 20 and failures == []
    wait_for(lambda: node.hub_states().get(victim.ip) == "failed", 15,
             what="the killed hub shown failed")
    b = node.bridges()[0]
    assert b["state"] == "connected"
    assert [h["error"] for h in b["hubs"] if h["address"] == victim.ip
            ][0] != ""
    victim.start()
    t0 = time.monotonic()
    wait_for(lambda: node.hub_states().get(victim.ip) == "connected", 30,
             what="the node back on the restarted hub")
    wait_for(lambda: victim.get(ident, "/bytes/10")[0] == 200, 10,
             what="the restarted hub serving the bridge")
    # The link's back-off starts at 1 s and doubles: a few attempts.
    assert time.monotonic() - t0 < scaled(20)
    cluster.nodes.remove(node)
    node.stop()


def _logs(proc):
    return proc.stdout() + proc.stderr()


def _marks(cluster):
    """Where each hub's log is now: what a test logs comes after."""
    return [len(_logs(h.proc)) for h in cluster.hubs]


def _rejections(cluster, marks):
    return ["%s: %s" % (h.name, ln)
            for h, m in zip(cluster.hubs, marks)
            for ln in _logs(h.proc)[m:].splitlines()
            if "credentials rejected" in ln]


def test_new_allocation_opens_on_every_hub_at_once(cluster):
    """The welcome of a new allocation waits for its row in the database:
    its credentials open on the two other hubs at the first try, dialled
    the instant it arrives (as a node with --hub repeated does), and no hub
    counts a failed login."""
    import asyncio
    from tunnel_x_support import PyBridge
    marks = _marks(cluster)

    async def run():
        first = PyBridge(cluster.port, host=IPS[0])
        await first.connect()
        assert first.welcome.get("username") and first.welcome.get("password")
        others = [PyBridge(cluster.port, first.username, first.password,
                           host=ip) for ip in IPS[1:]]
        try:
            # No sleep: at once, together.
            got = await asyncio.gather(*(b.connect() for b in others),
                                       return_exceptions=True)
            return first.identity, got
        finally:
            for b in [first] + others:
                if b.ws is not None:
                    await b.ws.close()

    ident, got = asyncio.run(run())
    for ip, w in zip(IPS[1:], got):
        assert isinstance(w, dict), (ip, repr(w))
        assert w["identity"] == ident and not w.get("password"), (ip, w)
    assert _rejections(cluster, marks) == []


def test_new_allocation_refused_by_the_database(cluster):
    """A create the database refuses after the replica took it (a trigger
    here; a username another hub made in the same instant, in life): no
    welcome, so no bridge holds credentials nobody else knows; the hub
    answers 500, says why once, and its replica drops the row."""
    import asyncio
    import websockets
    from tunnel_x_support import PyBridge
    hub = cluster.hubs[0]

    def idents():
        st, j = hub.api("GET", "/api/proxy/")
        assert st == 200, (st, j)
        return sorted(p["identity"] for p in j["proxies"])

    async def allocate():
        b = PyBridge(cluster.port, host=hub.ip)
        try:
            return await b.connect()
        except websockets.InvalidStatusCode as e:
            return e.status_code
        finally:
            if b.ws is not None:
                await b.ws.close()

    before = idents()
    cluster.pg.sql(
        "CREATE FUNCTION sluice_test_refuse() RETURNS trigger LANGUAGE "
        "plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;"
        "CREATE TRIGGER sluice_test_refuse BEFORE INSERT ON allocations "
        "FOR EACH ROW EXECUTE FUNCTION sluice_test_refuse()", cluster.db)
    marks = _marks(cluster)
    try:
        assert asyncio.run(allocate()) == 500
    finally:
        cluster.pg.sql("DROP TRIGGER sluice_test_refuse ON allocations;"
                       "DROP FUNCTION sluice_test_refuse()", cluster.db)
    log = _logs(hub.proc)[marks[0]:]
    assert log.count("the database refused it") == 1, log
    assert "refused by the test" in log, log
    assert idents() == before
    # The database takes creates again: so does the hub.
    w = asyncio.run(allocate())
    assert isinstance(w, dict) and w.get("password"), w


def test_one_node_new_allocation_no_401(cluster):
    """A node with --hub three times and no credentials: all three links
    up, no 401 on the way (the links dialled with the first welcome's
    credentials get in at the first try)."""
    marks = _marks(cluster)
    urls = ["http://%s:%d" % (h.ip, h.port) for h in cluster.hubs]
    node = MNode(cluster.workdir, None, cluster.upstream, None,
                 "node-new-alloc", hub_urls=urls)
    cluster.nodes.append(node)
    wait_for(lambda: _all_connected(node, 3), 30,
             what="the node connected to the three hubs")
    assert _rejections(cluster, marks) == []
    out = _logs(node.proc)
    assert " 401" not in out and "refused the control" not in out, out
    cluster.nodes.remove(node)
    node.stop()


def _mount_ns(hosts):
    """argv prefix running a command with `hosts` bind-mounted over
    /etc/hosts in a private mount namespace, or None where unshare cannot
    make one (the system's file is never touched)."""
    wrap = ["unshare", "-m", "--propagation", "private"]
    if os.geteuid() != 0:
        wrap.insert(1, "-r")
    wrap += ["sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
             str(hosts)]
    try:
        r = subprocess.run(wrap + ["getent", "ahostsv4", DOMAIN],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0 or not all(ip in r.stdout for ip in IPS):
        return None
    return wrap


def _write_hosts(path, ips):
    # In place: the bind mount follows this inode, not a new one.
    with open(path, "w") as f:
        for ip in ips:
            f.write("%s %s\n" % (ip, DOMAIN))


def test_one_node_every_hub_by_one_name(cluster, tmp_path):
    hosts = tmp_path / "hosts"
    _write_hosts(hosts, IPS)
    wrap = _mount_ns(hosts)
    if wrap is None:
        pytest.skip("no private mount namespace (unshare) for a hosts file")
    creds = cluster.allocation()
    ident = creds["identity"]
    url = "http://%s:%d" % (DOMAIN, cluster.port)
    node = MNode(cluster.workdir, None, cluster.upstream, creds,
                 "node-one-name", hub_urls=[url], wrap=wrap,
                 extra=["--hub-resolve-ms", "300"])
    cluster.nodes.append(node)
    b = wait_for(lambda: _all_connected(node, 3), 30,
                 what="the node connected to the name's three addresses")
    assert b["identity"] == ident and b["hub"] == url
    assert all(h["hub"] == url for h in b["hubs"])
    assert sorted(h["address"] for h in b["hubs"]) == list(IPS)
    _curl_each(cluster, ident)

    # An address leaves the name: its connection goes, the others serve.
    _write_hosts(hosts, IPS[:2])
    wait_for(lambda: sorted(node.hub_states()) == list(IPS[:2]), 15,
             what="the node dropping the vanished address")
    wait_for(lambda: cluster.hubs[2].get(ident, "/bytes/10")[0] != 200, 10,
             what="the dropped hub without the bridge")
    for h in cluster.hubs[:2]:
        assert h.get(ident, "/bytes/100") == (200, b"x" * 100)
    # And comes back.
    _write_hosts(hosts, IPS)
    wait_for(lambda: _all_connected(node, 3), 30,
             what="the node back on the third address")
    wait_for(lambda: cluster.hubs[2].get(ident, "/bytes/10")[0] == 200, 10,
             what="the third hub serving the bridge again")
    cluster.nodes.remove(node)
    node.stop()


def test_tunnel_tests_on_postgres(postgres):  # noqa: F811
    """A representative subset of the tunnel suite with every hub on its
    own PostgreSQL database."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, SLUICE_TUNNEL_PG=postgres.url())
    tests = [os.path.join(here, f) for f in (
        "test_tunnel_hub.py", "test_tunnel_x_limits.py",
        "test_tunnel_x_allocations.py")]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x",
                        "-p", "no:cacheprovider"] + tests, env=env,
                       capture_output=True, text=True, timeout=600,
                       cwd=os.path.dirname(os.path.dirname(here)))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
