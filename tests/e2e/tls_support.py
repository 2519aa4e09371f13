"""TLS pieces of the end-to-end suite (test_tls_*.py and bench/tunnel
--tls): certificates made with python's `cryptography` (a CA, leaves for
names and addresses, expired or not yet valid ones, RSA or ECDSA), public
key pins in curl's --pinnedpubkey form, and TLS clients: python's ssl, curl
with --cacert, `openssl s_client`, nginx with an ssl listener.

Every client call has a time bound: a hub that hangs a handshake fails the
test instead of holding it.
"""

import base64
import datetime
import hashlib
import http.client
import ipaddress
import os
import re
import socket
import ssl
import subprocess

from helpers import (find_binary, free_port, require_binary, scaled,
                     start_nginx, tcp_listening, wait_for)

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ONE_DAY = datetime.timedelta(days=1)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key(kind):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path, key):
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(path, 0o600)


class Ca:
    """A certificate authority in folder d: ca.pem, ca-key.pem."""

    def __init__(self, d, name="sluice test CA", kind="ec"):
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.key = _new_key(kind)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (x509.CertificateBuilder()
                     .subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(_now() - ONE_DAY)
                     .not_valid_after(_now() + 3650 * ONE_DAY)
                     .add_extension(x509.BasicConstraints(ca=True,
                                                          path_length=None),
                                    critical=True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, key_cert_sign=True,
                         crl_sign=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False,
                         key_agreement=False, encipher_only=False,
                         decipher_only=False), critical=True)
                     .add_extension(ski, critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.path = os.path.join(d, "ca.pem")
        self.key_path = os.path.join(d, "ca-key.pem")
        with open(self.path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_key(self.key_path, self.key)
        self._n = 0

    def issue(self, names=(), ips=(), name=None, kind="ec", days=30,
              not_before=None, not_after=None, serial=None, chain=True):
        """A leaf for DNS names and IP addresses; returns a Leaf with the
        paths of cert (leaf then, with chain, the CA) and key. not_before
        and not_after (datetimes) override days: an expired leaf is
        not_after in the past."""
        self._n += 1
        name = name or "leaf%d" % self._n
        key = _new_key(kind)
        nb = not_before or (_now() - ONE_DAY)
        na = not_after or (_now() + days * ONE_DAY)
        sans = [x509.DNSName(n) for n in names] + [
            x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        cn = (list(names) + list(ips) + [name])[0]
        serial = serial or x509.random_serial_number()
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                         cn)]))
             .issuer_name(self.cert.subject)
             .public_key(key.public_key())
             .serial_number(serial)
             .not_valid_before(nb).not_valid_after(na)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                            critical=True)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans),
                                critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        leaf = Leaf(self.dir, name, cert, key)
        with open(leaf.path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
            if chain:
                f.write(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_key(leaf.key_path, key)
        return leaf


class Leaf:
    def __init__(self, d, name, cert, key):
        self.cert = cert
        self.key = key
        self.serial = cert.serial_number
        self.path = os.path.join(d, name + ".pem")
        self.key_path = os.path.join(d, name + "-key.pem")
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.fingerprint = hashlib.sha256(self.der).hexdigest()
        self.pin = spki_pin(cert)


def spki_pin(cert):
    """sha256/<base64> of the DER SubjectPublicKeyInfo (curl's
    --pinnedpubkey form) of a cryptography certificate, PEM bytes or a PEM
    file's path."""
    if isinstance(cert, str):
        with open(cert, "rb") as f:
            cert = f.read()
    if isinstance(cert, bytes):
        cert = x509.load_pem_x509_certificate(cert)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def load_cert(path_or_der):
    if isinstance(path_or_der, bytes):
        return x509.load_der_x509_certificate(path_or_der)
    with open(path_or_der, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def cert_sans(cert):
    """(DNS names, IP addresses as strings) of a certificate."""
    try:
        ext = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (ext.get_values_for_type(x509.DNSName),
            [str(a) for a in ext.get_values_for_type(x509.IPAddress)])


def days_before(n):
    return _now() - n * ONE_DAY


# ------------------------------------------------------------ python ssl

def client_context(cafile=None, verify=True, min_version=None,
                   max_version=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def tls_connect(port, server_name=None, cafile=None, verify=True,
                timeout=10, ctx=None, session=None, host="127.0.0.1"):
    """A TLS socket to host:port with SNI server_name (None: no SNI, as a
    client connecting to an address sends none); verification against
    cafile (the name checked is server_name, else host)."""
    ctx = ctx or client_context(cafile, verify)
    raw = socket.create_connection((host, port), timeout=scaled(timeout))
    try:
        if server_name is None and ctx.check_hostname:
            # python sends no SNI for an address; the name checked is it
            return ctx.wrap_socket(raw, server_hostname=host,
                                   session=session)
        return ctx.wrap_socket(raw, server_hostname=server_name,
                               session=session)
    except BaseException:
        raw.close()
        raise


def peer_cert(port, server_name=None, timeout=10):
    """(the DER certificate the server shows, TLS version, cipher name)
    without verifying it."""
    s = tls_connect(port, server_name, verify=False, timeout=timeout)
    try:
        return s.getpeercert(binary_form=True), s.version(), s.cipher()[0]
    finally:
        s.close()


class _SniHTTPSConnection(http.client.HTTPSConnection):
    """Connects to 127.0.0.1:port but says `sni` in the ClientHello (as
    curl --resolve does)."""

    def __init__(self, port, sni, context, timeout):
        super().__init__("127.0.0.1", port, context=context, timeout=timeout)
        self._sni = sni
        self._ctx = context

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.port),
                                       self.timeout)
        self.sock = self._ctx.wrap_socket(raw, server_hostname=self._sni)


def https_get(port, host, path="/", cafile=None, timeout=10, method="GET",
              body=None, headers=None, sni=None, verify=True):
    """(status, headers dict, body) of one HTTPS request to 127.0.0.1:port
    with Host `host` (which may carry a :port) and SNI `sni` (default: host
    without its port)."""
    ctx = client_context(cafile, verify)
    sni = sni or host.rsplit(":", 1)[0]
    c = _SniHTTPSConnection(port, sni, ctx, scaled(timeout))
    try:
        h = {"Host": host}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


# ------------------------------------------------------------ openssl CLI

def s_client(port, *args, servername=None, timeout=15, stdin=b"Q\n"):
    """`openssl s_client -connect 127.0.0.1:port [-servername N] args`;
    returns (exit code, stdout+stderr text). A hang is a failure of the
    test (TimeoutExpired is turned into an AssertionError)."""
    openssl = require_binary("openssl")
    argv = [openssl, "s_client", "-connect", "127.0.0.1:%d" % port]
    if servername:
        argv += ["-servername", servername]
    argv += [str(a) for a in args]
    try:
        cp = subprocess.run(argv, input=stdin, capture_output=True,
                            timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        raise AssertionError("openssl s_client %s hung for %.0fs"
                             % (" ".join(argv[2:]), scaled(timeout)))
    return cp.returncode, (cp.stdout + cp.stderr).decode("utf-8", "replace")


def s_client_certs(text):
    """The PEM certificates s_client -showcerts printed, in order."""
    return [m.encode() for m in re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text,
        re.S)]


def openssl_ciphers(spec):
    """The cipher names `openssl ciphers spec` lists (empty: none)."""
    cp = subprocess.run([require_binary("openssl"), "ciphers", spec],
                        capture_output=True, text=True)
    return cp.stdout.strip().split(":") if cp.returncode == 0 else []


# ------------------------------------------------------------ curl

def curl_tls(port, host, path="/", *args, cafile=None, timeout=60):
    """curl https://host:port/path resolved to loopback, verified against
    cafile (curl -sS)."""
    argv = ["curl", "-sS", "--resolve", "%s:%d:127.0.0.1" % (host, port)]
    if cafile:
        argv += ["--cacert", cafile]
    argv += [str(a) for a in args]
    argv.append("https://%s:%d%s" % (host, port, path))
    return subprocess.run(argv, capture_output=True, timeout=scaled(timeout),
                          text=True, errors="replace",
                          stdin=subprocess.DEVNULL)


# ------------------------------------------------------------ nginx

class TlsNginx:
    """nginx with an ssl listener on loopback (and a plain one), serving
    files from .root with the certificate leaf (a Leaf). Its key is in the
    nginx folder only."""

    def __init__(self, workdir, leaf, files=None, name="tlsnginx"):
        nginx = require_binary("nginx")
        d = os.path.join(str(workdir), name)
        self.root = os.path.join(d, "www")
        os.makedirs(self.root, exist_ok=True)
        for fname, data in (files or {}).items():
            with open(os.path.join(self.root, fname), "wb") as f:
                f.write(data)
        self.port = free_port()
        self.tls_port = free_port()
        self.leaf = leaf
        server = ("    listen 127.0.0.1:%d ssl;\n"
                  "    ssl_certificate %s;\n"
                  "    ssl_certificate_key %s;\n"
                  "    ssl_protocols TLSv1.2 TLSv1.3;\n"
                  "    root %s;\n"
                  "    location /proto { return 200 \"$ssl_protocol "
                  "$ssl_server_name\"; }"
                  % (self.tls_port, leaf.path, leaf.key_path, self.root))
        self.proc = start_nginx(nginx, d, name, self.port, server)
        self.url = "http://127.0.0.1:%d" % self.port
        self.tls_url = "tls://127.0.0.1:%d" % self.tls_port

        def up():
            if not self.proc.alive():
                raise AssertionError("nginx exited:\n" + self.proc.describe())
            return tcp_listening(self.port) and tcp_listening(self.tls_port)
        wait_for(up, 15, what="nginx listening")

    def stop(self):
        self.proc.kill_group()


def have_openssl():
    return find_binary("openssl") is not None


# ------------------------------------------------------------ upstreams

def echo_upstream():
    """An HTTP upstream answering GET with a JSON of the request's path and
    the headers the hub adds (Host, X-Forwarded-*): .url, .stop()."""
    import json
    from http.server import BaseHTTPRequestHandler
    from tunnel_x_support import _Threaded

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            out = json.dumps({
                "path": self.path,
                "host": self.headers.get("Host", ""),
                "proto": self.headers.get("X-Forwarded-Proto", ""),
                "fwd_host": self.headers.get("X-Forwarded-Host", ""),
                "fwd_for": self.headers.get("X-Forwarded-For", "")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    return _Threaded(Handler)


def issued_by(cert, issuer):
    """True if issuer's key signed cert (RSA PKCS#1 v1.5 or ECDSA)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding
    pub = issuer.public_key()
    if cert.issuer != issuer.subject:
        return False
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes,
                       padding.PKCS1v15(), cert.signature_hash_algorithm)
        else:
            pub.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        return False
    return True


# ------------------------------------------------------------ a fake hub

class FakeTlsHub:
    """A TLS server on loopback standing in for a hub with certificate
    leaf (a Leaf): it completes handshakes when the client lets it, counts
    them (.handshakes: monotonic times of each accepted connection) and
    keeps every application byte a client sends after one (.app_bytes): a
    node that refused the certificate must have sent none."""

    def __init__(self, leaf):
        import threading
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(leaf.path, leaf.key_path)
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(0.05)
        self.port = self.ls.getsockname()[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.accepts = []
        self.handshakes_done = 0
        self.app_bytes = b""
        self.running = True
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import time
        while self.running:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepts.append(time.monotonic())
            c.settimeout(1.0)
            try:
                t = self.ctx.wrap_socket(c, server_side=True)
                self.handshakes_done += 1
                try:
                    while True:
                        b = t.recv(65536)
                        if not b:
                            break
                        with self.lock:
                            self.app_bytes += b
                except (OSError, ssl.SSLError):
                    pass
                t.close()
            except (OSError, ssl.SSLError):
                c.close()

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        self.ls.close()
