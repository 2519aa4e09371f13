"""The hub's admin API and the `sluice proxy` / `sluice boot down|status`
commands, against the real hub (`sluice boot up --proxy`).

Covers: create / list / get / remove / prune via HTTP and via the CLI, the
JSON error shape, bearer tokens (--api-require-token on loopback), the
Prometheus text, keep-alive and request limits, the store surviving a
restart, and --daemon with boot status / boot down.
"""

import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

from helpers import (free_port, sanitizer_report, scaled, sluice_bin,
                     tcp_listening)

IDENTITY_RE = re.compile(r"^[a-z]{2}[a-z0-9]{10}$")
TOKEN = "t0ken-for-tests-only"


@pytest.fixture
def hub(hubs):
    return hubs()


# The CLI's exit codes: 0 done, 1 failed (the hub said no, or is not
# there), 2 usage, 3 `boot status`: not running. Anything else (a signal,
# a sanitizer's exit) is a crash, whatever the test expected.
CLI_CODES = (0, 1, 2, 3)


def cli(*args, env=None, timeout=30):
    """Runs the sluice CLI; returns (exit code, stdout, stderr). Fails on
    a sanitizer report in its stderr or an exit code it never gives (a
    crash is not the expected non-zero exit)."""
    full_env = dict(os.environ)
    full_env.pop("SLUICE_API_TOKEN", None)
    if env:
        full_env.update(env)
    argv = [sluice_bin()] + [str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, text=True, env=full_env,
                       timeout=scaled(timeout), stdin=subprocess.DEVNULL,
                       errors="replace")
    report = sanitizer_report(p.stderr)
    assert report is None, "%s:\n%s" % (" ".join(argv), report)
    assert p.returncode in CLI_CODES, (argv, p.returncode, p.stderr)
    return p.returncode, p.stdout, p.stderr


def api(port, method, path, body=None, headers=None, raw_body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(30))
    try:
        data = raw_body if raw_body is not None else (
            json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers=headers or {})
        r = c.getresponse()
        raw = r.read().decode()
        ctype = r.getheader("Content-Type", "")
        if ctype.startswith("application/json"):
            return r.status, json.loads(raw)
        return r.status, raw
    finally:
        c.close()


def assert_error(status, body, code, words=None):
    assert status == code, (status, body)
    assert isinstance(body, dict) and set(body) == {"error", "code"}, body
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    if words:
        assert words in body["error"], body


def backdate(hub, identity, seconds):
    """Makes an allocation look created `seconds` ago and never seen (the
    store is in WAL mode: a second writer beside the hub is fine)."""
    db = sqlite3.connect(os.path.join(hub.state_dir, "hub.db"), timeout=10)
    try:
        db.execute("UPDATE allocations SET created_at = ?, last_seen = 0 "
                   "WHERE identity = ?", (int(time.time()) - seconds,
                                          identity))
        db.commit()
    finally:
        db.close()


# ----------------------------------------------------------------- HTTP

