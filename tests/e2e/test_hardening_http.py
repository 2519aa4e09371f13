"""Attacks on the tunnel's HTTP handling, through a real hub and a real
bridge node to upstreams that show what they get:

- request smuggling through head normalisation: a head http-parser ends
  at "\\r\\n\\rX" while the hub's reader goes on to a later empty line,
  obs-fold, whitespace between a header name and its colon, bare CR. The
  hub answers 400 with the reason (one log line each) and the upstream
  never sees a second request, a Host the user chose, or a forwarding
  header the user wrote;
- client address spoofing: with two X-Forwarded-For headers nginx realip
  (real_ip_recursive) took the user's second one; an empty one gave a
  corrupt head after the bridge had been told to dial. The hub sends ONE
  X-Forwarded-For with the peer last (nginx's $proxy_add_x_forwarded_for),
  and drops the user's Forwarded, X-Forwarded-Proto and -Host;
- an IPv6 upstream literal with a zone that wrote past the node's host
  buffer (AddressSanitizer: stack-buffer-overflow), given to --upstream
  and to POST /api/bridge/: refused in words, no sanitizer report.

The raw upstream reads what it gets as a lenient server would (any CR or
LF ends a line, a line starting with whitespace continues the one
before, whitespace around a name is ignored), so that what a lenient
upstream would take as a second request or a forged header is seen.
"""

import os
import re
import socket
import subprocess
import threading

import pytest

from helpers import (TcpUpstream, find_binary, free_port, scaled, sluice_bin,
                     start_nginx, tcp_listening, wait_for)
from tunnel_x_support import TunnelEnv, read_response

OK_BODY = b"ok"


def _recorder(conn, rec):
    """Records every byte; answers 200 "ok" once a head has come."""
    data = b""
    answered = False
    conn.settimeout(scaled(20))
    while True:
        try:
            b = conn.recv(65536)
        except socket.timeout:
            rec["timeout"] = True
            break
        if not b:
            break
        data += b
        rec["data"] = data
        if not answered and (b"\r\n\r\n" in data or b"\n\n" in data):
            answered = True
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
                         + OK_BODY)
    rec["data"] = data


def lenient_read(data):
    """(request lines, [(name, value)]) as a lenient server reads the bytes
    an upstream got: every line of every request, folded lines joined."""
    requests, headers = [], []
    for line in re.split(rb"\r\n|\r|\n", data):
        text = line.decode("latin-1")
        m = re.match(r"^\s*([A-Z]+) (\S+) HTTP/1\.[01]\s*$", text)
        if m:
            requests.append((m.group(1), m.group(2)))
            continue
        if text[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, (value + " " + text.strip()).strip())
            continue
        if ":" in text:
            name, _, value = text.partition(":")
            headers.append((name.strip().lower(), value.strip()))
    return requests, headers


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A hub; a bridge to a raw upstream that records every byte; a
    bridge to nginx with realip taking X-Forwarded-For from the bridge
    (127.0.0.1) only, and echoing $remote_addr."""
    workdir = tmp_path_factory.mktemp("hardening_http")
    env = TunnelEnv(workdir)
    raw = TcpUpstream(_recorder)
    nginx = None
    try:
        hub = env.hub()
        node = env.node(hub, "http://127.0.0.1:%d" % raw.port)
        nginx = RealipNginx(os.path.join(str(workdir), "nginx-realip"))
        node2 = env.node(hub, "http://127.0.0.1:%d" % nginx.port,
                         name="node-realip")
    except BaseException:
        raw.close()
        if nginx is not None:
            nginx.stop()
        env.close()
        raise
    yield {"env": env, "hub": hub, "raw": raw, "node": node,
           "host": hub.host(node.identity), "realip": node2,
           "realip_host": hub.host(node2.identity), "workdir": str(workdir)}
    raw.close()
    problems = env.close()
    nginx.stop()
    problems += nginx.problems()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


class RealipNginx:
    """nginx as a site behind a proxy is told to run: trust
    X-Forwarded-For from the proxy (here the bridge, 127.0.0.1) and take
    the client from it (real_ip_recursive), and answer $remote_addr."""

    def __init__(self, d):
        self.port = free_port()
        nginx = find_binary("/usr/sbin/nginx") or find_binary("nginx")
        assert nginx, "nginx is missing: scripts/setup.sh installs it"
        self.proc = start_nginx(nginx, d, "nginx-realip", self.port, """\
    real_ip_header X-Forwarded-For;
    set_real_ip_from 127.0.0.1;
    real_ip_recursive on;
    location / {
      default_type text/plain;
      return 200 "$remote_addr\\n";
    }""")

        def up():
            if not self.proc.alive():
                raise AssertionError("nginx exited:\n"
                                     + self.proc.describe())
            return tcp_listening(self.port)
        wait_for(up, 15, what="nginx listening")

    def stop(self):
        self.proc.kill_group()

    def problems(self):
        err = self.proc.stderr()
        return ["nginx: " + line for line in err.splitlines()
                if "[emerg]" in line or "[alert]" in line]


def exchange(hub, raw, source="127.0.0.1"):
    """Sends raw bytes to the hub's public port from source, reads one
    response, closes. (status, head text, body)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(scaled(10))
        s.bind((source, 0))
        s.connect(("127.0.0.1", hub.port))
        s.sendall(raw)
        return read_response(s)
    finally:
        s.close()


