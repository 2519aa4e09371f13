"""The hub's TLS listener (`--https`) against real clients: curl with
--cacert reaching two identities on one port by SNI, `openssl s_client`
(SAN, TLS 1.3, the chain; TLS 1.0/1.1 and no shared cipher refused with an
alert), the local CA the hub makes (files, modes, reuse), certificates by
SNI from --tls-cert/--tls-key (exact, wildcard, default), a bad file at
start, SIGHUP with a new certificate under a live download and with a
broken file, --https-redirect, X-Forwarded-Proto and the https:// URLs the
hub hands out.

SLUICE_TLS_RELOAD_MB (default 64) sizes the download that runs across the
SIGHUP; the issue's figure is 1024.
"""

import hashlib
import json
import os
import re
import signal
import ssl
import stat
import subprocess
import time
import urllib.parse
import warnings

import pytest

from helpers import free_port, scaled, sluice_bin, wait_for
from netns import Netns
from tls_support import (Ca, cert_sans, curl_tls, echo_upstream,
                         https_get, issued_by, load_cert, openssl_ciphers, peer_cert,
                         s_client, s_client_certs, tls_connect)
from tunnel_x_support import (big_file, http_get, pool_or_mux,
                              read_response, stop_clean)

RELOAD_MB = int(os.environ.get("SLUICE_TLS_RELOAD_MB", "64") or "64")


def tls_hub(env, *args, **kw):
    return env.hub(tls=True, args=list(args), **kw)


def echo(env):
    u = echo_upstream()
    env.others.append(u)
    return u


def name_of(hub, ident):
    return "%s.%s" % (ident, hub.domain)


# ---------------------------------------------------------- users by SNI

def test_two_identities_one_port_curl(env):
    hub = tls_hub(env)
    assert hub.domain == "localhost"
    alpha = env.hash_upstream("alpha")
    beta = env.hash_upstream("beta")
    node = env.node(hub, alpha.url)
    st, body = node.add_bridge(beta.url)
    assert st == 201, (st, body)
    ids = {up: ident for ident, _, up in node.wait_bridges(2)}
    for up, want in ((alpha, "alpha /x"), (beta, "beta /x")):
        ident = ids[up.url]
        wait_for(lambda: pool_or_mux(hub, ident), 10,
                 what="pool or mux of %s" % ident)
        cp = curl_tls(hub.https_port, name_of(hub, ident), "/x", "--fail",
                      cafile=hub.ca)
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout == want
    # both identities on one TLS keep-alive connection, by Host
    s = tls_connect(hub.https_port, "localhost", cafile=hub.ca)
    try:
        for up, path in ((alpha, "/1"), (beta, "/2"), (alpha, "/3")):
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
                       % (path, name_of(hub, ids[up.url]),
                          hub.https_port)).encode())
            status, head, data = read_response(s)
            assert status == 200, head
            assert data == ("%s %s" % (up.server.name, path)).encode()
    finally:
        s.close()


def test_unknown_identity_404_over_tls(env):
    hub = tls_hub(env)
    # a name under the domain that is no identity: an alert at once
    # (unrecognized_name), or the hub's 404
    t0 = time.monotonic()
    try:
        st, _, body = https_get(hub.https_port, "zz0000000000.localhost:%d"
                                % hub.https_port, cafile=hub.ca)
        assert st == 404 and b"Proxy not available" in body
    except ssl.SSLError as e:
        assert "UNRECOGNIZED_NAME" in str(e).upper(), e
    assert time.monotonic() - t0 < scaled(5)
    # the same Host over a connection named for the domain: 404
    st, _, body = https_get(hub.https_port, "zz0000000000.localhost:%d"
                            % hub.https_port, cafile=hub.ca,
                            sni="localhost")
    assert st == 404 and b"Proxy not available" in body
    ident = hub.create()["identity"]
    st, _, body = https_get(hub.https_port, "%s.localhost:%d"
                            % (ident, hub.https_port), cafile=hub.ca)
    assert (st, body) == (502, b"Proxy not connected")