def test_create_list_get_remove_http(hub):
    st, empty = api(hub.api_port, "GET", "/api/proxy/")
    assert st == 200 and empty == {"proxies": []}

    st, a = api(hub.api_port, "POST", "/api/proxy/",
                {"limits": {"bridges": 2, "traffic": 10240000}})
    assert st == 201, a
    assert IDENTITY_RE.match(a["identity"])
    assert re.match(r"^[A-Za-z0-9]{6}$", a["username"])
    assert re.match(r"^[A-Za-z0-9]{24}$", a["password"])
    assert a["identity"] in a["url"]
    assert a["limits"] == {"bridges": 2, "traffic": 10240000}
    assert a["bridges"] == 0 and a["limited"] is False
    assert a["last_seen"] is None
    assert abs(a["created_at"] - time.time()) < 120

    st, b = api(hub.api_port, "POST", "/api/proxy/")  # no body: unlimited
    assert st == 201 and b["limits"] == {"bridges": 0, "traffic": 0}
    assert b["identity"] != a["identity"]

    st, lst = api(hub.api_port, "GET", "/api/proxy/")
    assert st == 200
    ids = [p["identity"] for p in lst["proxies"]]
    assert sorted(ids) == sorted([a["identity"], b["identity"]])
    for p in lst["proxies"]:
        assert "password" not in p
        assert set(p["traffic"]) == {"user", "bridge"}
        assert set(p["traffic"]["user"]) == {"down", "up"}
        assert set(p["bandwidth"]) == {"down", "up"}

    st, one = api(hub.api_port, "GET", "/api/proxy/%s/" % a["identity"])
    assert st == 200 and one["username"] == a["username"]
    assert "password" not in one
    # the trailing slash is optional
    st, one = api(hub.api_port, "GET", "/api/proxy/%s" % a["identity"])
    assert st == 200

    st, r = api(hub.api_port, "DELETE", "/api/proxy/%s/" % a["identity"])
    assert st == 200 and r == {"removed": a["identity"]}
    st, r = api(hub.api_port, "GET", "/api/proxy/%s/" % a["identity"])
    assert_error(st, r, 404, "Proxy not found")
    st, r = api(hub.api_port, "DELETE", "/api/proxy/%s/" % a["identity"])
    assert_error(st, r, 404)

    # the password in the store is a scrypt hash, never the password
    db = sqlite3.connect(os.path.join(hub.state_dir, "hub.db"))
    try:
        rows = db.execute("SELECT identity, password_hash FROM allocations"
                          ).fetchall()
    finally:
        db.close()
    assert [r[0] for r in rows] == [b["identity"]]
    assert rows[0][1].startswith("scrypt$")
    assert b["password"] not in rows[0][1]