def upstream_records(site, before):
    """The raw upstream's connections since `before`, each finished (the
    bridge closed it after the user left): exact, via sync()."""
    raw = site["raw"]
    raw.sync(timeout=10)
    recs = raw.accepted()[before:]
    wait_for(lambda: all(r["done"].is_set() for r in recs), 20,
             what="the upstream's connections to end")
    return recs


def judge_upstream(site, recs, nrequests):
    """What every upstream connection got, read leniently: nrequests
    requests in all, each Host the one that routed here, forwarding
    headers the hub's own only."""
    seen = []
    for r in recs:
        data = r.get("data", b"")
        requests, headers = lenient_read(data)
        seen.extend(requests)
        where = "upstream got %r" % data
        hosts = [v for n, v in headers if n == "host"]
        assert hosts and all(h == site["host"] for h in hosts), where
        xff = [v for n, v in headers if n == "x-forwarded-for"]
        assert len(xff) == len(requests), "one X-Forwarded-For: " + where
        for v in xff:
            assert v.split(",")[-1].strip() == "127.0.0.1", where
        proto = [v for n, v in headers if n == "x-forwarded-proto"]
        assert proto == ["http"] * len(requests), where
        fhost = [v for n, v in headers if n == "x-forwarded-host"]
        assert fhost == [site["host"]] * len(requests), where
        assert not [v for n, v in headers if n == "forwarded"], where
    assert len(seen) == nrequests, "requests the upstream saw: %r" % seen
    return recs


def head(site, path="/", extra=b""):
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: "
            + site["host"].encode() + b"\r\n" + extra)


def log_count(hub, words):
    return hub.proc.stderr().count(words)


def test_plain_request_reaches_upstream_once(site):
    """The baseline the attacks are judged against."""
    before = len(site["raw"].accepted())
    st, _, body = exchange(site["hub"], head(site, "/plain", b"\r\n"))
    assert (st, body) == (200, OK_BODY)
    recs = judge_upstream(site, upstream_records(site, before), 1)
    assert len(recs) == 1


SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: evil.example\r\n\r\n"