def test_x_forwarded_proto(env):
    hub = tls_hub(env)
    up = echo(env)
    node = env.node(hub, up.url)
    host = "%s:%d" % (name_of(hub, node.identity), hub.https_port)
    st, _, body = https_get(hub.https_port, host, "/p?q=1", cafile=hub.ca)
    assert st == 200, body
    j = json.loads(body)
    assert j["proto"] == "https", j
    assert j["path"] == "/p?q=1"
    # the plain listener's users are http
    st, _, body = http_get(hub.port, hub.host(node.identity), "/p")
    assert st == 200, body
    assert json.loads(body)["proto"] == "http"
    # a client's own X-Forwarded-Proto does not win over the hub's
    st, _, body = https_get(hub.https_port, host, "/p", cafile=hub.ca,
                            headers={"X-Forwarded-Proto": "gopher"})
    assert json.loads(body)["proto"] == "https", body


def test_urls_handed_out_are_https(env):
    hub = tls_hub(env)
    up = env.hash_upstream()
    node = env.node(hub, up.url)
    (ident, url, _), = node.bridges()
    assert url.startswith("https://%s.%s" % (ident, hub.domain)), url
    st, j = hub.api("GET", "/api/proxy/")
    assert st == 200, j
    items = j if isinstance(j, list) else j.get("proxies", j.get("items"))
    urls = [p["url"] for p in items if p["identity"] == ident]
    assert urls and urls[0].startswith("https://"), j
    # the URL names the https listener's port
    port = urllib.parse.urlsplit(url).port or 443
    assert port == hub.https_port, url
    cp = curl_tls(port, "%s.%s" % (ident, hub.domain), "/u", "--fail",
                  cafile=hub.ca)
    assert cp.returncode == 0 and cp.stdout == "upstream /u", cp.stderr


# ---------------------------------------------------------- openssl s_client

