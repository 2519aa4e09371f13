"""Real ACME peers for test_acme.py: pebble (the test CA the big public
CA's client libraries test against), pebble-challtestsrv as its DNS
(every name is 127.0.0.1, no AAAA), and BIND 9 as an authoritative server
for a test zone that takes RFC 2136 updates signed with a TSIG key.

Everything listens on loopback on free ports and runs from a temporary
folder as a process group (helpers.Proc); stop() ends it. Pebble's own
HTTPS certificate comes from a CA made here; its root (the one it issues
from) is fetched from its management port once it is up.

Pebble validates TLS-ALPN-01 on one port for every name (its tlsPort):
the tests give every ACME hub the same --https port, ACME_TLS_PORT of the
session, so one pebble serves them all, one test after another.
"""

import json
import os
import ssl
import subprocess
import urllib.request

from helpers import Proc, free_port, require_binary, scaled, wait_for
from tls_support import Ca

DOMAIN = "sluice.test"


def _https_get(url, cafile, timeout=5):
    ctx = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(url, context=ctx,
                                timeout=scaled(timeout)) as r:
        return r.read()


class Pebble:
    """One pebble: `directory` is its ACME directory URL, `root` the file
    of the root CA it issues from, `ca` what its own HTTPS is signed by
    (the hub's --acme-ca). validity (seconds) shortens its certificates;
    env adds PEBBLE_* settings. start=False makes the object (ports,
    config) without running it: start() later (the CA down at first)."""

    def __init__(self, workdir, name, tls_port, dns, ca, validity=None,
                 env=None, start=True, eab=None):
        self.workdir = os.path.join(str(workdir), name)
        os.makedirs(self.workdir, exist_ok=True)
        self.name = name
        self.ca = ca.path
        leaf = ca.issue(["localhost"], ["127.0.0.1"], name=name + "-https")
        self.port = free_port()
        self.mgmt_port = free_port()
        self.tls_port = tls_port
        self.directory = "https://127.0.0.1:%d/dir" % self.port
        conf = {"pebble": {
            "listenAddress": "127.0.0.1:%d" % self.port,
            "managementListenAddress": "127.0.0.1:%d" % self.mgmt_port,
            "certificate": leaf.path,
            "privateKey": leaf.key_path,
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}
        if validity:
            conf["pebble"]["certificateValidityPeriod"] = validity
        if eab:
            # {kid: base64url HMAC key}: accounts must be bound to one
            conf["pebble"]["externalAccountBindingRequired"] = True
            conf["pebble"]["externalAccountMACKeys"] = eab
        self.config = os.path.join(self.workdir, "pebble.json")
        with open(self.config, "w") as f:
            json.dump(conf, f)
        self.dns = dns
        self.env = {"PEBBLE_VA_NOSLEEP": "1"}
        self.env.update(env or {})
        self.root = os.path.join(self.workdir, "root.pem")
        self.proc = None
        if start:
            self.start()

    def start(self):
        self.proc = Proc([require_binary("pebble"), "-config", self.config,
                          "-dnsserver", self.dns], self.workdir, "pebble",
                         env=self.env)

        def up():
            if not self.proc.alive():
                raise AssertionError("pebble exited:\n"
                                     + self.proc.describe())
            try:
                _https_get(self.directory, self.ca, timeout=2)
                return _https_get("https://127.0.0.1:%d/roots/0"
                                  % self.mgmt_port, self.ca, timeout=2)
            except OSError:
                return None
        pem = wait_for(up, 20, interval=0.1, what="pebble %s" % self.name)
        with open(self.root, "wb") as f:
            f.write(pem)

    def log(self):
        return self.proc.stdout() + self.proc.stderr() if self.proc else ""

    def stop(self):
        if self.proc is not None:
            self.proc.kill_group()


class ChallTestSrv:
    """pebble-challtestsrv as a DNS server only: A queries answer
    127.0.0.1, AAAA none (the hub listens on IPv4 loopback)."""

    def __init__(self, workdir):
        self.port = free_port(udp=True, both=True)
        mgmt = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.proc = Proc([require_binary("pebble-challtestsrv"),
                          "-dns01", self.addr, "-http01", "",
                          "-https01", "", "-tlsalpn01", "",
                          "-management", "127.0.0.1:%d" % mgmt,
                          "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                         workdir, "challtestsrv")
        wait_for(lambda: dig(self.addr, "probe." + DOMAIN, "A")
                 == ["127.0.0.1"], 20, interval=0.1,
                 what="pebble-challtestsrv answering")

    def stop(self):
        self.proc.kill_group()


class Bind:
    """named, authoritative for DOMAIN (SOA, NS, the apex and every name
    below it A 127.0.0.1), updates allowed with the TSIG key in key_file
    (tsig-keygen's output, which is nsupdate's format too)."""

    def __init__(self, workdir):
        self.dir = os.path.join(str(workdir), "bind")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port(udp=True, both=True)
        self.addr = "127.0.0.1:%d" % self.port
        keygen = require_binary("tsig-keygen")
        key = subprocess.run([keygen, "-a", "hmac-sha256", "sluice-test."],
                             capture_output=True, text=True, check=True,
                             timeout=scaled(10)).stdout
        self.key_file = os.path.join(self.dir, "tsig.key")
        with open(self.key_file, "w") as f:
            f.write(key)
        os.chmod(self.key_file, 0o600)
        with open(os.path.join(self.dir, "db." + DOMAIN), "w") as f:
            f.write("$TTL 60\n"
                    "@ IN SOA ns.%s. hostmaster.%s. (1 3600 600 86400 60)\n"
                    "  IN NS ns.%s.\n"
                    "  IN A 127.0.0.1\n"
                    "ns IN A 127.0.0.1\n"
                    "* IN A 127.0.0.1\n" % (DOMAIN, DOMAIN, DOMAIN))
        conf = os.path.join(self.dir, "named.conf")
        with open(conf, "w") as f:
            f.write('options {\n'
                    '  directory "%(d)s";\n'
                    '  pid-file "%(d)s/named.pid";\n'
                    '  session-keyfile "%(d)s/session.key";\n'
                    '  managed-keys-directory "%(d)s";\n'
                    '  listen-on port %(p)d { 127.0.0.1; };\n'
                    '  listen-on-v6 { none; };\n'
                    '  recursion no;\n'
                    '  allow-query { any; };\n'
                    '  dnssec-validation no;\n'
                    '};\n'
                    'controls { };\n'
                    'include "%(k)s";\n'
                    'zone "%(z)s" {\n'
                    '  type primary;\n'
                    '  file "%(d)s/db.%(z)s";\n'
                    '  allow-update { key "sluice-test."; };\n'
                    '};\n' % {"d": self.dir, "p": self.port,
                              "k": self.key_file, "z": DOMAIN})
        # -g: foreground, log to stderr; as root it stays root (no -u):
        # it only ever touches this folder.
        self.proc = Proc([require_binary("named"), "-g", "-c", conf],
                         self.dir, "named")

        def up():
            if not self.proc.alive():
                raise AssertionError("named exited:\n" + self.proc.describe())
            return dig(self.addr, DOMAIN, "SOA") != []
        wait_for(up, 20, interval=0.1, what="named answering")

    def log(self):
        return self.proc.stderr()

    def stop(self):
        self.proc.kill_group()


def dig(addr, name, rtype):
    """The answers (text) of one query to addr ("ip:port"), [] if none."""
    ip, port = addr.rsplit(":", 1)
    cp = subprocess.run([require_binary("dig"), "+short", "+time=1",
                         "+tries=1", "@" + ip, "-p", port, name, rtype],
                        capture_output=True, text=True,
                        timeout=scaled(10))
    return [ln.strip() for ln in cp.stdout.splitlines()
            if ln.strip() and not ln.startswith(";")]


class AcmePeers:
    """What the session starts once: the CA that signs the pebbles' own
    HTTPS, challtestsrv, BIND, and pebbles made on demand by kind."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.ca = Ca(os.path.join(self.workdir, "https-ca"),
                     name="pebble https CA")
        self.tls_port = free_port()
        self.others = []
        self.pebbles = {}
        self.chall = None
        self.bind = None

    def challtestsrv(self):
        if self.chall is None:
            self.chall = ChallTestSrv(self.workdir)
        return self.chall

    def named(self):
        if self.bind is None:
            self.bind = Bind(self.workdir)
        return self.bind

    def pebble(self, kind):
        """"alpn": validates TLS-ALPN-01 on the hubs' port; "short": the
        same with 12-second certificates; "dns": resolves through BIND;
        "refusing": validates on a port nobody listens on."""
        if kind not in self.pebbles:
            dns = (self.named() if kind == "dns" else self.challtestsrv())
            port = free_port() if kind == "refusing" else self.tls_port
            self.pebbles[kind] = Pebble(
                self.workdir, kind, port, dns.addr, self.ca,
                validity=12 if kind == "short" else None)
        return self.pebbles[kind]

    def new_pebble(self, name, start=True, validity=None, eab=None):
        """A pebble of the test's own (not shared), for TLS-ALPN-01."""
        p = Pebble(self.workdir, name, self.tls_port,
                   self.challtestsrv().addr, self.ca, validity=validity,
                   start=start, eab=eab)
        self.others.append(p)
        return p

    def stop(self):
        for p in list(self.pebbles.values()) + self.others:
            p.stop()
        for s in (self.chall, self.bind):
            if s is not None:
                s.stop()