def test_error_shapes(hub):
    p = hub.api_port
    st, r = api(p, "GET", "/nope")
    assert_error(st, r, 404)
    st, r = api(p, "PUT", "/api/proxy/")
    assert_error(st, r, 405)
    st, r = api(p, "POST", "/api/proxy/", raw_body=b"{not json",
                headers={"Content-Type": "application/json"})
    assert_error(st, r, 400)
    st, r = api(p, "POST", "/api/proxy/", {"limits": {"bridges": -1}})
    assert_error(st, r, 400)
    st, r = api(p, "POST", "/api/proxy/", {"limits": "lots"})
    assert_error(st, r, 400)
    st, r = api(p, "GET", "/api/proxy/NOT-AN-ID/")
    assert_error(st, r, 404)
    st, r = api(p, "DELETE", "/api/proxy/prune/?older_than=soon")
    assert_error(st, r, 400)
    # a body over 1 MiB is refused before it is read: the answer comes on
    # the head alone (sending the body too would race the server's close)
    with socket.create_connection(("127.0.0.1", p), timeout=scaled(10)) as s:
        s.sendall(b"POST /api/proxy/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (1024 * 1024 + 1))
        r = http.client.HTTPResponse(s)
        r.begin()
        assert r.status == 413
        assert json.loads(r.read().decode())["code"] == 413


def test_head_limit_and_keepalive(hub):
    # keep-alive: two requests on one connection
    c = http.client.HTTPConnection("127.0.0.1", hub.api_port,
                                   timeout=scaled(10))
    try:
        for _ in range(2):
            c.request("GET", "/api/proxy/")
            r = c.getresponse()
            assert r.status == 200
            r.read()
    finally:
        c.close()
    # a 70 KiB header is cut off with 431 and a JSON error
    s = socket.create_connection(("127.0.0.1", hub.api_port),
                                 timeout=scaled(10))
    try:
        s.sendall(b"GET /api/proxy/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " +
                  b"a" * (70 * 1024) + b"\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    assert b'"code":431' in data


def test_prune(hub):
    p = hub.api_port
    ids = [api(p, "POST", "/api/proxy/")[1]["identity"] for _ in range(3)]
    # nothing is older than a day
    st, r = api(p, "DELETE", "/api/proxy/prune/?older_than=86400")
    assert st == 200 and r == {"removed": 0, "identities": []}
    # make one look unseen for 10 days; the store is the hub's, WAL mode
    # lets us write beside it
    db = sqlite3.connect(os.path.join(hub.state_dir, "hub.db"), timeout=10)
    try:
        db.execute("UPDATE allocations SET created_at = ? WHERE identity = ?",
                   (int(time.time()) - 10 * 86400, ids[0]))
        db.execute("UPDATE allocations SET created_at = ?, last_seen = ? "
                   "WHERE identity = ?",
                   (int(time.time()) - 10 * 86400, int(time.time()) - 60,
                    ids[1]))
        db.commit()
    finally:
        db.close()
    st, r = api(p, "DELETE", "/api/proxy/prune/")  # default: 7 days
    assert st == 200 and r == {"removed": 1, "identities": [ids[0]]}
    st, lst = api(p, "GET", "/api/proxy/")
    assert sorted(x["identity"] for x in lst["proxies"]) == sorted(ids[1:])
    # units are accepted; ids[1] was seen a minute ago
    st, r = api(p, "DELETE", "/api/proxy/prune/?older_than=30s")
    assert st == 200 and r == {"removed": 1, "identities": [ids[1]]}


def test_metrics(hub):
    a = api(hub.api_port, "POST", "/api/proxy/")[1]
    st, text = api(hub.api_port, "GET", "/metrics")
    assert st == 200 and isinstance(text, str)
    samples = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+)$', line)
        assert m, "not Prometheus text: %r" % line
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        assert m.group(1) in types, "sample before its TYPE: %r" % line
    ident = a["identity"]
    assert samples['sluice_proxy_traffic_bytes_total{identity="%s",side='
                   '"user",direction="down"}' % ident] == 0
    assert samples['sluice_proxy_bridges{identity="%s"}' % ident] == 0
    assert samples["sluice_proxies"] == 1
    assert types["sluice_proxy_traffic_bytes_total"] == "counter"
    assert "sluice_hub_user_connections" in samples


def test_restart_keeps_allocations(hubs, tmp_path):
    state = str(tmp_path / "shared-state")
    h1 = hubs(state_dir=state)
    a = api(h1.api_port, "POST", "/api/proxy/", {"limits": {"bridges": 1}})[1]
    assert h1.stop() == 0
    h2 = hubs(state_dir=state)
    st, one = api(h2.api_port, "GET", "/api/proxy/%s/" % a["identity"])
    assert st == 200 and one["username"] == a["username"]
    assert one["limits"]["bridges"] == 1


# ------------------------------------------------------------ tokens

def test_token_required(hubs):
    h = hubs(args=["--api-token", TOKEN, "--api-require-token"])
    st, r = api(h.api_port, "GET", "/api/proxy/")
    assert_error(st, r, 401, "Unauthorized")
    st, r = api(h.api_port, "GET", "/metrics",
                headers={"Authorization": "Bearer wrong"})
    assert_error(st, r, 401)
    st, r = api(h.api_port, "GET", "/api/proxy/",
                headers={"Authorization": "Basic " + TOKEN})
    assert_error(st, r, 401)
    st, r = api(h.api_port, "GET", "/api/proxy/",
                headers={"Authorization": "Bearer " + TOKEN})
    assert st == 200

    # the CLI: refused without the token, fine with --token or the env
    rc, out, err = cli("proxy", "list", "--state-dir", h.state_dir)
    assert rc == 1 and "Unauthorized" in err and "--token" in err
    rc, out, err = cli("proxy", "create", "--state-dir", h.state_dir,
                       "--token", TOKEN)
    assert rc == 0, err
    rc, out, err = cli("proxy", "list", "--json", "--state-dir", h.state_dir,
                       env={"SLUICE_API_TOKEN": TOKEN})
    assert rc == 0, err
    assert len(json.loads(out)) == 1


def test_create_takes_the_hub_default_limits(hubs):
    """--limit-* apply to allocations made through the API too; a limit
    the request names wins, 0 meaning unlimited."""
    h = hubs(args=["--limit-bridges", "1",
                          "--limit-traffic", "10240000"])
    st, r = api(h.api_port, "POST", "/api/proxy/", {})
    assert st == 201, r
    assert r["limits"] == {"bridges": 1, "traffic": 10240000}
    st, r = api(h.api_port, "POST", "/api/proxy/",
                {"limits": {"traffic": 0}})
    assert st == 201, r
    assert r["limits"] == {"bridges": 1, "traffic": 0}
    rc, out, err = cli("proxy", "create", "--json", "--bridges", "3",
                       "--state-dir", h.state_dir)
    assert rc == 0, err
    assert json.loads(out)["limits"] == {"bridges": 3, "traffic": 10240000}


def test_web_pages_refused_without_token(hubs):
    """Loopback without a token: curl as a browser would send it (a
    cross-site form POST, a fetch, a rebound name) gets 403 and makes
    nothing; with the token the same headers are fine."""
    h = hubs()
    base = "http://127.0.0.1:%d/api/proxy/" % h.api_port
    for extra in (["-H", "Origin: http://evil.example",
                   "-H", "Content-Type: text/plain", "-d", "{}"],
                  ["-H", "Sec-Fetch-Site: cross-site", "-X", "POST"],
                  ["-H", "Host: evil.example:%d" % h.api_port, "-X", "POST"]):
        cp = subprocess.run(["curl", "-sS", "-w", "\\n%{http_code}"] + extra
                            + [base], capture_output=True, text=True,
                            timeout=scaled(30))
        body, code = cp.stdout.rsplit("\n", 1)
        assert code == "403", (extra, cp.stdout, cp.stderr)
        assert json.loads(body)["code"] == 403
    st, r = api(h.api_port, "GET", "/api/proxy/")
    assert st == 200 and r == {"proxies": []}
    st, r = api(h.api_port, "GET", "/api/proxy/",
                headers={"Host": "localhost:%d" % h.api_port})
    assert st == 200
    t = hubs(args=["--api-token", TOKEN, "--api-require-token"])
    st, r = api(t.api_port, "GET", "/api/proxy/",
                headers={"Authorization": "Bearer " + TOKEN,
                         "Origin": "http://dashboard.example"})
    assert st == 200


# --------------------------------------------------------------- CLI

def test_cli_proxy_commands(hub):
    sd = ["--state-dir", hub.state_dir]  # the address comes from hub.json
    rc, out, err = cli("proxy", "list", *sd)
    assert rc == 0, err
    assert "No proxies" in out

    rc, out, err = cli("proxy", "create", "--bridges", "1", "--traffic",
                       "10MB", *sd)
    assert rc == 0, err
    fields = dict(line.split(None, 1) for line in out.splitlines()[:4])
    ident = fields["identity"]
    assert IDENTITY_RE.match(ident)
    assert re.match(r"^[A-Za-z0-9]{24}$", fields["password"])
    assert ident in fields["url"]

    rc, out, err = cli("proxy", "create", "--json", "--api",
                       "127.0.0.1:%d" % hub.api_port)
    assert rc == 0, err
    second = json.loads(out)
    assert second["limits"] == {"bridges": 0, "traffic": 0}

    rc, out, err = cli("proxy", "list", *sd)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["IDENTITY", "USER", "BRIDGES", "TRAFFIC"]
    assert "LAST SEEN" in lines[0]
    row = [line for line in lines if line.startswith(ident)][0]
    assert "0/1" in row
    assert "(\u2193 0 B) (\u2191 0 B)" in row
    assert "10 MB" in row and "never" in row
    # columns line up: every row starts its USER column where the header does
    col = lines[0].index("USER")
    for line in lines[1:]:
        assert line[col - 2:col] == "  " and line[col] != " "

    rc, out, err = cli("proxy", "list", "--json", *sd)
    assert rc == 0, err
    items = json.loads(out)
    assert sorted(p["identity"] for p in items) == sorted(
        [ident, second["identity"]])
    assert [p for p in items if p["identity"] == ident][0][
        "limits"] == {"bridges": 1, "traffic": 10240000}

    rc, out, err = cli("proxy", "remove", ident, *sd)
    assert rc == 0 and ident in out, err
    rc, out, err = cli("proxy", "remove", ident, *sd)
    assert rc == 1 and "Proxy not found" in err

    rc, out, err = cli("proxy", "prune", "--older-than", "1d", *sd)
    assert rc == 0 and "pruned 0 proxies" in out, (out, err)
    backdate(hub, second["identity"], 3600)
    rc, out, err = cli("proxy", "prune", "--older-than", "30m", *sd)
    assert rc == 0 and "pruned 1 proxy" in out and second["identity"] in out

    # usage errors
    for argv in (("proxy", "create", "--traffic", "lots", *sd),
                 ("proxy", "prune", "--older-than", "soon", *sd),
                 ("proxy", "remove", *sd),
                 ("proxy", "frobnicate")):
        rc, out, err = cli(*argv)
        assert rc == 2 and out == "" and err.strip(), (argv, rc, out, err)


def test_cli_hub_not_running(tmp_path):
    port = free_port()
    rc, out, err = cli("proxy", "list", "--api", "127.0.0.1:%d" % port)
    assert rc == 1
    assert "cannot reach the API" in err and "boot up --proxy" in err


# ------------------------------------------------------ daemon, status

def test_daemon_status_down(tmp_path):
    state = str(tmp_path / "state")
    http_port, api_port = free_port(), free_port()
    up = ["boot", "up", "--proxy", "--daemon", "--state-dir", state,
          "--http", "127.0.0.1:%d" % http_port,
          "--api", "127.0.0.1:%d" % api_port]
    rc, out, err = cli("boot", "status", "--state-dir", state)
    assert rc == 3 and "not running" in out

    rc, out, err = cli(*up)
    pid = None
    try:
        assert rc == 0, (out, err)
        m = re.search(r"started in the background \(pid (\d+)", out)
        assert m, out
        pid = int(m.group(1))
        assert tcp_listening(api_port)
        with open(os.path.join(state, "hub.pid")) as f:
            assert int(f.read()) == pid
        assert os.stat(state).st_mode & 0o777 == 0o700

        # a second hub on the same state directory is refused at once
        rc2, out2, err2 = cli(*up)
        assert rc2 == 1 and "already running" in err2

        rc, out, err = cli("boot", "status", "--state-dir", state)
        assert rc == 0, err
        assert re.search(r"hub \(proxy\): running \(pid %d, api "
                         r"127\.0\.0\.1:%d" % (pid, api_port), out), out
        assert "node (bridge): not running" in out
        rc, out, err = cli("boot", "status", "--json", "--proxy",
                           "--state-dir", state)
        assert rc == 0, err
        j = json.loads(out)
        assert j[0]["running"] and j[0]["pid"] == pid
        assert j[0]["api"] == "127.0.0.1:%d" % api_port

        # the proxy CLI finds the daemon's API through hub.json
        rc, out, err = cli("proxy", "create", "--state-dir", state)
        assert rc == 0, err

        rc, out, err = cli("boot", "down", "--proxy", "--state-dir", state)
        assert rc == 0, err
        assert "hub (proxy): stopped (pid %d)" % pid in out
        pid_alive = os.path.exists("/proc/%d" % pid)
        assert not pid_alive
        pid = None
        assert not os.path.exists(os.path.join(state, "hub.pid"))
        assert not os.path.exists(os.path.join(state, "hub.json"))
        with open(os.path.join(state, "hub.log")) as f:
            log = f.read()
        assert sanitizer_report(log) is None, log

        rc, out, err = cli("boot", "down", "--state-dir", state)
        assert rc == 0 and "not running" in out
        rc, out, err = cli("boot", "status", "--state-dir", state)
        assert rc == 3
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_stale_pid_file_is_ignored(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    # a pid that cannot be running
    (state / "hub.pid").write_text("2147483646\n")
    rc, out, err = cli("boot", "status", "--proxy", "--state-dir", state)
    assert rc == 3 and "not running" in out
    rc, out, err = cli("boot", "down", "--proxy", "--state-dir", state)
    assert rc == 0 and "not running" in out