def test_s_client_san_tls13_chain(env):
    hub = tls_hub(env)
    ident = hub.create()["identity"]
    sni = name_of(hub, ident)
    rc, out = s_client(hub.https_port, "-showcerts", "-CAfile", hub.ca,
                       "-verify_return_error", servername=sni)
    assert rc == 0, out
    assert re.search(r"New, TLSv1\.3", out) and "TLSv1.3" in out, out
    assert "Verify return code: 0 (ok)" in out, out
    certs = s_client_certs(out)
    assert certs, out
    from cryptography import x509
    # the right SAN: the name asked for (a leaf per name, as mkcert
    # makes), or a wildcard one label above it
    first = x509.load_pem_x509_certificate(certs[0])
    dns, _ = cert_sans(first)
    assert sni in dns or "*.%s" % hub.domain in dns, dns
    # the chain ends at the CA the hub printed: each cert is signed by the
    # next, the last by the CA
    ca = load_cert(hub.ca)
    chain = [x509.load_pem_x509_certificate(c) for c in certs]
    for a, b in zip(chain, chain[1:] + [ca]):
        if a == ca:
            break
        assert issued_by(a, b), (a.subject, b.subject)
    # TLS 1.2 is still offered
    rc, out = s_client(hub.https_port, "-tls1_2", "-CAfile", hub.ca,
                       servername=sni)
    assert rc == 0 and "TLSv1.2" in out, out


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_refused_with_alert(env, version):
    hub = tls_hub(env)
    t0 = time.monotonic()
    rc, out = s_client(hub.https_port, version, "-cipher",
                       "DEFAULT@SECLEVEL=0", servername="localhost")
    assert rc != 0, out
    # the client offered the old version (not refused locally) and the hub
    # answered with an alert: protocol_version (70), or handshake failure
    assert "no protocols available" not in out, out
    assert re.search(r"alert (protocol version|number 70|handshake "
                     r"failure|number 40)|unsupported protocol|wrong "
                     r"version number", out, re.I), out
    assert time.monotonic() - t0 < scaled(10)
    # python's ssl, held to TLS 1.1 at most, fails as well
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.set_ciphers("DEFAULT@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        return
    with pytest.raises((ssl.SSLError, ConnectionError)):
        s = tls_connect(hub.https_port, "localhost", ctx=ctx)
        s.close()
    # and the hub still serves a good client
    assert peer_cert(hub.https_port, "localhost")[1] == "TLSv1.3"


def test_no_shared_cipher_refused_with_alert(env):
    hub = tls_hub(env)
    for spec in ("NULL-SHA256@SECLEVEL=0", "AES128-SHA@SECLEVEL=0"):
        if openssl_ciphers(spec):
            break
    else:
        pytest.skip("openssl offers neither NULL-SHA256 nor AES128-SHA")
    t0 = time.monotonic()
    rc, out = s_client(hub.https_port, "-tls1_2", "-cipher", spec,
                       servername="localhost")
    assert rc != 0, out
    assert re.search(r"alert (handshake failure|number 40|insufficient "
                     r"security|number 71)", out, re.I), out
    assert time.monotonic() - t0 < scaled(10)
    assert peer_cert(hub.https_port, "localhost")[1] == "TLSv1.3"


# ---------------------------------------------------------- the local CA

def test_local_ca_files_modes_and_reuse(env, tmp_path):
    state = str(tmp_path / "castate")
    hub = tls_hub(env, state_dir=state)
    tls_dir = os.path.join(state, "tls")
    # the hub printed where its CA is
    m = re.search(r"^hub ca (\S+)$", hub.proc.stdout(), re.M)
    assert m, hub.proc.stdout()
    assert os.path.realpath(m.group(1)) == os.path.realpath(
        os.path.join(tls_dir, "ca.pem"))
    for f in ("ca.pem", "ca-key.pem", "cert.pem", "key.pem"):
        assert os.path.isfile(os.path.join(tls_dir, f)), os.listdir(tls_dir)
    mode = stat.S_IMODE(os.stat(os.path.join(tls_dir, "ca-key.pem")).st_mode)
    assert mode == 0o600, oct(mode)
    mode = stat.S_IMODE(os.stat(os.path.join(tls_dir, "key.pem")).st_mode)
    assert mode & 0o077 == 0, oct(mode)
    ca = load_cert(os.path.join(tls_dir, "ca.pem"))
    leaf = load_cert(os.path.join(tls_dir, "cert.pem"))
    assert issued_by(leaf, ca)
    dns, ips = cert_sans(leaf)
    assert {"localhost", "*.localhost"} <= set(dns), dns
    assert {"127.0.0.1", "::1"} <= set(ips), ips
    # what the listener serves is that certificate
    der, _, _ = peer_cert(hub.https_port, "localhost")
    assert load_cert(der) == leaf
    # curl trusts it with --cacert and the IP form too
    cp = subprocess.run(
        ["curl", "-sS", "--cacert", hub.ca, "-o", "/dev/null", "-w",
         "%{http_code}", "https://127.0.0.1:%d/" % hub.https_port],
        capture_output=True, text=True, timeout=scaled(20))
    assert cp.returncode == 0, cp.stderr
    # a restart on the same state keeps the CA and the certificate
    with open(os.path.join(tls_dir, "ca.pem"), "rb") as f:
        ca_pem = f.read()
    assert hub.stop() == 0
    hub2 = tls_hub(env, state_dir=state)
    with open(os.path.join(tls_dir, "ca.pem"), "rb") as f:
        assert f.read() == ca_pem
    der2, _, _ = peer_cert(hub2.https_port, "localhost")
    assert issued_by(load_cert(der2), ca)


def test_default_listeners_8080_8443(tmp_path):
    """No --http nor --https: 127.0.0.1:8080 and 127.0.0.1:8443, in a
    namespace of its own (those ports may be taken on the machine)."""
    with Netns(tmp_path) as ns:
        p = ns.proc("hub", sluice_bin(), "boot", "up", "--proxy",
                    "--api", "127.0.0.1:18082", "--state-dir",
                    str(tmp_path / "st"))

        def ready():
            if not p.alive():
                raise AssertionError(p.describe())
            out = p.stdout()
            return ("hub listening http://127.0.0.1:8080" in out and
                    "hub listening https://127.0.0.1:8443" in out)
        wait_for(ready, 20, what="both listening lines")
        cp = ns.run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                    "--cacert", str(tmp_path / "st" / "tls" / "ca.pem"),
                    "https://127.0.0.1:8443/", timeout=30)
        assert cp.returncode == 0 and cp.stdout == "404", (cp.stdout,
                                                           cp.stderr)
        problems = stop_clean(p)
        assert not problems, problems


def test_http_only_has_no_tls_listener(env):
    hub = env.hub()
    assert "https://" not in hub.proc.stdout()
    assert len(re.findall(r"^hub listening ", hub.proc.stdout(), re.M)) == 1


