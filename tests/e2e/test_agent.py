"""The node agent port (issue 12): one mutual-TLS port where ALPN http/1.1
serves the node's API and GET /info and sluice-stream/1 carries streams to
targets named in a checksummed header; DTLS 1.2 on the same port number
for UDP; stream routes that reach their targets through `agent: NAME`,
with health checks. Real clients: curl, openssl s_client, ssh, iperf3,
dig against dnsmasq."""

import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from helpers import (Proc, connect, free_port, recv_exact, route,
                     sanitizer_report, scaled, sluice_bin, tcp_listening,
                     udp_bound, wait_for)
from peers import run_sluice

CURL = "/usr/bin/curl"
OPENSSL = "/usr/bin/openssl"
IPERF3 = "/usr/bin/iperf3"
DIG = "/usr/bin/dig"

OK, REFUSED, DIAL_FAILED, TIMEOUT, BAD_HEADER, BUSY = range(6)
HDR_LEN = 272


def run(argv, timeout=30, **kw):
    if "input" not in kw:
        kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(argv, capture_output=True, timeout=scaled(timeout),
                          **kw)


# ------------------------------------------------- the header, in Python

def crc32c(data):
    crc = 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    return crc ^ 0xffffffff


def header(host, port, udp=False, probe=False, host_len=None):
    """docs/protocol.md's layout, written independently of the C codec."""
    h = host.encode()
    body = (b"SLST" + bytes([1, 1 if probe else 0, 2 if udp else 1, 0]) +
            struct.pack(">HH", len(h) if host_len is None else host_len,
                        port) + h.ljust(256, b"\0"))
    return body + struct.pack(">I", crc32c(body))


# -------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """sluice agent certs, and a second set from another CA."""
    d = tmp_path_factory.mktemp("agent-certs")
    out = {}
    for name in ("good", "other"):
        cp = run_sluice(["agent", "certs", "--out", str(d / name)])
        assert cp.returncode == 0, cp.stderr
        out[name] = str(d / name)
    return out


class Agent:
    """`sluice boot up --bridge --agent ADDR --agent-certs DIR`."""

    def __init__(self, workdir, certs, host="127.0.0.1", port=None,
                 args=(), name="agent"):
        self.host = host
        self.port = port or free_port(host, both=True)
        self.certs = certs
        self.workdir = os.path.join(str(workdir), name)
        os.makedirs(self.workdir, exist_ok=True)
        bracket = "[%s]" % host if ":" in host else host
        self.addr = "%s:%d" % (bracket, self.port)
        argv = [sluice_bin(), "-L", "debug", "boot", "up", "--bridge",
                "--state-dir", os.path.join(self.workdir, "state"),
                "--api", "127.0.0.1:0", "--agent", self.addr,
                "--agent-certs", certs] + list(args)
        self.proc = Proc(argv, self.workdir, name)
        wait_for(lambda: self._up(), scaled(15), what="agent listening")

    def _up(self):
        if not self.proc.alive():
            raise AssertionError("agent exited:\n" + self.proc.describe())
        return tcp_listening(self.port) and udp_bound(self.port)

    def log(self):
        return self.proc.stderr()

    def stop(self):
        self.proc.signal(15)
        rc = self.proc.wait(15)
        self.proc.kill_group()
        return rc

    def problems(self):
        out = []
        if self.proc.alive():
            rc = self.stop()
            if rc != 0:
                out.append("agent exited with %r after SIGTERM" % rc)
        else:
            rc = self.proc.popen.returncode
            if rc != 0:
                out.append("agent exited with %r" % rc)
        report = sanitizer_report(self.proc.stderr())
        if report:
            out.append("sanitizer report in the agent's stderr:\n" + report)
        return out


