"""Attacks on the hub's HTTP answers, through a real hub and a real bridge
node:

- tenants share one site: tenant A's upstream (nginx) sets cookies with
  `Domain=<the hub's domain>`, and curl's cookie jar, as a browser would,
  then sends them to tenant B. With `--cookie-isolation` (the default
  for a domain other than localhost) the hub removes every Domain
  attribute that names a parent of A's host, so the cookie stays with A;
  folded, percent-escaped and split heads do not get one through;
- a `101 Switching Protocols` to a request that asked for no upgrade
  would turn the pair into an opaque relay: the hub answers 502;
- `Host: <identity>.<domain>:99999999` (a port that is not 1-65535):
  400.
"""

import os
import socket
import subprocess

import pytest

from helpers import find_binary, free_port, require_binary, scaled, \
    start_nginx, tcp_listening, wait_for
from test_tunnel_x_edges import (Reader, framing_upstream, nothing_to_read,
                                 request, user_conn)

DOMAIN = "sluice.test"


# ------------------------------------------------------------- peers

class Nginx:
    """nginx on a free loopback port; `locations` is the text of its
    server block."""

    def __init__(self, workdir, name, locations):
        nginx = require_binary("nginx")
        d = os.path.join(str(workdir), name)
        self.port = free_port()
        self.proc = start_nginx(
            nginx, d, name, self.port,
            "    default_type text/plain;\n" + locations, connections=64)
        wait_for(lambda: tcp_listening(self.port), 15, what=name)

    def stop(self):
        self.proc.kill_group()


def curl(hub, host, jar, path="/"):
    """Body of a GET through the hub with curl and a cookie jar."""
    name = host.split(":")[0]
    out = subprocess.run(
        [require_binary("curl"), "-sS", "--max-time", str(scaled(20)),
         "-c", jar, "-b", jar,
         "--resolve", "%s:%d:127.0.0.1" % (name, hub.port),
         "http://%s%s" % (host, path)],
        capture_output=True, timeout=scaled(30))
    assert out.returncode == 0, out.stderr
    return out.stdout.decode()


def jar_lines(jar):
    """(domain, include-subdomains, name) of each cookie in a curl jar."""
    out = []
    with open(jar) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#HttpOnly_"):
                line = line[len("#HttpOnly_"):]
            elif not line or line.startswith("#"):
                continue
            p = line.split("\t")
            out.append((p[0], p[1], p[5]))
    return out


ECHO = """    location / { return 200 "cookie=[$http_cookie]\\n"; }"""


def setter(ident):
    """Tenant A's site: sets cookies for the whole domain, above it, with
    odd spellings, for its own host, and host-only."""
    own = "%s.%s" % (ident, DOMAIN)
    cookies = [
        "a_parent=1; Domain=.%s; Path=/" % DOMAIN,
        "a_upper=1; Path=/; domain = SLUICE.Test.",
        "a_tld=1; Domain=test; Path=/",
        "a_own=1; Domain=%s; Path=/" % own,
        "a_host=1; Path=/",
    ]
    return "    location /set {\n%s\n      return 200 \"set\\n\";\n    }\n" \
        % "".join('      add_header Set-Cookie "%s" always;\n' % c
                  for c in cookies) + ECHO