# ---------------------------------------------------------- --tls-cert

# A domain of two labels: curl and OpenSSL take no wildcard of one
# (*.localhost matches nothing for them).
DOMAIN = "tls.test"


def test_tls_cert_chosen_by_sni(env, tmp_path):
    # an identity first (a name under the domain that is no identity gets
    # an alert, whatever certificate would match it)
    state = str(tmp_path / "snistate")
    first = tls_hub(env, "--domain", DOMAIN, state_dir=state)
    ident = first.create()["identity"]
    other_ident = first.create()["identity"]
    assert first.stop() == 0
    ca = Ca(str(tmp_path / "ca"))
    default = ca.issue(["default.example"], name="default", kind="rsa")
    wild = ca.issue(["*." + DOMAIN], ["127.0.0.1"], name="wild")
    exact = ca.issue(["%s.%s" % (ident, DOMAIN)], name="exact")
    apex = ca.issue([DOMAIN], name="apex")
    # the wildcard before the exact name: the most specific still wins
    hub = tls_hub(env, "--domain", DOMAIN, "--tls-cert", default.path,
                  "--tls-key", default.key_path, "--tls-cert", wild.path,
                  "--tls-key", wild.key_path, "--tls-cert", exact.path,
                  "--tls-key", exact.key_path, "--tls-cert", apex.path,
                  "--tls-key", apex.key_path, state_dir=state)
    assert not re.search(r"^hub ca ", hub.proc.stdout(), re.M)
    port = hub.https_port
    cases = [("%s.%s" % (ident, DOMAIN), exact),
             (("%s.%s" % (ident, DOMAIN)).upper(), exact),
             ("%s.%s" % (other_ident, DOMAIN), wild),
             (DOMAIN, apex), ("other.example", default), (None, default)]
    for sni, want in cases:
        der, _, _ = peer_cert(port, sni)
        assert load_cert(der).serial_number == want.serial, (
            "SNI %r got %s" % (sni, cert_sans(load_cert(der))))
    # the chain is sent (leaf and CA): verified by curl and s_client
    rc, out = s_client(port, "-showcerts", "-CAfile", ca.path,
                       servername="%s.%s" % (ident, DOMAIN))
    assert rc == 0 and "Verify return code: 0 (ok)" in out, out
    assert len(s_client_certs(out)) == 2, out
    for name in (ident, other_ident):
        cp = curl_tls(port, "%s.%s" % (name, DOMAIN), "/", "-o", "/dev/null",
                      "-w", "%{http_code}", cafile=ca.path)
        assert cp.returncode == 0 and cp.stdout == "502", (cp.stdout,
                                                           cp.stderr)
    # an RSA certificate serves too (the default)
    cp = curl_tls(port, "default.example", "/", "-o", "/dev/null", "-w",
                  "%{http_code}", cafile=ca.path)
    assert cp.returncode == 0, cp.stderr


def _start_fail(tmp_path, *args):
    argv = [sluice_bin(), "boot", "up", "--proxy", "--http",
            "127.0.0.1:%d" % free_port(), "--https",
            "127.0.0.1:%d" % free_port(), "--api",
            "127.0.0.1:%d" % free_port(), "--state-dir",
            str(tmp_path / "failstate")] + list(args)
    try:
        return subprocess.run(argv, capture_output=True, text=True,
                              errors="replace", timeout=scaled(20),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError("the hub kept running with a bad certificate "
                             "file: %s" % " ".join(argv))


@pytest.mark.parametrize("what", ["missing", "garbage", "mismatch"])
def test_bad_cert_file_at_start(tmp_path, what):
    ca = Ca(str(tmp_path / "ca"))
    leaf = ca.issue(["localhost"], name="good")
    other = ca.issue(["localhost"], name="other")
    cert, key = leaf.path, leaf.key_path
    if what == "missing":
        cert = str(tmp_path / "nope.pem")
        named = cert
    elif what == "garbage":
        cert = str(tmp_path / "garbage.pem")
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 !!\n"
                    "-----END CERTIFICATE-----\n")
        named = cert
    else:
        key = other.key_path
        named = None  # the cert's or the key's name
    cp = _start_fail(tmp_path, "--tls-cert", cert, "--tls-key", key)
    assert cp.returncode != 0, cp.stdout + cp.stderr
    err = cp.stdout + cp.stderr
    if named:
        assert named in err, err
    else:
        assert cert in err or key in err, err
    assert "hub listening" not in cp.stdout