@pytest.fixture
def agents(tmp_path, certs):
    made = []

    def make(**kw):
        kw.setdefault("certs", certs["good"])
        a = Agent(tmp_path, name="agent%d" % len(made), **kw)
        made.append(a)
        return a
    yield make
    problems = []
    for a in made:
        problems.extend(a.problems())
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def tls_client(certs, alpn, cert=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(certs, "ca.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(certs, "client.pem"),
                            os.path.join(certs, "client.key"))
    ctx.set_alpn_protocols([alpn])
    return ctx


def stream(agent, certs, hdr, timeout=10):
    """A sluice-stream/1 connection that sent hdr; returns (sock,
    status byte or None)."""
    ctx = tls_client(certs, "sluice-stream/1")
    raw = socket.create_connection((agent.host, agent.port),
                                   timeout=scaled(timeout))
    s = ctx.wrap_socket(raw)
    assert s.selected_alpn_protocol() == "sluice-stream/1"
    s.sendall(hdr)
    st = s.recv(1)
    return s, (st[0] if st else None)


def exchange(s, payload, chunk=65536):
    """Sends payload on TLS socket s and reads as much back; one thread
    (an SSL object is not for two at once), reading what came back
    between writes. (Python cannot half-close TLS: its shutdown drops the
    TLS layer. Half-close is tested through a route, whose relay can.)"""
    got = []
    n = 0
    for off in range(0, len(payload), chunk):
        s.sendall(payload[off:off + chunk])
        s.setblocking(False)
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got.append(d)
                n += len(d)
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        s.setblocking(True)
    s.settimeout(scaled(10))
    while n < len(payload):
        d = s.recv(65536)
        if not d:
            break
        got.append(d)
        n += len(d)
    return b"".join(got)


def status_of(agent, certs, hdr):
    s, st = stream(agent, certs, hdr)
    s.close()
    return st


def curl_info(agent, certs, cert=True, cacert=None):
    argv = [CURL, "-sS", "--http1.1", "--max-time", str(scaled(10)),
            "--cacert", cacert or os.path.join(certs, "ca.pem"),
            "https://%s/info" % agent.addr]
    if cert:
        argv[1:1] = ["--cert", os.path.join(certs, "client.pem"),
                     "--key", os.path.join(certs, "client.key")]
    return run(argv)


def agent_config(agent, certs, routes, **health):
    a = {"address": agent.addr,
         "ca": os.path.join(certs, "ca.pem"),
         "cert": os.path.join(certs, "client.pem"),
         "key": os.path.join(certs, "client.key")}
    a.update(health)
    return {"agents": {"lab": a}, "routes": routes}


class EchoServer:
    """A TCP echo server on loopback that counts its connections."""

    def __init__(self, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    @staticmethod
    def _serve(c):
        with c:
            while True:
                try:
                    d = c.recv(65536)
                except OSError:
                    return
                try:
                    if not d:
                        c.shutdown(socket.SHUT_WR)
                        return
                    c.sendall(d)
                except OSError:
                    return

    def close(self):
        self.closed = True
        self.sock.close()


@pytest.fixture
def echo():
    made = []

    def make(**kw):
        e = EchoServer(**kw)
        made.append(e)
        return e
    yield make
    for e in made:
        e.close()


# ------------------------------------------------------------------ certs

def test_certs_files_and_modes(certs):
    d = certs["good"]
    for name, mode in (("ca.pem", 0o644), ("ca.key", 0o600),
                       ("agent.pem", 0o644), ("agent.key", 0o600),
                       ("client.pem", 0o644), ("client.key", 0o600)):
        assert os.stat(os.path.join(d, name)).st_mode & 0o777 == mode, name
    ca = os.path.join(d, "ca.pem")
    for pem, purpose in (("agent.pem", "sslserver"),
                         ("client.pem", "sslclient")):
        cp = run([OPENSSL, "verify", "-CAfile", ca, "-purpose", purpose,
                  os.path.join(d, pem)])
        assert cp.returncode == 0, cp.stdout + cp.stderr
    cp = run([OPENSSL, "x509", "-in", os.path.join(d, "client.pem"),
              "-noout", "-text"])
    assert b"prime256v1" in cp.stdout or b"P-256" in cp.stdout
    # the client's certificate cannot serve as an agent's
    cp = run([OPENSSL, "verify", "-CAfile", ca, "-purpose", "sslserver",
              os.path.join(d, "client.pem")])
    assert cp.returncode != 0
    # never overwritten by accident
    cp = run_sluice(["agent", "certs", "--out", d])
    assert cp.returncode == 1 and "--force" in cp.stderr


# ------------------------------------------------------ one port, two ALPNs

def test_one_port_api_info_and_streams(agents, certs, echo):
    a = agents(args=["--agent-name", "lab-1"])
    cp = curl_info(a, certs["good"])
    assert cp.returncode == 0, cp.stderr
    info = json.loads(cp.stdout)
    assert info["name"] == "lab-1"
    assert info["streams"] == ["tcp", "udp"]
    assert info["protocol"] == "sluice-stream/1"
    assert info["health"]["status"] == "ok"
    # the node's REST API on the same port
    cp = run([CURL, "-sS", "--http1.1", "--cacert",
              os.path.join(certs["good"], "ca.pem"), "--cert",
              os.path.join(certs["good"], "client.pem"), "--key",
              os.path.join(certs["good"], "client.key"),
              "https://%s/api/bridge/" % a.addr])
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout) == {"bridges": []}

    # a stream on the same port, echoing through a TCP target
    e = echo()
    s, st = stream(a, certs["good"], header("127.0.0.1", e.port))
    assert st == OK
    payload = os.urandom(1 << 20)
    got = exchange(s, payload)
    s.close()
    assert got == payload

    # openssl s_client shows the negotiated protocol
    base = [OPENSSL, "s_client", "-connect", a.addr, "-CAfile",
            os.path.join(certs["good"], "ca.pem")]
    pair = ["-cert", os.path.join(certs["good"], "client.pem"), "-key",
            os.path.join(certs["good"], "client.key")]
    cp = run(base + pair + ["-alpn", "sluice-stream/1"], input=b"")
    out = cp.stdout.decode()
    assert "ALPN protocol: sluice-stream/1" in out, out
    assert "Verify return code: 0 (ok)" in out
    cp = run(base + pair + ["-alpn", "http/1.1"], input=b"")
    assert "ALPN protocol: http/1.1" in cp.stdout.decode()


def test_wrong_or_missing_client_certificate_refused(agents, certs):
    a = agents()
    # curl: no certificate, and one from another CA
    cp = curl_info(a, certs["good"], cert=False)
    assert cp.returncode != 0 and not cp.stdout
    cp = run([CURL, "-sS", "--http1.1", "--max-time", "10", "--cacert",
              os.path.join(certs["good"], "ca.pem"), "--cert",
              os.path.join(certs["other"], "client.pem"), "--key",
              os.path.join(certs["other"], "client.key"),
              "https://%s/info" % a.addr])
    assert cp.returncode != 0 and not cp.stdout
    # openssl s_client (TLS 1.2: the handshake itself fails)
    cp = run([OPENSSL, "s_client", "-tls1_2", "-connect", a.addr,
              "-alpn", "sluice-stream/1"], input=b"")
    out = cp.stdout.decode() + cp.stderr.decode()
    assert cp.returncode != 0, out
    assert "alert" in out, out
    # a stream client without a certificate gets no status
    ctx = tls_client(certs["good"], "sluice-stream/1", cert=False)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with ctx.wrap_socket(socket.create_connection(
                (a.host, a.port), timeout=scaled(5))) as s:
            s.sendall(header("127.0.0.1", 22))
            if not s.recv(1):
                raise ConnectionError("closed")
    # DTLS too, with openssl s_client -dtls1_2
    base = [OPENSSL, "s_client", "-dtls1_2", "-connect", a.addr,
            "-CAfile", os.path.join(certs["good"], "ca.pem")]
    cp = run(base + ["-cert", os.path.join(certs["good"], "client.pem"),
                     "-key", os.path.join(certs["good"], "client.key")],
             input=b"", timeout=20)
    out = cp.stdout.decode()
    assert "Verify return code: 0 (ok)" in out and "Cipher is" in out, out
    for pair in ([], ["-cert", os.path.join(certs["other"], "client.pem"),
                      "-key", os.path.join(certs["other"], "client.key")]):
        cp = run(base + pair + ["-timeout"], input=b"", timeout=20)
        out = cp.stdout.decode() + cp.stderr.decode()
        assert cp.returncode != 0 and "alert" in out, out
    # failures are logged, once per source a minute (TLS and DTLS alike)
    wait_for(lambda: "TLS handshake from 127.0.0.1" in a.log(), scaled(5))
    time.sleep(0.2)
    lines = [ln for ln in a.log().splitlines()
             if "handshake from 127.0.0.1" in ln and "failed" in ln]
    assert len(lines) == 1, lines


# ---------------------------------------------------------------- statuses

def test_statuses_bad_headers_policy_probe(agents, certs, echo):
    a = agents(args=["--agent-allow", "cidr:192.0.2.0/24"])
    g = certs["good"]
    good = header("127.0.0.1", 22)
    bad_crc = good[:-1] + bytes([good[-1] ^ 0xff])
    assert status_of(a, g, bad_crc) == BAD_HEADER
    assert status_of(a, g, header("x" * 10, 80, host_len=300)) == BAD_HEADER
    assert status_of(a, g, header("127.0.0.1", 0)) == BAD_HEADER
    assert status_of(a, g, b"GET / HTTP/1.1\r\n" + b"\0" * 256) == BAD_HEADER
    # a target off the private networks: refused, nothing dialled
    # (documentation addresses: nothing leaves the machine)
    assert status_of(a, g, header("198.51.100.7", 80)) == REFUSED
    # --agent-allow lists extra targets: a UDP target is only checked
    # over TCP (nothing is sent)
    assert status_of(a, g, header("198.51.100.7", 53, udp=True,
                                  probe=True)) == REFUSED
    assert status_of(a, g, header("192.0.2.9", 53, udp=True,
                                  probe=True)) == OK
    # a closed port: dial failed
    closed = free_port()
    assert status_of(a, g, header("127.0.0.1", closed)) == DIAL_FAILED
    # the probe flag: ok and closed; with a target, after dialling it
    e = echo()
    s, st = stream(a, g, header("", 0, probe=True))
    assert st == OK
    assert s.recv(1) == b""  # closed by the agent
    s.close()
    s, st = stream(a, g, header("127.0.0.1", e.port, probe=True))
    assert st == OK and s.recv(1) == b""
    s.close()
    wait_for(lambda: e.accepted == 1, scaled(5), what="the probe's dial")
    assert status_of(a, g, header("127.0.0.1", closed,
                                  probe=True)) == DIAL_FAILED
    # sluice agent probe says the same
    for argv, rc, word in (([], 0, "ok"),
                           (["127.0.0.1:%d" % e.port], 0, "ok"),
                           (["127.0.0.1:%d" % closed], 1, "dial failed"),
                           (["198.51.100.7:80"], 1, "refused"),
                           (["--udp"], 0, "ok"),
                           (["--udp", "127.0.0.1:53"], 0, "ok"),
                           (["--udp", "198.51.100.7:53"], 1, "refused")):
        cp = run_sluice(["agent", "probe", a.addr, "--certs", g] + argv)
        assert cp.returncode == rc, (argv, cp.stdout, cp.stderr)
        assert cp.stdout.startswith(word), (argv, cp.stdout)
    cp = run_sluice(["agent", "info", a.addr, "--certs", g])
    assert cp.returncode == 0 and json.loads(cp.stdout)["streams"]
    log = a.log()
    assert "refused: bad header (checksum mismatch)" in log
    assert "refused: bad header (host length over 255)" in log
    assert "refused: bad header (port 0)" in log


def test_dtls_bad_first_record_gets_bad_header(agents, certs):
    a = agents()
    g = certs["good"]
    # openssl s_client sends each line of its input as one record
    cp = run([OPENSSL, "s_client", "-dtls1_2", "-quiet", "-connect",
              a.addr, "-CAfile", os.path.join(g, "ca.pem"), "-cert",
              os.path.join(g, "client.pem"), "-key",
              os.path.join(g, "client.key")], input=b"not a header\n",
             timeout=20)
    assert cp.stdout == bytes([BAD_HEADER]), (cp.stdout, cp.stderr)
    wait_for(lambda: "refused: bad header (first record is not a "
             "272-byte header)" in a.log(), scaled(5))


def test_caps_and_idle_bounds(agents, certs, echo):
    a = agents(args=["--agent-max-streams", "2", "--agent-idle-ms", "700"])
    g = certs["good"]
    e = echo()
    s1, st1 = stream(a, g, header("127.0.0.1", e.port))
    s2, st2 = stream(a, g, header("127.0.0.1", e.port))
    assert (st1, st2) == (OK, OK)
    assert status_of(a, g, header("127.0.0.1", e.port)) == BUSY
    # silent streams end on the agent's side
    for s in (s1, s2):
        s.settimeout(scaled(5))
        assert s.recv(1) == b""
        s.close()
    assert "idle timeout" in a.log()
    s3, st3 = stream(a, g, header("127.0.0.1", e.port))
    assert st3 == OK
    s3.sendall(b"ping")
    assert recv_exact(s3, 4) == b"ping"
    s3.close()


# ------------------------------------------------- stream routes via agents

def test_tcp_route_through_agent_ssh_curl_iperf3(agents, certs, sluice,
                                                 sshd, http_server,
                                                 iperf3_server):
    a = agents()
    web = http_server(files={"hello.txt": b"hello behind the agent\n"})
    s = sluice(agent_config(a, certs["good"], {
        "ssh": route("tcp", sshd.port, agent="lab"),
        "web": route("tcp", web.port, agent="lab"),
        "iperf": route("tcp", iperf3_server.port, agent="lab")}))
    cp = run(sshd.ssh_argv(s.port("ssh"), "echo", "hello"))
    assert cp.returncode == 0, cp.stderr.decode()
    assert cp.stdout.decode().strip() == "hello"
    data = os.urandom(4 << 20)
    cp = subprocess.run(sshd.ssh_argv(s.port("ssh"), "sha256sum"),
                        input=data, capture_output=True,
                        timeout=scaled(60))
    assert cp.returncode == 0, cp.stderr.decode()
    assert cp.stdout.decode().split()[0] == hashlib.sha256(data).hexdigest()
    cp = run([CURL, "-sS", "http://127.0.0.1:%d/hello.txt" % s.port("web")])
    assert cp.stdout == b"hello behind the agent\n", cp.stderr
    cp = run([IPERF3, "-c", "127.0.0.1", "-p", str(s.port("iperf")), "-J",
              "-t", "2"], timeout=60)
    j = json.loads(cp.stdout)
    assert "error" not in j, j.get("error")
    assert j["end"]["sum_received"]["bytes"] > (1 << 20)
    assert 'agent "lab"' in s.stderr() and "tcp healthy" in s.stderr()


def test_half_close_through_agent(agents, certs, sluice, echo):
    a = agents()
    e = echo()
    s = sluice(agent_config(a, certs["good"], {
        "echo": route("tcp", e.port, agent="lab")}))
    payload = os.urandom(8 << 20)
    with connect(s.port("echo"), timeout=scaled(20)) as c:
        t = threading.Thread(target=lambda: (c.sendall(payload),
                                             c.shutdown(socket.SHUT_WR)))
        t.start()
        got = []
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            got.append(d)
        t.join()
    # the FIN went through the agent (close_notify, then FIN) to the
    # echo server, whose FIN came back the same way after the bytes
    assert b"".join(got) == payload


def test_udp_route_through_agent_dig_50_flows(agents, certs, sluice,
                                              dnsmasq):
    a = agents()
    s = sluice(agent_config(a, certs["good"], {
        "dns": route("udp", dnsmasq.port, agent="lab")}))
    port = s.port("dns")
    results = [None] * 50

    def one(i):
        results[i] = run([DIG, "@127.0.0.1", "-p", str(port),
                          "q%d.test.local" % i, "+short",
                          "+time=%d" % max(2, int(scaled(4))), "+tries=2"],
                         timeout=30)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for cp in results:
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert cp.stdout.decode().strip() == dnsmasq.ANSWER
    # one DTLS session per flow at the agent
    opened = a.log().count("udp session #")
    assert opened >= 50 or a.log().count(": ok") >= 50
    assert "udp healthy" in s.stderr()


def agents_api(api_port):
    cp = run([CURL, "-sS", "http://127.0.0.1:%d/api/agents/" % api_port])
    return {a["name"]: a for a in json.loads(cp.stdout)["agents"]}


def metric(api_port, line_start):
    cp = run([CURL, "-sS", "http://127.0.0.1:%d/metrics" % api_port])
    for line in cp.stdout.decode().splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return None


def test_health_checks_down_and_back(tmp_path, agents, certs, sluice,
                                     echo):
    port = free_port(both=True)
    a = agents(port=port)
    e = echo()
    api = free_port()
    # with the node role in the same process: its API shows the agents
    s = sluice(agent_config(a, certs["good"], {
        "echo": route("tcp", e.port, agent="lab"),
        "u": route("udp", 9, agent="lab")},
        health_interval="1s", health_timeout="500ms"),
        args=["--bridge", "--node-api", "127.0.0.1:%d" % api,
              "--state-dir", str(tmp_path / "proxy-state")])
    wait_for(lambda: "tcp healthy" in s.stderr(), scaled(10))
    wait_for(lambda: agents_api(api)["lab"]["info"] is not None, scaled(5))
    lab = agents_api(api)["lab"]
    assert lab["tcp"]["health"] == "healthy"
    assert lab["info"]["streams"] == ["tcp", "udp"]
    assert metric(api, 'sluice_agent_up{agent="lab",proto="tcp"}') == 1
    with connect(s.port("echo")) as c:
        c.sendall(b"one")
        assert recv_exact(c, 3) == b"one"
    assert a.stop() == 0
    # unhealthy within 3 intervals (and a little)
    wait_for(lambda: "tcp unhealthy" in s.stderr() and
             "udp unhealthy" in s.stderr(), scaled(3 * 1 + 3),
             what="the agent marked unhealthy")
    t0 = time.monotonic()
    with connect(s.port("echo")) as c:
        c.settimeout(scaled(5))
        assert c.recv(1) == b""  # refused at once, not after a dial
    assert time.monotonic() - t0 < 1.0
    assert "unreachable (host is down)" in s.stderr()
    lab = agents_api(api)["lab"]
    assert lab["tcp"]["health"] == "unhealthy" and lab["tcp"]["error"]
    assert metric(api, 'sluice_agent_up{agent="lab",proto="tcp"}') == 0
    # back on the same port: healthy again, traffic flows
    agents(port=port)
    wait_for(lambda: s.stderr().count("tcp healthy") >= 2, scaled(10),
             what="the agent healthy again")
    with connect(s.port("echo")) as c:
        c.sendall(b"two")
        assert recv_exact(c, 3) == b"two"


def test_udp_sessions_end_on_both_sides(agents, certs, sluice,
                                        udp_upstream):
    a = agents(args=["--agent-udp-idle-ms", "1500"])
    up = udp_upstream(reply_prefix=b"re:")
    s = sluice(agent_config(a, certs["good"], {
        "u": route("udp", up.port, agent="lab", udp_idle_timeout="1s",
                   udp_sweep_interval="200ms")}))
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(scaled(5))
    try:
        for i in range(3):
            c.sendto(b"q%d" % i, ("127.0.0.1", s.port("u")))
            assert c.recvfrom(100)[0] == b"re:q%d" % i
        # the route's session ends when idle and says so to the agent
        wait_for(lambda: "closed by the client" in a.log(), scaled(5),
                 what="the agent's session ended by close_notify")
    finally:
        c.close()
    # an agent's own idle bound ends a session whose client went quiet
    # without a word: a DTLS session opened by hand and left
    g = certs["good"]
    p = subprocess.Popen([OPENSSL, "s_client", "-dtls1_2", "-quiet",
                          "-connect", a.addr, "-CAfile",
                          os.path.join(g, "ca.pem"), "-cert",
                          os.path.join(g, "client.pem"), "-key",
                          os.path.join(g, "client.key")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        p.stdin.write(header("127.0.0.1", up.port, udp=True))
        p.stdin.flush()
        wait_for(lambda: "closed (idle" in a.log(), scaled(8),
                 what="the agent's idle bound")
    finally:
        p.kill()
        p.wait()


def test_ipv6_agent(agents, certs, sluice, echo):
    try:
        with socket.socket(socket.AF_INET6) as t:
            t.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    a = agents(host="::1")
    e = echo(host="::1")
    s = sluice(agent_config(a, certs["good"], {
        "echo": route("tcp", e.port, host="::1", agent="lab")}))
    with connect(s.port("echo")) as c:
        c.sendall(b"over six")
        assert recv_exact(c, 8) == b"over six"
    st, = [status_of(a, certs["good"], header("::1", e.port))]
    assert st == OK
    # a dual-stack agent answers IPv4 clients over DTLS too (its answers
    # go to the IPv4-mapped address the socket gave)
    dual = agents(host="::")
    for addr in ("127.0.0.1:%d" % dual.port, "[::1]:%d" % dual.port):
        for extra in ([], ["--udp"]):
            cp = run_sluice(["agent", "probe", addr, "--certs",
                             certs["good"]] + extra)
            assert cp.returncode == 0, (addr, extra, cp.stderr)


def route_list(state, json_out=True):
    """`sluice route list` of the routes' process on state: the parsed
    JSON (None when it fails), or the CompletedProcess for the table."""
    cp = run_sluice(["route", "list", "--state-dir", str(state)] +
                    (["--json"] if json_out else []))
    if not json_out:
        return cp
    return json.loads(cp.stdout) if cp.returncode == 0 else None


def test_route_list_shows_agent_health(tmp_path, agents, certs, sluice,
                                       echo):
    """A routes-only process (no API) publishes its routes and agents in
    routes.json; `sluice route list` prints them: healthy, then
    unhealthy with the error once the agent stops."""
    a = agents()
    e = echo()
    state = tmp_path / "routes-state"
    s = sluice(agent_config(a, certs["good"], {
        "echo": route("tcp", e.port, agent="lab"),
        "direct": route("tcp", e.port)},
        health_interval="1s", health_timeout="500ms"),
        args=["--state-dir", str(state)])

    def lab():
        j = route_list(state)
        return j["agents"][0] if j else None
    wait_for(lambda: (lab() or {}).get("info") is not None and
             lab()["tcp"]["health"] == "healthy", scaled(10),
             what="the agent healthy in sluice route list")
    j = route_list(state)
    assert j["pid"] == s.pid
    routes = {r["name"]: r for r in j["routes"]}
    assert routes["echo"]["agent"] == "lab"
    assert routes["direct"]["agent"] is None
    assert routes["echo"]["listen"] == "127.0.0.1:%d" % s.port("echo")
    assert routes["echo"]["target"] == "127.0.0.1:%d" % e.port
    assert j["agents"][0]["info"]["streams"] == ["tcp", "udp"]
    with connect(s.port("echo")) as c:
        c.sendall(b"ping")
        assert recv_exact(c, 4) == b"ping"
    # the counters follow within the second of publishing
    wait_for(lambda: {r["name"]: r for r in route_list(state)["routes"]}
             ["echo"]["connections"] >= 1, scaled(5),
             what="the route's counters published")
    cp = route_list(state, json_out=False)
    assert cp.returncode == 0, cp.stderr
    assert "lab (healthy)" in cp.stdout
    assert "tcp,udp" in cp.stdout and a.addr in cp.stdout
    assert a.stop() == 0
    wait_for(lambda: lab()["tcp"]["health"] == "unhealthy" and
             lab()["udp"]["health"] == "unhealthy", scaled(3 * 1 + 3),
             what="the agent unhealthy in sluice route list")
    assert lab()["tcp"]["error"]
    cp = route_list(state, json_out=False)
    assert "lab (unhealthy)" in cp.stdout, cp.stdout
    assert "tcp: " in cp.stdout  # the last error
    # a clean exit takes the file away
    assert s.stop() == 0
    assert not (state / "routes.json").exists()
    cp = route_list(state, json_out=False)
    assert cp.returncode == 1 and "no stream routes" in cp.stderr