@pytest.mark.parametrize("mode", ["default", "off"])
def test_cookie_of_one_tenant_never_reaches_another(env, tmp_path, mode):
    """The attack: tenant A's site sets `Domain=.sluice.test` cookies;
    curl's jar (as a browser) then sends them to tenant B, a sibling under
    the same domain. By default (a domain other than localhost) the hub
    removes those Domain attributes, so curl keeps the cookies for A's
    host alone: A still gets every cookie, B none. With
    `--cookie-isolation=off` B gets them (what happened before)."""
    args = ["--domain", DOMAIN]
    if mode == "off":
        args.append("--cookie-isolation=off")
    hub = env.hub(args=args)
    ca, cb = hub.create(), hub.create()
    a_site = Nginx(tmp_path, "nginx-a", setter(ca["identity"]))
    b_site = Nginx(tmp_path, "nginx-b", ECHO)
    env.others.extend([a_site, b_site])
    na = env.node(hub, "http://127.0.0.1:%d" % a_site.port, name="node-a",
                  creds=ca)
    nb = env.node(hub, "http://127.0.0.1:%d" % b_site.port, name="node-b",
                  creds=cb)
    host_a, host_b = hub.host(na.identity), hub.host(nb.identity)
    jar = str(tmp_path / "jar.txt")

    assert curl(hub, host_a, jar, "/set") == "set\n"
    seen_by_b = curl(hub, host_b, jar)
    seen_by_a = curl(hub, host_a, jar)
    a_name = "%s.%s" % (na.identity, DOMAIN)
    jar_now = jar_lines(jar)
    if mode == "off":
        # Without isolation tenant B reads tenant A's cookie.
        assert "a_parent=1" in seen_by_b, seen_by_b
        return
    assert "a_" not in seen_by_b, (seen_by_b, jar_now)
    for c in ("a_parent=1", "a_upper=1", "a_own=1", "a_host=1"):
        assert c in seen_by_a, (c, seen_by_a, jar_now)
    by_name = {n: (d, sub) for d, sub, n in jar_now}
    # Host-only now (curl writes FALSE for "include subdomains")...
    for n in ("a_parent", "a_upper", "a_host"):
        assert by_name[n] == (a_name, "FALSE"), (n, jar_now)
    # ... but for A's own host its Domain stayed.
    assert by_name["a_own"][0].lstrip(".") == a_name, jar_now
    assert by_name["a_own"][1] == "TRUE", jar_now


# -------------------------------------- raw upstream: how heads arrive

def raw_cookie_upstream(ident_host):
    """Answers by path with heads built to smuggle a Domain past a
    rewriter; /next answers plainly (the keep-alive still frames)."""
    def handler(conn, rec):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                b = conn.recv(65536)
                if not b:
                    return
                buf += b
            head, _, buf = buf.partition(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            body = b"body"
            if path == "/fold":
                # obs-fold: a browser reads "f=1; Domain=.sluice.test"
                conn.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: f=1;\r\n"
                             b" Domain=.sluice.test\r\nContent-Length: 4"
                             b"\r\n\r\n" + body)
            elif path == "/escaped":
                conn.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: e=1; "
                             b"Domain=sluice%2Etest\r\nSet-Cookie: u=1; "
                             b"Domain=\xef\xbc\x8esluice.test\r\n"
                             b"Content-Length: 4\r\n\r\n" + body)
            elif path == "/split":
                msg = (b"HTTP/1.1 200 OK\r\nSet-Cookie: s=1; Path=/; "
                       b"Domain=.sluice.test; Secure\r\nContent-Length: 4"
                       b"\r\n\r\n" + body)
                for i in range(0, len(msg), 7):
                    conn.sendall(msg[i:i + 7])
                    rec.setdefault("pieces", 0)
                    rec["pieces"] += 1
            elif path == "/continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                conn.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: c=1; "
                             b"Domain=sluice.test\r\nContent-Length: 4\r\n"
                             b"\r\n" + body)
            elif path == "/kept":
                conn.sendall(("HTTP/1.1 200 OK\r\nSet-Cookie: k=1; "
                              "Domain=%s\r\nSet-Cookie: o=1; "
                              "Domain=other.example\r\nContent-Length: 4"
                              "\r\n\r\n" % ident_host).encode() + body)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"
                             + b"next")
    return handler


def set_cookies(head_text):
    return [ln.split(":", 1)[1] for ln in head_text.split("\r\n")[1:]
            if ln.lower().startswith("set-cookie")]


@pytest.mark.parametrize("case", ["fold", "escaped", "split", "continue",
                                  "kept"])