# (name, bytes after the first request's Host line, words of the 400)
REFUSED = [
    # http-parser ends the head at "\r\n\rX"; the reader at the next
    # "\r\n\r\n": what lies between went on as a request of its own.
    ("cr-ends-head", b"Content-Length: 0\r\n\rX" + SMUGGLE, b"bare CR"),
    ("cr-cr", b"\r\r" + SMUGGLE, b"bare CR"),
    ("bare-cr-in-value", b"X-A: a\rGET /smuggled HTTP/1.1\r\n\r\n",
     b"bare CR"),
    # obs-fold: a lenient upstream joins the lines, the hub did not.
    ("fold-te", b"Transfer-Encoding:\r\n chunked\r\nContent-Length: %d"
     b"\r\n\r\n0\r\n\r\n" % (5 + len(SMUGGLE)) + SMUGGLE, b"obs-fold"),
    ("fold-forwarding", b"X-A: 1\r\n X-Forwarded-Host: evil.example\r\n"
     b"\r\n", b"obs-fold"),
    # whitespace before the colon: not the hub's X-Forwarded-Proto, but
    # one to a lenient upstream.
    ("space-colon-proto", b"X-Forwarded-Proto : https\r\n\r\n",
     b"whitespace in a header name"),
    ("space-colon-host", b"X-Forwarded-Host : evil.example\r\n\r\n",
     b"whitespace in a header name"),
    ("space-colon-te", b"Transfer-Encoding : chunked\r\nContent-Length: %d"
     b"\r\n\r\n0\r\n\r\n" % (5 + len(SMUGGLE)) + SMUGGLE,
     b"whitespace in a header name"),
]


@pytest.mark.parametrize("name,extra,words", REFUSED,
                         ids=[c[0] for c in REFUSED])
def test_smuggling_refused(site, name, extra, words):
    """Each head is answered 400 with the reason, said once in the log;
    the upstream sees nothing of it (above all no second request and no
    Host the user chose), and the site serves on."""
    hub = site["hub"]
    before = len(site["raw"].accepted())
    logged = log_count(hub, "malformed request head")
    st, _, body = exchange(hub, head(site, "/first", extra))
    recs = upstream_records(site, before)
    judge_upstream(site, recs, 0 if st == 400 else 1)
    assert st == 400, (st, body)
    assert body.startswith(b"Bad Request: "), body
    assert words.lower() in body.lower(), body
    assert recs == [], "the bridge was asked to dial for a refused head"
    wait_for(lambda: log_count(hub, "malformed request head") == logged + 1,
             5, what="one log line for the 400")
    assert words.decode() in hub.proc.stderr()
    st, _, body = exchange(hub, head(site, "/after", b"\r\n"))
    assert (st, body) == (200, OK_BODY)


def test_forwarded_headers_are_the_hubs(site):
    """The user's Forwarded, X-Forwarded-Proto and X-Forwarded-Host do not
    reach the upstream; the hub's do, once each."""
    before = len(site["raw"].accepted())
    st, _, body = exchange(site["hub"], head(
        site, "/fwd", b"Forwarded: for=6.6.6.6;host=evil.example;proto=https"
        b"\r\nX-Forwarded-Proto: https\r\nforwarded: for=\"[::1]\"\r\n"
        b"X-Forwarded-Host: evil.example\r\n\r\n"))
    assert (st, body) == (200, OK_BODY)
    recs = judge_upstream(site, upstream_records(site, before), 1)
    assert b"evil" not in recs[0]["data"]


def upstream_head(site, extra, source="127.0.0.1"):
    before = len(site["raw"].accepted())
    st, _, body = exchange(site["hub"], head(site, "/xff", extra), source)
    assert (st, body) == (200, OK_BODY), body
    recs = judge_upstream(site, upstream_records(site, before), 1)
    return recs[0]["data"].decode("latin-1")


def test_xff_merged_into_one_with_peer_last(site):
    text = upstream_head(site, b"X-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n"
                               b"X-Forwarded-For: 7.7.7.7, 8.8.8.8\r\n\r\n")
    assert text.count("X-Forwarded-For") == 1, text
    assert "\r\nX-Forwarded-For: 6.6.6.6, 7.7.7.7, 8.8.8.8, 127.0.0.1\r\n" \
        in text, text


