"""TLS passthrough: a bridge whose upstream is `tls://127.0.0.1:PORT` (nginx
with its own certificate) is reached by SNI on the hub's https port without
the hub terminating: curl verifies nginx's certificate (its own CA, the
identity's name), nginx sees the TLS version and the server name, the
hub's state holds no copy of nginx's key; an identity without passthrough
on the same port is still terminated by the hub; an SNI the hub does not
know gets an alert or the hub's own 404, never a hang.
"""

import hashlib
import os
import socket
import ssl
import time

import pytest

from helpers import scaled
from tls_support import (Ca, TlsNginx, curl_tls, https_get, load_cert,
                         peer_cert, s_client, tls_connect)
from tunnel_x_support import big_file


@pytest.fixture
def passthrough(env, tmp_path):
    """A hub with TLS, an allocation whose bridge serves nginx over its own
    TLS, the nginx CA and leaf: (hub, node, nginx, ca, leaf, ident)."""
    hub = env.hub(tls=True)
    alloc = hub.create()
    ident = alloc["identity"]
    name = "%s.%s" % (ident, hub.domain)
    ca = Ca(str(tmp_path / "nginx-ca"), name="nginx's own CA")
    leaf = ca.issue([name], name="nginx")
    web = TlsNginx(str(tmp_path), leaf, files={"small.txt": b"hi\n"})
    env.others.append(web)
    node = env.node(hub, web.tls_url, creds=alloc)
    assert node.identity == ident
    return hub, node, web, ca, leaf, ident


def test_passthrough_curl_sees_nginx_cert(passthrough, tmp_path):
    hub, node, web, ca, leaf, ident = passthrough
    name = "%s.%s" % (ident, hub.domain)
    # curl verifies nginx's certificate with nginx's CA, not the hub's
    cp = curl_tls(hub.https_port, name, "/small.txt", "--fail",
                  cafile=ca.path)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "hi\n"
    # and the certificate served is nginx's, byte for byte
    der, version, _ = peer_cert(hub.https_port, name)
    assert hashlib.sha256(der).hexdigest() == leaf.fingerprint
    assert load_cert(der).serial_number == leaf.serial
    # nginx terminated TLS itself: it saw the version and the SNI
    st, _, body = https_get(hub.https_port, "%s:%d" % (name, hub.https_port),
                            "/proto", cafile=ca.path)
    assert st == 200, body
    assert body.decode() in ("TLSv1.3 %s" % name, "TLSv1.2 %s" % name), body
    # the hub's CA does not verify it
    cp = curl_tls(hub.https_port, name, "/small.txt", cafile=hub.ca)
    assert cp.returncode != 0
    # s_client shows nginx's chain (leaf and its CA)
    rc, out = s_client(hub.https_port, "-CAfile", ca.path, "-showcerts",
                       servername=name)
    assert rc == 0 and "Verify return code: 0 (ok)" in out, out
    # the hub never had nginx's key: nothing in its state holds it
    with open(leaf.key_path, "rb") as f:
        key_pem = f.read()
    key_der_tail = key_pem.split(b"\n")[1]
    for root, _, files in os.walk(hub.state_dir):
        for fname in files:
            with open(os.path.join(root, fname), "rb") as f:
                data = f.read()
            assert key_der_tail not in data, os.path.join(root, fname)
    assert leaf.key_path.startswith(str(tmp_path))
    assert not os.path.realpath(leaf.key_path).startswith(
        os.path.realpath(hub.state_dir))


def test_passthrough_big_download(passthrough, tmp_path):
    hub, node, web, ca, leaf, ident = passthrough
    want = big_file(os.path.join(web.root, "big.bin"), 32)
    name = "%s.%s" % (ident, hub.domain)
    out = str(tmp_path / "down.bin")
    cp = curl_tls(hub.https_port, name, "/big.bin", "--fail", "-o", out,
                  cafile=ca.path, timeout=120)
    assert cp.returncode == 0, cp.stderr
    h = hashlib.sha256()
    with open(out, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    assert h.hexdigest() == want
    # keep-alive: several requests on one passthrough TLS connection
    s = tls_connect(hub.https_port, name, cafile=ca.path)
    try:
        for _ in range(3):
            s.sendall(("GET /small.txt HTTP/1.1\r\nHost: %s\r\n\r\n"
                       % name).encode())
            buf = b""
            while not buf.endswith(b"hi\n"):
                b = s.recv(4096)
                assert b, buf
                buf += b
            assert buf.startswith(b"HTTP/1.1 200"), buf
    finally:
        s.close()


def test_terminated_identity_beside_passthrough(env, passthrough):
    hub, node, web, ca, leaf, ident = passthrough
    up = env.hash_upstream("plain")
    other = env.node(hub, up.url, name="plainnode")
    name = "%s.%s" % (other.identity, hub.domain)
    der, _, _ = peer_cert(hub.https_port, name)
    assert hashlib.sha256(der).hexdigest() != leaf.fingerprint
    st, _, body = https_get(hub.https_port, "%s:%d" % (name, hub.https_port),
                            "/t", verify=False)
    assert (st, body) == (200, b"plain /t")


@pytest.mark.parametrize("sni", ["zz0000000000.localhost", "nothere.example"])
def test_unknown_sni_alert_or_404_no_hang(env, sni):
    hub = env.hub(tls=True)
    t0 = time.monotonic()
    try:
        s = tls_connect(hub.https_port, sni, verify=False, timeout=10)
    except ssl.SSLError as e:
        # a TLS alert: unrecognized_name (112) or a handshake failure
        assert time.monotonic() - t0 < scaled(5), e
        return
    except (ConnectionError, socket.timeout) as e:
        raise AssertionError("no alert but %r after %.1fs"
                             % (e, time.monotonic() - t0))
    try:
        s.sendall(("GET / HTTP/1.1\r\nHost: %s:%d\r\nConnection: close"
                   "\r\n\r\n" % (sni, hub.https_port)).encode())
        s.settimeout(scaled(5))
        buf = b""
        while True:
            try:
                b = s.recv(4096)
            except ssl.SSLError:
                break
            if not b:
                break
            buf += b
    finally:
        s.close()
    assert time.monotonic() - t0 < scaled(5)
    assert buf.startswith(b"HTTP/1.1 404"), buf[:200]
    if sni.endswith("." + hub.domain):
        assert b"Proxy not available" in buf, buf[:200]
