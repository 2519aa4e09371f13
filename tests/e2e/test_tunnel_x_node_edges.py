"""The bridge node at its edges: what it does when the hub forgets its
allocation (401 on saved credentials), how its reconnect back-off comes
back to the start after a lasting connection, what a user gets when the
hub <-> bridge path dies silently with a request in flight
(TCP_USER_TIMEOUT), what its local API refuses (web pages, big heads and
bodies, a 65th bridge), and the hub asking a replacing control
connection again for the `open`s a user still waits on.
"""

import asyncio
import concurrent.futures
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from helpers import (TcpUpstream, free_port, in_netns, recv_all, scaled,
                     sluice_bin, wait_for)
from tunnel_x_support import (BRIDGE_RE, HUB_RE, Hub, PyBridge, Role,
                              http_get, new_fingerprint)


def get(hub, identity, path="/", **kw):
    return http_get(hub.port, hub.host(identity), path, **kw)


def node_api(node, method, path, body=None, headers=None, timeout=10):
    """(status, parsed JSON or text) of one request to the node's API."""
    c = http.client.HTTPConnection("127.0.0.1", node.api_port,
                                   timeout=scaled(timeout))
    try:
        data = json.dumps(body).encode() if body is not None else None
        h = {"Content-Type": "application/json"} if data else {}
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read().decode("utf-8", "replace")
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw
    finally:
        c.close()


def node_bridges(node):
    st, j = node_api(node, "GET", "/api/bridge/")
    assert st == 200, (st, j)
    return j["bridges"]


def raw_exchange(port, data, timeout=10):
    """Sends data on a fresh connection and reads until the server closes;
    a reset after the answer (the server closing with bytes unread) is not
    an error."""
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(timeout))
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, _ = recv_all(s, timeout=timeout)
        return got
    finally:
        s.close()


# ------------------------------------------- 1. 401 on saved credentials