# ---------------------------------------------------------- SIGHUP

def _file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def test_sighup_reload_under_live_download(env, tmp_path):
    ca = Ca(str(tmp_path / "ca"))
    names, ips = [DOMAIN, "*." + DOMAIN], ["127.0.0.1"]
    first = ca.issue(names, ips, name="first")
    cert = str(tmp_path / "hub.pem")
    key = str(tmp_path / "hub-key.pem")

    def install(leaf):
        # both files before the signal: the hub reads them on SIGHUP only
        for src, dst in ((leaf.path, cert), (leaf.key_path, key)):
            with open(src, "rb") as f, open(dst + ".tmp", "wb") as g:
                g.write(f.read())
            os.replace(dst + ".tmp", dst)
    install(first)
    hub = tls_hub(env, "--domain", DOMAIN, "--tls-cert", cert, "--tls-key",
                  key)
    web = env.nginx()
    want = big_file(os.path.join(web.root, "big.bin"), RELOAD_MB)
    node = env.node(hub, web.url)
    host = name_of(hub, node.identity)
    assert load_cert(peer_cert(hub.https_port, host)[0]).serial_number \
        == first.serial

    # a download started before the reload, read slowly by hand
    s = tls_connect(hub.https_port, host, cafile=ca.path, timeout=30)
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

        second = ca.issue(names, ips, name="second")
        install(second)
        hub.proc.signal(signal.SIGHUP)

        def reloaded():
            return load_cert(peer_cert(hub.https_port, host)[0]) \
                .serial_number == second.serial
        wait_for(reloaded, 10, interval=0.1, what="the new serial")
        # the node's control connection survived too (no new bridge line)
        assert len(node.bridges()) == 1

        deadline = time.monotonic() + scaled(240)
        while got < n:
            b = s.recv(1 << 20)
            assert b, "EOF after %d of %d bytes" % (got, n)
            h.update(b)
            got += len(b)
            assert time.monotonic() < deadline, "download too slow"
    finally:
        s.close()
    assert got == n == RELOAD_MB << 20
    assert h.hexdigest() == want

    # a broken file at reload: the old (second) certificate stays, one
    # error names the file
    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\ngarbage\n"
                "-----END CERTIFICATE-----\n")
    hub.proc.signal(signal.SIGHUP)
    wait_for(lambda: cert in hub.proc.stderr(), 10,
             what="an error naming %s" % cert)
    time.sleep(0.5)
    errs = [ln for ln in hub.proc.stderr().splitlines() if cert in ln]
    assert len(errs) == 1, errs
    assert hub.alive()
    assert load_cert(peer_cert(hub.https_port, host)[0]).serial_number \
        == second.serial
    cp = curl_tls(hub.https_port, host, "/big.bin", "--fail", "-o",
                  "/dev/null", "-r", "0-1023", cafile=ca.path)
    assert cp.returncode == 0, cp.stderr


# ---------------------------------------------------------- redirect

def test_https_redirect(env):
    hub = tls_hub(env, "--https-redirect")
    up = echo(env)
    # the bridge endpoints on the plain listener still work
    node = env.node(hub, up.url)
    host = name_of(hub, node.identity)
    st, hdrs, _ = http_get(hub.port, "%s:%d" % (host, hub.port),
                           "/a/b?c=d")
    assert st == 308, (st, hdrs)
    loc = {k.lower(): v for k, v in hdrs.items()}["location"]
    assert loc in ("https://%s:%d/a/b?c=d" % (host, hub.https_port),), loc
    # curl follows it to the upstream, over TLS
    cp = subprocess.run(
        ["curl", "-sS", "-L", "--fail", "--cacert", hub.ca, "--resolve",
         "%s:%d:127.0.0.1" % (host, hub.port), "--resolve",
         "%s:%d:127.0.0.1" % (host, hub.https_port),
         "http://%s:%d/a/b?c=d" % (host, hub.port)],
        capture_output=True, text=True, timeout=scaled(30))
    assert cp.returncode == 0, cp.stderr
    j = json.loads(cp.stdout)
    assert j["path"] == "/a/b?c=d" and j["proto"] == "https", j