def test_cookie_domain_not_smuggled(env, tcp_upstream, case):
    """Spellings a browser reads as the parent domain, a head split in
    7-byte pieces, a Set-Cookie after a 100 Continue: none keeps a
    Domain naming the hub's domain; a Domain naming the identity's own
    host (or an unrelated one, which browsers refuse anyway) stays; the
    keep-alive connection still frames the next answer."""
    holder = {}
    up = tcp_upstream(lambda c, r: raw_cookie_upstream(holder["h"])(c, r))
    hub = env.hub(args=["--domain", DOMAIN])
    creds = hub.create()
    holder["h"] = "%s.%s" % (creds["identity"], DOMAIN)
    node = env.node(hub, "http://127.0.0.1:%d" % up.port, creds=creds)
    host = hub.host(node.identity)
    s, rd = user_conn(hub)
    try:
        hdrs = {"Expect": "100-continue", "Content-Length": "0"} \
            if case == "continue" else None
        s.sendall(request(host, "GET", "/" + case, hdrs))
        st, _, text = rd.head()
        if case == "continue":
            assert st == 100
            st, _, text = rd.head()
        assert st == 200
        assert rd.exact(4) == b"body"
        got = set_cookies(text)
        if case == "fold":
            assert [c.strip() for c in got] == ["f=1"], text
            assert "\r\n " not in text
        elif case == "escaped":
            assert [c.strip() for c in got] == ["e=1", "u=1"], text
        elif case == "split":
            assert [c.strip() for c in got] == ["s=1; Path=/; Secure"], text
        elif case == "continue":
            assert [c.strip() for c in got] == ["c=1"], text
        elif case == "kept":
            assert [c.strip() for c in got] == [
                "k=1; Domain=%s" % holder["h"],
                "o=1; Domain=other.example"], text
        s.sendall(request(host, "GET", "/next"))
        st, h, _ = rd.head()
        assert st == 200 and rd.exact(4) == b"next"
        assert rd.leftover() == b"" and nothing_to_read(s)
    finally:
        s.close()
    if case == "split":
        assert up.accepted()[0]["pieces"] > 10


def test_cookie_isolation_off_for_localhost_and_forced_on(env,
                                                          tcp_upstream):
    """localhost (the default domain) is one machine: nothing to isolate,
    the header passes untouched; `--cookie-isolation` turns it on there
    too."""
    answer = (b"HTTP/1.1 200 OK\r\nSet-Cookie: l=1; Domain=localhost\r\n"
              b"Content-Length: 2\r\n\r\nok")

    def handler(conn, rec):
        buf = b""
        while True:
            b = conn.recv(65536)
            if not b:
                return
            buf += b
            while b"\r\n\r\n" in buf:
                _, _, buf = buf.partition(b"\r\n\r\n")
                conn.sendall(answer)
    up = tcp_upstream(handler)
    for args, want in (([], " l=1; Domain=localhost"),
                       (["--cookie-isolation"], " l=1")):
        hub = env.hub(args=args)
        node = env.node(hub, "http://127.0.0.1:%d" % up.port,
                        name="node%d" % len(args))
        s, rd = user_conn(hub)
        try:
            s.sendall(request(hub.host(node.identity), "GET", "/"))
            st, _, text = rd.head()
            assert st == 200 and rd.exact(2) == b"ok"
            assert set_cookies(text) == [want], text
        finally:
            s.close()


FRAMING = ["head", "1xx", "204", "304-length", "chunked", "close"]


@pytest.mark.parametrize("case", FRAMING)
def test_isolation_keeps_response_framing(env, tcp_upstream, case):
    """With isolation on, heads are held until whole and rewritten: every
    way a response ends (HEAD, 1xx, 204, a 304 with Content-Length,
    chunked in pieces, close-delimited) still ends where it did, and the
    next request gets its own answer."""
    up = tcp_upstream(framing_upstream)
    hub = env.hub(args=["--cookie-isolation", "--head-timeout-ms",
                        "120000"])
    node = env.node(hub, "http://127.0.0.1:%d" % up.port)
    host = hub.host(node.identity)
    s, rd = user_conn(hub)
    prev = {"head": "/head", "1xx": "/continue"}.get(case, "/" + case)
    try:
        if case == "head":
            s.sendall(request(host, "HEAD", "/head"))
            st, h, _ = rd.head()
            assert st == 200 and h["content-length"] == "5"
        elif case == "1xx":
            s.sendall(request(host, "POST", "/continue",
                              {"Expect": "100-continue",
                               "Content-Length": "4"}))
            assert rd.head()[0] == 100
            s.sendall(b"ping")
            assert rd.head()[0] == 103
            st, h, _ = rd.head()
            assert st == 200
            assert rd.exact(int(h["content-length"])) == b"got ping"
        elif case in ("204", "304-length"):
            s.sendall(request(host, "GET", "/" + case))
            assert rd.head()[0] == int(case[:3])
        elif case == "chunked":
            s.sendall(request(host, "GET", "/chunked"))
            st, h, _ = rd.head()
            assert st == 200
            assert rd.chunked() == (b"hello world", [b"X-Sum: 11"])
        elif case == "close":
            s.sendall(request(host, "GET", "/close"))
            assert rd.head()[0] == 200
            assert rd.until_eof() == b"to the end of the connection"
            s.close()
            s, rd = user_conn(hub)
            prev = "-"
        s.sendall(request(host, "GET", "/second"))
        st, h, _ = rd.head()
        assert st == 200
        assert rd.exact(int(h["content-length"])) == \
            ("second after %s" % prev).encode()
        assert rd.leftover() == b"" and nothing_to_read(s)
    finally:
        s.close()