def test_401_on_saved_credentials_never_takes_a_new_identity(env):
    """The bridge got its identity on first contact and saved the
    credentials; the operator then removes the allocation (`sluice proxy
    remove`). The hub answers 401 to every reconnect: the node keeps its
    identity and credentials, retries with back-off, says why on each
    refused attempt (once each), and never asks for a new allocation."""
    hub = env.hub()
    up = env.hash_upstream("saved")
    node = env.node(hub, up.url)
    ident = node.identity
    assert get(hub, ident, "/a")[2] == b"saved /a"
    assert node.proc.stderr().count("(new identity)") == 1
    state_file = os.path.join(node.state_dir, "bridges.json")
    saved = json.load(open(state_file))["bridges"]
    assert len(saved) == 1 and saved[0]["identity"] == ident
    username = saved[0]["username"]
    assert username and saved[0]["password"]

    cp = subprocess.run([sluice_bin(), "proxy", "--api",
                         "127.0.0.1:%d" % hub.api_port, "remove", ident],
                        capture_output=True, text=True, timeout=scaled(30),
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr

    refused = "refused the control connection: 401"
    # Two refused attempts: the second one comes after a back-off, with
    # the same saved credentials.
    def two_refusals():
        log = node.proc.stderr()
        assert log.count("(new identity)") == 1, "a new identity:\n" + log
        return log.count(refused) >= 2
    wait_for(two_refusals, 20, what="two refused reconnects logged")
    rows = node_bridges(node)
    assert len(rows) == 1, rows
    assert rows[0]["identity"] == ident
    assert rows[0]["state"] == "connecting"
    assert "hub refused: 401" in rows[0]["error"], rows[0]
    # No allocation was made for it, and nothing new was announced.
    st, j = hub.api("GET", "/api/proxy/")
    assert st == 200 and j == {"proxies": []}, j
    assert get(hub, ident)[0] == 404
    assert len(node.bridges()) == 1

    assert node.stop() == 0
    log = node.proc.stderr()
    assert log.count("(new identity)") == 1, log
    saved = json.load(open(state_file))["bridges"]
    assert [(b["identity"], b["username"]) for b in saved] == [
        (ident, username)]
    # Each refused attempt is said once, and its retry line gives the
    # reason instead of "unreachable".
    retries = re.findall(r"hub \S+: hub refused: 401 [^\n]*; retrying in "
                         r"\d+ ms", log)
    assert log.count(refused) == len(retries) >= 2, log


# ------------------------------------- 2. the back-off comes back to 1-2 s

RETRY_RE = re.compile(r"retrying in (\d+) ms")


def retry_delays(node):
    return [int(d) for d in RETRY_RE.findall(node.proc.stderr())]


def test_backoff_resets_after_a_lasting_welcomed_connection(env, tmp_path):
    """Failed dials grow the back-off (1-2 s, 2-4 s, 4-8 s, ...). A
    connection that is then welcomed and lasts 10 s or more brings it back
    to the start: its loss is retried after 1-2 s, not 8-16 s."""
    port = free_port()
    state = str(tmp_path / "hubstate")
    hub = env.hub(http_port=port, state_dir=state)
    up = env.hash_upstream("bo")
    node = env.node(hub, up.url)
    ident = node.identity

    assert hub.stop() == 0
    # The hub is gone: dials fail until a wait of the third step (4-8 s)
    # has been drawn.
    wait_for(lambda: len(retry_delays(node)) >= 3, 20,
             what="three retries logged")
    d = retry_delays(node)
    assert 1000 <= d[0] <= 2000 and 2000 <= d[1] <= 4000 and \
        4000 <= d[2] <= 8000, d
    welcomes = node.proc.stderr().count("connected to hub")
    hub = env.hub(http_port=port, state_dir=state)
    wait_for(lambda: node.proc.stderr().count("connected to hub") >
             welcomes, 20, what="welcomed again")
    welcomed = time.monotonic()
    assert get(hub, ident, "/x")[2] == b"bo /x"
    n = len(retry_delays(node))
    # The rule is a duration (10 s from the welcome); nothing to wait on
    # but the clock. A margin keeps the node's own clock past it.
    time.sleep(max(0.0, welcomed + 10.5 - time.monotonic()))
    assert get(hub, ident, "/y")[2] == b"bo /y"
    assert hub.stop() == 0
    wait_for(lambda: len(retry_delays(node)) > n, 20,
             what="the lost connection's retry logged")
    d = retry_delays(node)[n]
    # Without the reset this would be the fourth step, 8-16 s.
    assert 1000 <= d <= 2000, retry_delays(node)
    assert re.search(r"connection to hub \S+ lost \([^)]*\); retrying in "
                     r"%d ms" % d, node.proc.stderr())


# ------------------------ 3. a silently dead path with a request in flight

class NsRole(Role):
    """A sluice process started in a network namespace (Netns.proc): the
    same exit-code and sanitizer checks as Hub and Node."""

    def __init__(self, ns, name, argv):
        self.proc = ns.proc(name, *argv)
        self.pid = self.proc.pid


def started(role, regex):
    if not role.alive():
        raise AssertionError("exited:\n" + role.proc.describe())
    return regex.search(role.proc.stdout())


# Kernel timers every hub <-> bridge connection arms (src/net/tcp_live.c):
# TCP_USER_TIMEOUT 45 s, keep-alive probes 5 s apart. No flag changes them.
USER_TIMEOUT_S = 45
PROBE_S = 5


def test_request_in_flight_on_a_silently_dead_path_gets_502(tmp_path):
    """The hub and the bridge in two network namespaces joined by a veth
    pair. A user's request reaches the upstream; then every packet on the
    veth is dropped (a blackhole qdisc on both ends: nothing arrives,
    nothing is reset) and the upstream answers. Pings are turned off, so
    only the kernel timers can end the data connection: the user gets
    `502 Proxy not connected` within TCP_USER_TIMEOUT (45 s) plus a probe
    interval, never a hang."""
    from netns import Netns, link
    roles = []
    upstream = None
    with Netns(tmp_path) as a, Netns(tmp_path) as b:
        try:
            ea, eb = link(a, "198.51.100.1/24", b, "198.51.100.2/24")
            quiet = ["--ping-ms", "1800000", "--dead-ms", "3600000"]
            hub = NsRole(a, "hub", [
                sluice_bin(), "boot", "up", "--proxy", "--http",
                "198.51.100.1:8080", "--api", "127.0.0.1:8081",
                "--state-dir", str(tmp_path / "hubstate")] + quiet)
            roles.append(hub)
            m = wait_for(lambda: started(hub, HUB_RE), 20,
                         what="hub listening")
            domain = m.group(3)

            got_request = threading.Event()
            answer = threading.Event()

            def slow(conn, rec):
                buf = b""
                while b"\r\n\r\n" not in buf:
                    d = conn.recv(65536)
                    if not d:
                        return
                    buf += d
                got_request.set()
                answer.wait(scaled(30))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"
                             b"late")
                conn.recv(1)  # until the node closes
            upstream = in_netns(b, lambda: TcpUpstream(slow), timeout=30)
            node = NsRole(b, "node", [
                sluice_bin(), "boot", "up", "--bridge", "--hub",
                "http://198.51.100.1:8080", "--upstream",
                "http://127.0.0.1:%d" % upstream.port, "--state-dir",
                str(tmp_path / "nodestate"), "--api", "127.0.0.1:8082"]
                + quiet)
            roles.append(node)
            ident = wait_for(lambda: started(node, BRIDGE_RE), 20,
                             what="bridge line").group(1)

            user = in_netns(a, lambda: socket.create_connection(
                ("198.51.100.1", 8080), scaled(10)), timeout=30)
            try:
                user.sendall(b"GET /slow HTTP/1.1\r\nHost: %s.%s:8080\r\n\r\n"
                             % (ident.encode(), domain.encode()))
                assert got_request.wait(scaled(20)), "no request upstream"
                for ns, dev in ((a, ea), (b, eb)):
                    ns.run("tc", "qdisc", "replace", "dev", dev, "root",
                           "blackhole", check=True)
                t0 = time.monotonic()
                answer.set()
                bound = USER_TIMEOUT_S + PROBE_S + scaled(5)
                data, how = recv_all(user, timeout=bound)
                took = time.monotonic() - t0
            finally:
                user.close()
            assert how in ("eof", "reset"), (
                "no answer %.0f s after the path died: %r" % (took, data))
            assert took < bound, took
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 502 "), data[:300]
            assert body.startswith(b"Proxy not connected"), data[:300]
        finally:
            problems = []
            for r in reversed(roles):
                problems.extend(r.problems())
            if upstream is not None:
                upstream.close()
    assert not problems, "\n".join(problems)


