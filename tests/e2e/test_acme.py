"""ACME at the hub (issue 15) against a real test CA and a real DNS server:
pebble with pebble-challtestsrv as its DNS, and BIND 9 taking RFC 2136
updates with TSIG (acme_support.py starts them once for the session).

- TLS-ALPN-01: a new bridge's identity gets a certificate chained to
  pebble's root, on demand, per identity; curl with that root verifies
  https://<identity>.<domain>:PORT/; the files are 0600; a restart serves
  them at once; the API and `sluice proxy list` show the state.
- DNS-01: one certificate for the domain and its wildcard through BIND;
  the TXT record is gone afterwards.
- Renewal: a 12-second certificate is renewed (at two thirds) while a
  download runs over a session made with the old one; the download
  completes.
- Faults, each logged once with its reason while users keep being served
  by the local CA: the CA down at start (then up: the certificate
  comes), the CA's validation failing, a wrong TSIG key.

The hubs all listen on one --https port (pebble validates TLS-ALPN-01 on
one port for every name), one test after the other.
"""

import base64
import hashlib
import os
import re
import stat
import subprocess

import pytest

from acme_support import DOMAIN, AcmePeers, dig
from helpers import (Proc, free_port, require_binary, scaled, sluice_bin,
                     tcp_listening, wait_for)
from tls_support import curl_tls, https_get, load_cert, peer_cert, tls_connect
from tunnel_x_support import Hub, big_file

DEBUG = ["--log-level=debug"]


@pytest.fixture(scope="session")
def peers(tmp_path_factory):
    for b in ("pebble", "pebble-challtestsrv", "named", "tsig-keygen", "dig"):
        require_binary(b)
    p = AcmePeers(tmp_path_factory.mktemp("acme-peers"))
    try:
        yield p
    finally:
        p.stop()


def acme_hub(env, peers, pebble, *args):
    h = Hub(env.workdir, name="hub%d" % len(env.hubs),
            https_port=peers.tls_port, global_args=DEBUG,
            args=["--domain", DOMAIN, "--acme", pebble.directory,
                  "--acme-ca", pebble.ca, "--acme-email", "ops@" + DOMAIN,
                  "--acme-retry-ms", "500", "--acme-poll-ms", "200"]
            + list(args))
    env.hubs.append(h)
    return h


def name_of(ident):
    return "%s.%s" % (ident, DOMAIN)


def cert_of(hub, ident):
    return hub.proxy(ident).get("certificate") or {}


def wait_cert(hub, ident, state="valid", timeout=30):
    def ready():
        c = cert_of(hub, ident)
        if not hub.proc.alive():
            raise AssertionError("hub died:\n" + hub.proc.describe())
        return c if c.get("state") == state else None
    return wait_for(ready, timeout, interval=0.1,
                    what="certificate of %s %s" % (ident, state))


def served_serial(hub, host):
    return load_cert(peer_cert(hub.https_port, host)[0]).serial_number


def log_lines(hub, pattern):
    return [ln for ln in hub.proc.stderr().splitlines()
            if re.search(pattern, ln)]


# ----------------------------------------------------------- TLS-ALPN-01