def test_xff_empty_is_left_out(site):
    """An empty X-Forwarded-For (alone, or among others) is no value: the
    request is served and the head is whole."""
    text = upstream_head(site, b"X-Forwarded-For:\r\nAccept: */*\r\n\r\n")
    assert "\r\nX-Forwarded-For: 127.0.0.1\r\n" in text, text
    assert "\r\nAccept: */*\r\n" in text, text
    text = upstream_head(site, b"X-Forwarded-For: \r\nX-Forwarded-For: "
                               b"5.5.5.5\r\nX-Forwarded-For:\r\n\r\n")
    assert text.count("X-Forwarded-For") == 1, text
    assert "\r\nX-Forwarded-For: 5.5.5.5, 127.0.0.1\r\n" in text, text


def realip(site, extra):
    """What nginx realip takes as the client of a request from
    127.0.0.2 with these extra header lines."""
    hub = site["hub"]
    raw = (b"GET / HTTP/1.1\r\nHost: " + site["realip_host"].encode()
           + b"\r\n" + extra + b"\r\n")
    st, _, body = exchange(hub, raw, source="127.0.0.2")
    assert st == 200, (st, body)
    return body.decode().strip()


@pytest.mark.parametrize("extra", [
    b"",
    b"X-Forwarded-For: 6.6.6.6\r\n",
    b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n",
    b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 127.0.0.1\r\n"
    b"X-Forwarded-For: 7.7.7.7\r\n",
    b"X-Forwarded-For:\r\n",
    b"X-Forwarded-For:\r\nX-Forwarded-For: 7.7.7.7\r\n",
    b"Forwarded: for=7.7.7.7\r\nX-Real-IP: 7.7.7.7\r\n",
], ids=["none", "one", "two", "three", "empty", "empty-then-one",
        "forwarded"])
def test_realip_sees_the_real_client(site, extra):
    """nginx configured as a site behind a proxy is told to be (trust the
    bridge, take the client from X-Forwarded-For, recursively) gets the
    user's real address (127.0.0.2) whatever X-Forwarded-For the user
    sends."""
    assert realip(site, extra) == "127.0.0.2"


# -------------------------------------------------- the node's URL parser

def attack_url(zone="%25abcdefghijklmno"):
    lit = "".join(":" if i % 5 == 4 else "0" for i in range(253))
    return "http://[%s%s]:80" % (lit, zone)


def test_upstream_url_overflow_refused_on_the_command_line(site, tmp_path):
    """`--upstream` with the overflowing literal: the node refuses to
    start, says why, and no sanitizer speaks."""
    for i, url in enumerate((attack_url(), attack_url("%abcdefghijklmno"),
                             "http://[1.2.3.4]:80")):
        state = tmp_path / ("state%d" % i)
        state.mkdir()
        cp = subprocess.run(
            [sluice_bin(), "boot", "up", "--bridge", "--hub",
             site["hub"].url, "--state-dir", str(state), "--upstream", url],
            capture_output=True, text=True, errors="replace",
            timeout=scaled(30), stdin=subprocess.DEVNULL)
        out = cp.stdout + cp.stderr
        assert "AddressSanitizer" not in out and "runtime error" not in out, \
            out
        assert cp.returncode != 0, out
        assert "bad IPv6 literal" in out, out


def test_upstream_url_overflow_refused_by_the_api(site):
    """POST /api/bridge/ with the overflowing literal: 400 in words; the
    node serves on (its stderr is judged at teardown)."""
    node = site["node"]
    for url in (attack_url(), attack_url("%abcdefghijklmno")):
        st, body = node.add_bridge(url)
        assert st == 400, (st, body)
        assert b"bad IPv6 literal" in body, body
        assert node.alive()
    st, _, body = exchange(site["hub"], head(site, "/still", b"\r\n"))
    assert (st, body) == (200, OK_BODY)