# ----------------------------------------------------- 4. the node's API

def test_node_api_refuses_web_pages(env):
    """No token guards the node's API: a request a web page could make
    (Origin, Sec-Fetch-Site, or a Host that is not this machine) gets 403
    and changes nothing; the CLI's and curl's own requests pass."""
    hub = env.hub()
    up = env.hash_upstream("web")
    node = env.node(hub, up.url)
    port = node.api_port
    new = {"upstream": "http://127.0.0.1:9", "hub": hub.url}
    for method, body, headers in (
            ("GET", None, {"Origin": "http://evil.example"}),
            ("POST", new, {"Origin": "null"}),
            ("POST", new, {"Sec-Fetch-Site": "cross-site"}),
            ("GET", None, {"Sec-Fetch-Site": "same-origin"}),
            ("POST", new, {"Host": "evil.example:%d" % port}),
            ("GET", None, {"Host": "127.0.0.1.evil.example"}),
            ("DELETE", None, {"Host": "evil.example"})):
        path = ("/api/bridge/%s/" % node.identity if method == "DELETE"
                else "/api/bridge/")
        st, j = node_api(node, method, path, body=body, headers=headers)
        assert st == 403, (method, headers, st, j)
        assert j["code"] == 403 and "Forbidden" in j["error"], j
    # A form POST as a browser sends it (text/plain, Origin): refused.
    cp = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", "-H",
         "Origin: http://evil.example", "-H", "Content-Type: text/plain",
         "-d", json.dumps(new), "http://127.0.0.1:%d/api/bridge/" % port],
        capture_output=True, text=True, timeout=scaled(30),
        stdin=subprocess.DEVNULL)
    assert cp.stdout.rsplit("\n", 1)[1] == "403", cp.stdout + cp.stderr
    rows = node_bridges(node)
    assert [r["identity"] for r in rows] == [node.identity], rows
    assert get(hub, node.identity, "/still")[2] == b"web /still"
    for host in ("localhost:%d" % port, "127.0.0.1:%d" % port,
                 "[::1]:%d" % port, "localhost"):
        st, _ = node_api(node, "GET", "/api/bridge/",
                         headers={"Host": host})
        assert st == 200, host