def test_tls_alpn_per_identity(env, peers):
    pebble = peers.pebble("alpn")
    hub = acme_hub(env, peers, pebble)
    up = env.hash_upstream("alpha")
    node = env.node(hub, up.url)
    ident = node.identity
    c = wait_cert(hub, ident)
    assert c["name"] == name_of(ident)
    assert "Pebble" in c["issuer"], c
    assert c["not_after"] > 0 and c["renew_at"] > 0 and "error" not in c
    # curl with pebble's root verifies the name, through the bridge
    cp = curl_tls(hub.https_port, name_of(ident), "/x", "--fail",
                  cafile=pebble.root)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "alpha /x"
    # ... and the hub's local CA no longer does, for that name
    cp = curl_tls(hub.https_port, name_of(ident), "/x", cafile=hub.ca)
    assert cp.returncode != 0
    # another identity: its own certificate, ordered when it is allocated
    other = hub.create()["identity"]
    c2 = wait_cert(hub, other)
    assert c2["serial"] != c["serial"]
    assert served_serial(hub, name_of(other)) == int(c2["serial"], 16)
    # the files: the account key and each certificate with its key, 0600
    d = os.path.join(hub.state_dir, "acme")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for f in ("account.key", name_of(ident) + ".crt", name_of(ident) + ".key",
              name_of(other) + ".crt"):
        assert stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode) == 0o600, f
    # the validator was answered on the hub's TLS port (acme-tls/1)
    assert log_lines(hub, r"validator asks for %s" % re.escape(name_of(ident)))
    # proxy list shows it
    cp = subprocess.run([sluice_bin(), "proxy", "list", "--api",
                         "127.0.0.1:%d" % hub.api_port],
                        capture_output=True, text=True, timeout=scaled(10))
    assert cp.returncode == 0, cp.stderr
    row = [ln for ln in cp.stdout.splitlines() if ln.startswith(ident)]
    assert row and "valid until" in row[0], cp.stdout
    assert "CERT" in cp.stdout.splitlines()[0]

    # a restart serves the stored certificate at once, orders nothing
    serial = c["serial"]
    state_dir = hub.state_dir
    assert hub.stop() == 0
    env.hubs.remove(hub)
    hub2 = Hub(env.workdir, name="hub-again", https_port=peers.tls_port,
               state_dir=state_dir, global_args=DEBUG,
               args=["--domain", DOMAIN, "--acme", pebble.directory,
                     "--acme-ca", pebble.ca])
    env.hubs.append(hub2)
    c = wait_cert(hub2, ident, timeout=10)
    assert c["serial"] == serial
    wait_for(lambda: served_serial(hub2, name_of(ident)) == int(serial, 16),
             10, interval=0.1, what="the stored certificate served")
    assert log_lines(hub2, "serving the stored certificate for %s"
                     % re.escape(name_of(ident)))
    assert not log_lines(hub2, "ordering a certificate for %s"
                         % re.escape(name_of(ident)))


# ----------------------------------------------------------------- DNS-01

def test_dns01_wildcard_through_bind(env, peers):
    bind = peers.named()
    pebble = peers.pebble("dns")
    hub = acme_hub(env, peers, pebble, "--acme-dns-update", bind.addr,
                   "--acme-tsig-key", bind.key_file)
    up = env.hash_upstream("beta")
    node = env.node(hub, up.url)
    c = wait_cert(hub, node.identity)
    assert c["name"] == DOMAIN
    leaf = load_cert(os.path.join(hub.state_dir, "acme", DOMAIN + ".crt"))
    from tls_support import cert_sans
    assert sorted(cert_sans(leaf)[0]) == sorted([DOMAIN, "*." + DOMAIN])
    # the wildcard serves every identity, verified against pebble's root
    cp = curl_tls(hub.https_port, name_of(node.identity), "/y", "--fail",
                  cafile=pebble.root)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "beta /y"
    st, _, _ = https_get(hub.https_port, "%s:%d" % (DOMAIN, hub.https_port),
                         cafile=pebble.root)
    assert st in (200, 404), st
    # BIND took the records (signed) and they are gone again
    named = bind.log()
    assert re.search(r"key sluice-test: updating zone '%s/IN': adding an RR "
                     r"at '_acme-challenge\.%s' TXT" % (re.escape(DOMAIN),
                                                        re.escape(DOMAIN)),
                     named), named[-2000:]
    assert "deleting an RR at _acme-challenge.%s TXT" % DOMAIN in named
    assert dig(bind.addr, "_acme-challenge." + DOMAIN, "TXT") == []
    assert log_lines(hub, "removed the TXT records of _acme-challenge")


# ---------------------------------------------------------------- renewal