# ------------------------------------------- a 101 nobody asked for

@pytest.mark.parametrize("isolation", ["off", "on"])
def test_unrequested_101_is_a_502(env, tcp_upstream, isolation):
    """The upstream answers a plain GET with `101 Switching Protocols` and
    goes on in a protocol of its own: the user gets 502 (nothing of the
    101), the reason is logged once, and the next user, who asks for an
    upgrade, still gets its 101 and a byte stream. The same with cookie
    isolation on, where response heads are held and rewritten."""
    def handler(conn, rec):
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = conn.recv(65536)
            if not b:
                return
            buf += b
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                     b"Connection: Upgrade\r\n\r\nraw bytes of another "
                     b"protocol")
        while conn.recv(65536):
            pass
    up = tcp_upstream(handler)
    hub = env.hub(args=["--cookie-isolation=%s" % isolation])
    node = env.node(hub, "http://127.0.0.1:%d" % up.port)
    host = hub.host(node.identity)
    s, rd = user_conn(hub)
    try:
        s.sendall(request(host, "GET", "/plain"))
        st, _, text = rd.head()
        assert st == 502, text
        rd.until_eof()
    finally:
        s.close()
    why = "101 Switching Protocols to a request that asked for no upgrade"
    wait_for(lambda: why in hub.proc.stderr() + hub.proc.stdout(), 10,
             what="the 101 in the hub's log")
    assert (hub.proc.stderr() + hub.proc.stdout()).count(why) == 1

    s, rd = user_conn(hub)
    try:
        s.sendall(request(host, "GET", "/up", {"Connection": "Upgrade",
                                               "Upgrade": "x"}))
        st, _, _ = rd.head()
        assert st == 101
        assert rd.exact(len(b"raw bytes of another protocol")) == \
            b"raw bytes of another protocol"
    finally:
        s.close()


# ------------------------------------------------- the port in Host

@pytest.mark.parametrize("port", ["99999999", "65536", "0", "", "8o8"])
def test_host_with_bad_port_is_400(env, tcp_upstream, port):
    """`Host: <identity>.<domain>:<port>` with a port that is not 1-65535
    (in at most five digits) is a malformed head: 400 with the reason,
    nothing reaches the upstream. 65535 is a port."""
    def handler(conn, rec):
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = conn.recv(65536)
            if not b:
                return
            buf += b
        rec["head"] = buf
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    up = tcp_upstream(handler)
    hub = env.hub()
    node = env.node(hub, "http://127.0.0.1:%d" % up.port)
    name = "%s.%s" % (node.identity, hub.domain)
    s, rd = user_conn(hub)
    try:
        s.sendall(request("%s:%s" % (name, port), "GET", "/"))
        st, h, _ = rd.head()
        assert st == 400
        assert rd.exact(int(h["content-length"])) == \
            b"Bad Request: bad port in Host"
    finally:
        s.close()
    up.sync()
    assert not any("head" in r for r in up.accepted())
    assert "malformed request head (bad port in Host)" in \
        hub.proc.stderr() + hub.proc.stdout()
    s, rd = user_conn(hub)
    try:
        s.sendall(request("%s:65535" % name, "GET", "/"))
        st, h, _ = rd.head()
        assert st == 200 and rd.exact(2) == b"ok"
    finally:
        s.close()