def test_node_api_head_and_body_limits(env):
    """A head over 64 KiB gets 431 and a body over 1 MiB gets 413 (on its
    Content-Length, before it is read), each a JSON error; a body just
    under the limit is read and judged on its content."""
    hub = env.hub()
    up = env.hash_upstream("lim")
    node = env.node(hub, up.url)
    port = node.api_port
    data = raw_exchange(port, b"GET /api/bridge/ HTTP/1.1\r\nHost: "
                        b"127.0.0.1\r\nX-Big: " + b"a" * (70 * 1024) +
                        b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    assert b'"code":431' in data, data[:300]

    with socket.create_connection(("127.0.0.1", port),
                                  timeout=scaled(10)) as s:
        s.sendall(b"POST /api/bridge/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (1024 * 1024 + 1))
        r = http.client.HTTPResponse(s)
        r.begin()
        assert r.status == 413
        assert json.loads(r.read().decode())["code"] == 413

    # chunked, no length up front: cut off once past 1 MiB
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk)
                    for _ in range(17)) + b"0\r\n\r\n"
    data = raw_exchange(port, b"POST /api/bridge/ HTTP/1.1\r\nHost: "
                        b"127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + body)
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]

    # Just under the limit: read whole, refused for what it says.
    pad = 1024 * 1024 - 100
    big = b'{"pad": "' + b" " * pad + b'"}'
    assert len(big) < 1024 * 1024
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=scaled(10)) as s:
        s.sendall(b"POST /api/bridge/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(big) + big)
        r = http.client.HTTPResponse(s)
        r.begin()
        assert r.status == 400
        assert "upstream" in json.loads(r.read().decode())["error"]
    assert len(node_bridges(node)) == 1


def test_node_api_caps_bridges_at_64(env):
    """A node holds at most 64 bridges: the 65th POST gets 429 and adds
    nothing; once bridges go (prune), adding works again."""
    hub = env.hub()
    up = env.hash_upstream("cap")
    node = env.node(hub, up.url)
    # Bridges to a hub that is not there: they stay "connecting", never
    # allocate, and prune takes them.
    dead_hub = "http://127.0.0.1:9"
    for i in range(63):
        st, j = node_api(node, "POST", "/api/bridge/", {
            "upstream": "http://127.0.0.1:%d" % (20000 + i),
            "hub": dead_hub})
        assert st == 201, (i, st, j)
    st, j = node_api(node, "POST", "/api/bridge/", {
        "upstream": "http://127.0.0.1:30000", "hub": dead_hub})
    assert st == 429, (st, j)
    assert j["code"] == 429 and "at most 64 bridges" in j["error"], j
    rows = node_bridges(node)
    assert len(rows) == 64
    assert "http://127.0.0.1:30000" not in [r["upstream"] for r in rows]
    # the bridge that serves is untouched
    assert get(hub, node.identity, "/c")[2] == b"cap /c"
    st, j = node_api(node, "DELETE", "/api/bridge/prune/")
    assert st == 200 and j == {"removed": 63}, j
    st, j = node_api(node, "POST", "/api/bridge/", {
        "upstream": "http://127.0.0.1:30000", "hub": dead_hub})
    assert st == 201, (st, j)


# ---------------------------- 5. waiting opens asked again after replacing

@pytest.mark.parametrize("how", ["bridge-limit", "same-bridge"])
def test_waiting_open_asked_again_on_the_replacing_connection(tmp_path, how):
    """A user waits for a data connection; the hub has sent its `open` on
    a control connection whose bridge never answers (its path is dead).
    A newer control connection replaces it (at the allocation's bridge
    limit, or as the same bridge coming back with its Sluice-Bridge): the
    hub sends the same `open` again on the new one after its hello, and
    the user is served by it within the pairing window."""
    hub = Hub(tmp_path, args=["--pairing-window-ms", "15000"])
    try:
        creds = hub.create(bridges=1 if how == "bridge-limit" else 0)
        ident = creds["identity"]
        same = new_fingerprint() if how == "same-bridge" else None

        async def main():
            old = PyBridge(hub.port, creds["username"], creds["password"],
                           answer=False, bridge_id=same)
            await old.connect()
            old_serving = asyncio.ensure_future(old.serve())
            loop = asyncio.get_running_loop()
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                fut = loop.run_in_executor(
                    ex, lambda: get(hub, ident, "/wait", timeout=30))
                t0 = time.monotonic()
                deadline = t0 + scaled(10)
                while not old.fingerprints:
                    assert time.monotonic() < deadline, "no open sent"
                    await asyncio.sleep(0.02)
                new = PyBridge(hub.port, creds["username"],
                               creds["password"], body=b"new",
                               bridge_id=same if same else new_fingerprint())
                await new.connect()
                serving = asyncio.ensure_future(new.serve())
                st, _, body = await fut
                took = time.monotonic() - t0
            await old_serving  # closed by the hub: replaced
            await new.close()
            await serving
            return old, new, st, body, took
        old, new, st, body, took = asyncio.run(
            asyncio.wait_for(main(), scaled(60)))
        assert (st, body) == (200, b"new"), (st, body)
        assert old.fingerprints[0] in new.fingerprints, (old.fingerprints,
                                                         new.fingerprints)
        assert took < 15, took
        assert "replaced by conn" in hub.proc.stderr()
    finally:
        problems = hub.problems()
    assert not problems, "\n".join(problems)