def test_renewal_under_live_download(env, peers, tmp_path):
    pebble = peers.pebble("short")  # 12-second certificates
    hub = acme_hub(env, peers, pebble, "--acme-orders-per-hour", "1000")
    web = env.nginx()
    want = big_file(os.path.join(web.root, "big.bin"), 32)
    node = env.node(hub, web.url)
    host = name_of(node.identity)
    first = wait_cert(hub, node.identity)["serial"]
    wait_for(lambda: served_serial(hub, host) == int(first, 16), 10,
             interval=0.1, what="the first certificate served")

    s = tls_connect(hub.https_port, host, cafile=pebble.root, timeout=60)
    h = hashlib.sha256()
    try:
        s.sendall(("GET /big.bin HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
                   % (host, hub.https_port)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = s.recv(65536)
            assert b, buf
            buf += b
        head, _, body = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        n = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        got = len(body)
        h.update(body)
        while got < 1 << 20:
            b = s.recv(65536)
            assert b
            h.update(b)
            got += len(b)

        # the renewal, at two thirds of 12 s: a new serial for new
        # handshakes while this one stays mid-download
        def renewed():
            c = cert_of(hub, node.identity)
            return c if c.get("serial") not in (None, first) else None
        c = wait_for(renewed, 30, interval=0.2, what="the renewal")
        wait_for(lambda: served_serial(hub, host) == int(c["serial"], 16),
                 10, interval=0.1, what="the renewed certificate served")
        while got < n:
            b = s.recv(1 << 20)
            assert b, "EOF after %d of %d bytes" % (got, n)
            h.update(b)
            got += len(b)
    finally:
        s.close()
    assert got == n and h.hexdigest() == want
    assert len(log_lines(hub, "ordering a certificate for %s \\(renewal\\)"
                         % re.escape(host))) >= 1
    # the bridge never noticed
    assert len(node.bridges()) == 1


# ----------------------------------------------------------------- faults

def test_ca_down_at_start(env, peers):
    pebble = peers.new_pebble("late", start=False)
    hub = acme_hub(env, peers, pebble)
    ident = hub.create()["identity"]
    c = wait_cert(hub, ident, state="error")
    assert "cannot reach the ACME server %s" % pebble.directory in c["error"]
    assert "127.0.0.1 port %d" % pebble.port in c["error"], c
    # users are served meanwhile, with the local CA's certificate
    st, _, body = https_get(hub.https_port, "%s:%d" % (name_of(ident),
                                                       hub.https_port),
                            cafile=hub.ca)
    assert (st, body) == (502, b"Proxy not connected")
    # it keeps trying (debug lines) but says so once
    wait_for(lambda: len(log_lines(hub, "cannot reach the ACME server")) >= 3,
             20, interval=0.2, what="retries")
    assert len(log_lines(hub, r"error .*cannot reach the ACME server")) == 1
    # the CA comes up: the certificate comes
    pebble.start()
    c = wait_cert(hub, ident, timeout=30)
    cp = curl_tls(hub.https_port, name_of(ident), "/", "-o", os.devnull,
                  "-w", "%{http_code}", cafile=pebble.root)
    assert cp.returncode == 0 and cp.stdout == "502", cp.stderr


def test_expired_while_the_ca_is_gone(env, peers):
    """A certificate whose renewal fails until its end is taken out of
    service: the local CA's serves again, and the API says why."""
    pebble = peers.new_pebble("gone", validity=10)
    hub = acme_hub(env, peers, pebble)
    ident = hub.create()["identity"]
    c = wait_cert(hub, ident)
    host = name_of(ident)
    wait_for(lambda: served_serial(hub, host) == int(c["serial"], 16), 10,
             interval=0.1, what="the certificate served")
    pebble.stop()
    c = wait_cert(hub, ident, state="error", timeout=30)
    assert "cannot reach the ACME server" in c["error"], c
    assert len(log_lines(hub, "the certificate for %s expired on .*renewal "
                         "failing: cannot reach" % re.escape(host))) == 1

    def local_ca_serves():
        cp = curl_tls(hub.https_port, host, "/", "-o", os.devnull, "-w",
                      "%{http_code}", cafile=hub.ca)
        return cp.returncode == 0 and cp.stdout == "502"
    wait_for(local_ca_serves, 10, interval=0.1,
             what="the local CA's certificate served again")


def test_challenge_rejected(env, peers):
    pebble = peers.pebble("refusing")
    hub = acme_hub(env, peers, pebble)
    up = env.hash_upstream("gamma")
    node = env.node(hub, up.url)
    ident = node.identity
    c = wait_cert(hub, ident, state="error")
    assert "could not validate %s by tls-alpn-01" % name_of(ident) \
        in c["error"], c
    # the CA's words name the address it tried
    assert "127.0.0.1:%d" % pebble.tls_port in c["error"], c
    wait_for(lambda: len(log_lines(hub, "failed again: the CA could not "
                                   "validate")) >= 2, 20, interval=0.2,
             what="retries")
    assert len(log_lines(hub, r"error .*could not validate")) == 1
    # users are served meanwhile by the local CA
    cp = curl_tls(hub.https_port, name_of(ident), "/z", "--fail",
                  cafile=hub.ca)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "gamma /z"


def test_wrong_tsig_key(env, peers, tmp_path):
    bind = peers.named()
    pebble = peers.pebble("dns")
    bad = str(tmp_path / "wrong.key")
    with open(bind.key_file) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(re.sub(r'secret "[^"]+"',
                       'secret "c2x1aWNlIHRlc3Qga2V5IHNlY3JldCAzMiBieXRlcyE="',
                       text))
    hub = acme_hub(env, peers, pebble, "--acme-dns-update", bind.addr,
                   "--acme-tsig-key", bad)
    up = env.hash_upstream("delta")
    node = env.node(hub, up.url)
    c = wait_cert(hub, node.identity, state="error")
    assert "refused the update of _acme-challenge.%s: TSIG BADSIG" % DOMAIN \
        in c["error"], c
    assert bind.addr in c["error"]
    wait_for(lambda: len(log_lines(hub, "failed again: .*TSIG BADSIG")) >= 2,
             20, interval=0.2, what="retries")
    assert len(log_lines(hub, r"error .*TSIG BADSIG")) == 1
    assert dig(bind.addr, "_acme-challenge." + DOMAIN, "TXT") == []
    cp = curl_tls(hub.https_port, name_of(node.identity), "/w", "--fail",
                  cafile=hub.ca)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "delta /w"


def test_external_account_binding(env, peers):
    """A CA that demands an external account binding: refused without one
    (said once, users served), issued with --acme-eab KID:KEY."""
    key = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    pebble = peers.new_pebble("eab", eab={"kid-1": key})
    hub = acme_hub(env, peers, pebble)
    ident = hub.create()["identity"]
    c = wait_cert(hub, ident, state="error")
    assert "external account binding" in c["error"], c
    assert len(log_lines(hub, r"error .*external account binding")) == 1
    assert hub.stop() == 0
    env.hubs.remove(hub)
    # the same state (and account key), now bound
    hub = acme_hub(env, peers, pebble, "--acme-eab", "kid-1:" + key)
    ident = hub.create()["identity"]
    wait_cert(hub, ident)
    cp = curl_tls(hub.https_port, name_of(ident), "/", "-o", os.devnull,
                  "-w", "%{http_code}", cafile=pebble.root)
    assert cp.returncode == 0 and cp.stdout == "502", cp.stderr


def test_flags_checked(tmp_path):
    cases = [
        (["--acme-email", "a@b.test"], "need --acme URL"),
        (["--acme", "https://127.0.0.1:1/dir", "--acme-dns-update",
          "127.0.0.1:53"], "go together"),
        (["--acme", "https://127.0.0.1:1/dir", "--http", "127.0.0.1:0"],
         "--acme needs --https"),
    ]
    for args, says in cases:
        cp = subprocess.run([sluice_bin(), "boot", "up", "--proxy",
                             "--state-dir", str(tmp_path / "s")] + args,
                            capture_output=True, text=True,
                            timeout=scaled(10))
        assert cp.returncode == 2, (args, cp.stderr)
        assert says in cp.stderr, (args, cp.stderr)


def test_dns01_over_tcp_when_udp_gets_no_answer(env, peers):
    """The DNS server reached at a port that only takes TCP (a forwarder
    to BIND): the updates and queries go over TCP."""
    bind = peers.named()
    pebble = peers.pebble("dns")
    socat = require_binary("socat")
    port = free_port(udp=True, both=True)
    fwd = Proc([socat, "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % port,
                "TCP:%s" % bind.addr], env.workdir, "socat-dns")
    try:
        wait_for(lambda: tcp_listening(port), 10, what="socat listening")
        hub = acme_hub(env, peers, pebble, "--acme-dns-update",
                       "127.0.0.1:%d" % port, "--acme-tsig-key",
                       bind.key_file)
        ident = hub.create()["identity"]
        c = wait_cert(hub, ident)
        assert c["name"] == DOMAIN
        assert log_lines(hub, "dns: asking 127.0.0.1:%d over TCP" % port)
        assert dig(bind.addr, "_acme-challenge." + DOMAIN, "TXT") == []
    finally:
        fwd.kill_group()
