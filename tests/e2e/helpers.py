"""Helpers for the end-to-end suite: timeouts, polling, free ports, process
handling, config files and small in-process peers.

Every timeout goes through scaled(), so SLUICE_TEST_TIMEOUT_SCALE=3 gives a
slow machine (or a sanitizer build) three times as long everywhere.
"""

import ctypes
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

SCALE = float(os.environ.get("SLUICE_TEST_TIMEOUT_SCALE", "1") or "1")

# Source address of TcpUpstream.sync() probes; sluice never dials from it.
PROBE_SOURCE = "127.0.0.254"

# Strings a sanitizer build prints when it finds a bug.
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error")


def scaled(seconds):
    return seconds * SCALE


def sluice_bin():
    path = os.environ.get("SLUICE_BIN", "build/sluice")
    return os.path.abspath(path)


def wait_for(cond, timeout, interval=0.02, what=None):
    """Polls cond() until it returns something truthy and returns that.
    Raises AssertionError after `timeout` seconds (scaled)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (scaled(timeout), what or getattr(
                                     cond, "__name__", "condition")))
        time.sleep(interval)


def free_port(host="127.0.0.1", udp=False, both=False):
    """A port that is free on host right now (TCP, UDP, or both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        with socket.socket(family, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if not both:
            return port
        other = socket.SOCK_STREAM if udp else socket.SOCK_DGRAM
        try:
            with socket.socket(family, other) as s:
                s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port found")


def _proc_net_ports(files, state=None):
    ports = set()
    for name in files:
        try:
            with open("/proc/net/" + name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if state is not None and parts[3] != state:
                        continue
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def tcp_listening(port):
    """True if some socket of this machine listens on TCP port."""
    return port in _proc_net_ports(("tcp", "tcp6"), state="0A")


def udp_bound(port):
    """True if some UDP socket of this machine is bound to port."""
    return port in _proc_net_ports(("udp", "udp6"))


# Where Debian installs programs, searched after PATH: a CI shell's PATH
# may leave out /usr/sbin (dnsmasq, haproxy, sshd, nginx).
DEBIAN_BIN_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def find_binary(path_or_name):
    """The program's path (through PATH, then Debian's folders), or None."""
    if "/" in path_or_name:
        return path_or_name if os.access(path_or_name, os.X_OK) else None
    found = shutil.which(path_or_name)
    if found:
        return found
    for d in DEBIAN_BIN_DIRS:
        candidate = os.path.join(d, path_or_name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_binary(path_or_name):
    """Returns the binary's path, or skips the test if it is not installed
    (a failure under CI=true: scripts/setup.sh installs every peer)."""
    import pytest
    path = find_binary(path_or_name)
    if not path and "/" in path_or_name:
        path = find_binary(os.path.basename(path_or_name))
    if not path:
        pytest.skip("%s is not installed" % path_or_name)
    return path


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- processes

class Proc:
    """A child process in its own process group, its stdout and stderr
    written to files (no pipe can fill up and block it)."""

    registry = []  # every Proc ever started, for the session's safety net

    def __init__(self, argv, workdir, name, env=None, preexec_fn=None,
                 stdin=subprocess.DEVNULL):
        self.argv = [str(a) for a in argv]
        self.name = name
        self.out_path = os.path.join(str(workdir), name + ".out")
        self.err_path = os.path.join(str(workdir), name + ".err")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(
            self.argv, stdout=self._out, stderr=self._err, stdin=stdin,
            env=full_env, start_new_session=True, preexec_fn=preexec_fn)
        self.pid = self.popen.pid
        Proc.registry.append(self)

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Waits up to timeout (scaled) seconds; returns the exit code or
        None if it is still running."""
        try:
            return self.popen.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            return None

    def kill_group(self):
        """Ends the process and everything it started (its group)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.popen.wait(timeout=scaled(3))
                break
            except subprocess.TimeoutExpired:
                continue
        # the group may outlive its leader (forked workers): finish it
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._close_files()

    def _close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass

    def describe(self):
        return "%s (pid %d) %s\n--- stdout:\n%s\n--- stderr:\n%s" % (
            self.name, self.pid, " ".join(self.argv), self.stdout()[-4000:],
            self.stderr()[-4000:])


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def in_netns(ns, fn, timeout=60):
    """Runs fn() on a thread that entered ns's network namespace (ns.name
    under /run/netns; only that thread moves) and returns its result:
    sockets it makes live in ns, and threads it starts stay there."""
    out = {}

    def run():
        try:
            fd = os.open("/run/netns/" + ns.name, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "setns: " + os.strerror(e))
            finally:
                os.close(fd)
            out["value"] = fn()
        except BaseException as e:  # handed to the caller
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(scaled(timeout))
    if "error" in out:
        raise out["error"]
    assert "value" in out, "in_netns: no result within %.0f s" % scaled(
        timeout)
    return out["value"]


def sanitizer_report(text):
    """The sanitizer complaint in text, or None."""
    for mark in SANITIZER_MARKS:
        if mark in text:
            i = text.index(mark)
            return text[max(0, i - 200):i + 3000]
    return None


# ----------------------------------------------------------------- config

def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    # JSON strings are valid YAML double-quoted scalars
    return json.dumps(str(v))


def _yaml_lines(obj, indent):
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (pad, k))
                out.extend(_yaml_lines(v, indent + 1))
            elif isinstance(v, list):
                out.append("%s%s: []" % (pad, k))
            elif isinstance(v, dict):
                out.append("%s%s: {}" % (pad, k))
            else:
                out.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)):
                sub = _yaml_lines(v, indent + 1)
                out.append("%s- %s" % (pad, sub[0].lstrip()))
                out.extend(sub[1:])
            else:
                out.append("%s- %s" % (pad, _yaml_scalar(v)))
    return out


def to_yaml(obj):
    """A block-style YAML text of nested dicts, lists and scalars."""
    return "\n".join(_yaml_lines(obj, 0)) + "\n"


def route(scheme, target_port, listen_port=0, host="127.0.0.1",
          bind="127.0.0.1", **extra):
    """One route's mapping; extra keys (acl, proxy_protocol, ...) are added
    as they are."""
    r = {"scheme": scheme, "bind": bind, "host": host,
         "port": "%d:%d" % (listen_port, target_port)}
    r.update(extra)
    return r


LISTENING_RE = re.compile(
    r"^listening (\S+) (\S+) (\S+):(\d+) -> (\S+)$")


class RouteInfo:
    def __init__(self, name, scheme, addr, port, target):
        self.name = name
        self.scheme = scheme
        self.addr = addr.strip("[]")
        self.port = port
        self.target = target

    def __repr__(self):
        return "RouteInfo(%s %s %s:%d -> %s)" % (
            self.name, self.scheme, self.addr, self.port, self.target)


def parse_listening(text):
    routes = {}
    for line in text.splitlines():
        m = LISTENING_RE.match(line.strip())
        if m:
            routes[m.group(1)] = RouteInfo(m.group(1), m.group(2), m.group(3),
                                           int(m.group(4)), m.group(5))
    return routes


STATS_RE = re.compile(
    r'route "([^"]+)": stats: connections (\d+) total, (\d+) active; '
    r'in (\d+) bytes, out (\d+) bytes; denied (\d+), failed (\d+)')


def tcp_route_stats(log_text, name):
    """The last TCP stats line sluice logged for route `name` (it logs one
    per route at info level when it stops) as a dict, or None."""
    found = None
    for m in STATS_RE.finditer(log_text):
        if m.group(1) == name:
            found = dict(zip(("total", "active", "in", "out", "denied",
                              "failed"), map(int, m.groups()[1:])))
    return found


# ------------------------------------------------------------ socket bits

def connect(port, host="127.0.0.1", source=None, timeout=5):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(scaled(timeout))
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def recv_all(sock, timeout=5, limit=1 << 26):
    """Reads until EOF. Returns (data, how) where how is 'eof', 'reset' or
    'timeout'."""
    sock.settimeout(scaled(timeout))
    chunks = []
    total = 0
    deadline = time.monotonic() + scaled(timeout)
    while total < limit:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            return b"".join(chunks), "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return b"".join(chunks), "reset"
        if not b:
            return b"".join(chunks), "eof"
        chunks.append(b)
        total += len(b)
        if time.monotonic() > deadline:
            return b"".join(chunks), "timeout"
    return b"".join(chunks), "limit"


def recv_exact(sock, n, timeout=5):
    sock.settimeout(scaled(timeout))
    buf = b""
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        if not b:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += b
    return buf


def closed_by_peer(sock, timeout=5):
    """True if the peer closes the connection (EOF or reset) within timeout
    without sending any byte."""
    data, how = recv_all(sock, timeout=timeout)
    return how in ("eof", "reset") and data == b""


# ------------------------------------------------------------ PROXY protocol

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pp_v1(src, sport, dst, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def pp_v2(src, sport, dst, dport, stream=True):
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(dst)
    if s.version == 4:
        fam = 0x10 | (1 if stream else 2)
        body = s.packed + d.packed + struct.pack("!HH", sport, dport)
    else:
        fam = 0x20 | (1 if stream else 2)
        body = s.packed + d.packed + struct.pack("!HH", sport, dport)
    return PP2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def parse_pp_v2(buf):
    """Parses a v2 header at the start of buf. Returns (info, rest) where
    info is a dict (command, src, sport, dst, dport), or (None, buf) if buf
    does not start with a complete v2 header."""
    if len(buf) < 16 or buf[:12] != PP2_SIG:
        return None, buf
    ver_cmd, fam = buf[12], buf[13]
    length = struct.unpack("!H", buf[14:16])[0]
    if len(buf) < 16 + length:
        return None, buf
    body = buf[16:16 + length]
    info = {"version": ver_cmd >> 4, "command": ver_cmd & 0xF,
            "family": fam >> 4, "proto": fam & 0xF}
    if fam >> 4 == 1 and length >= 12:
        info["src"] = str(ipaddress.IPv4Address(body[0:4]))
        info["dst"] = str(ipaddress.IPv4Address(body[4:8]))
        info["sport"], info["dport"] = struct.unpack("!HH", body[8:12])
    elif fam >> 4 == 2 and length >= 36:
        info["src"] = str(ipaddress.IPv6Address(body[0:16]))
        info["dst"] = str(ipaddress.IPv6Address(body[16:32]))
        info["sport"], info["dport"] = struct.unpack("!HH", body[32:36])
    return info, buf[16 + length:]


# ------------------------------------------------------------ DNS

def dns_query(name, qid=0x1234):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack("!HH", 1, 1)


def dns_answer_a(resp):
    """The IPv4 addresses in the answer section of a DNS response."""
    qd, an = struct.unpack("!HH", resp[4:8])
    i = 12
    for _ in range(qd):
        while resp[i] != 0:
            i += resp[i] + 1
        i += 5
    addrs = []
    for _ in range(an):
        if resp[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while resp[i] != 0:
                i += resp[i] + 1
            i += 1
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", resp[i:i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(resp[i:i + 4]))
        i += rdlen
    return addrs


# ------------------------------------------------------- in-process upstreams

_NGINX_CONF = """worker_processes %(workers)d;
%(user)s
pid %(d)s/nginx.pid;
error_log stderr %(error_level)s;
%(rlimit)sevents { worker_connections %(connections)d; }
http {
  access_log off;
  client_body_temp_path %(t)s/body;
  proxy_temp_path %(t)s/proxy;
  fastcgi_temp_path %(t)s/fastcgi;
  uwsgi_temp_path %(t)s/uwsgi;
  scgi_temp_path %(t)s/scgi;
%(bulk_http)s  server {
    listen 127.0.0.1:%(port)d%(backlog)s;
%(server)s
  }
}
"""


def start_nginx(nginx, d, name, port, server, workers=1, connections=256,
                error_level="warn", bulk=False):
    """Starts nginx (the binary at `nginx`) with prefix d, its config in
    d/nginx.conf and its temp files under d/tmp, serving one server on
    127.0.0.1:port whose block is the text `server` (indented by four).
    bulk: many connections and large files (twice `connections` open
    files, a listen backlog of 4096, sendfile, endless keep-alive). As
    root, its workers stay root. Returns its Proc; the caller waits for
    the port."""
    t = os.path.join(d, "tmp")
    os.makedirs(t, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(_NGINX_CONF % {
            "workers": workers, "d": d, "t": t, "port": port,
            "user": "user root root;" if os.geteuid() == 0 else "",
            "error_level": error_level, "connections": connections,
            "rlimit": ("worker_rlimit_nofile %d;\n" % (2 * connections)
                       if bulk else ""),
            "bulk_http": ("  keepalive_requests 1000000;\n  sendfile on;\n"
                          if bulk else ""),
            "backlog": " backlog=4096" if bulk else "",
            "server": server})
    return Proc([nginx, "-p", d, "-e", "stderr", "-c", conf,
                 "-g", "daemon off;"], d, name)


class TcpUpstream:
    """A TCP server on a free loopback port, served by one thread. Each
    accepted connection is handed to handler(conn, record) in its own
    thread; record is a dict the handler may fill (it starts with 'peer').
    `records` lists every accepted connection in accept order."""

    def __init__(self, handler, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(512)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.records = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._conns = []
        self._threads = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(scaled(20))
            rec = {"peer": peer, "done": threading.Event()}
            with self.lock:
                self.records.append(rec)
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, rec),
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn, rec):
        try:
            if rec["peer"][0] == PROBE_SOURCE:
                rec["probe"] = True
                return
            self.handler(conn, rec)
        except OSError as e:
            rec["error"] = repr(e)
        finally:
            rec["done"].set()
            try:
                conn.close()
            except OSError:
                pass

    def accepted(self):
        """Accepted connections, not counting sync probes."""
        with self.lock:
            return [r for r in self.records
                    if r["peer"][0] != PROBE_SOURCE]

    def _probes(self):
        with self.lock:
            return sum(1 for r in self.records if r["peer"][0] == PROBE_SOURCE)

    def sync(self, timeout=5):
        """Connects directly (from PROBE_SOURCE) and waits until this
        connection is accepted. The accept queue is FIFO, so once it is,
        every connection made before the call has been accepted too: a
        count taken afterwards is exact, no sleep needed to prove that
        something did not connect."""
        before = self._probes()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(scaled(timeout))
            s.bind((PROBE_SOURCE, 0))
            s.connect((self.host, self.port))
            wait_for(lambda: self._probes() > before, timeout,
                     what="upstream sync probe")
        finally:
            s.close()

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass
        self.thread.join(timeout=2)


def handler_echo(conn, rec):
    total = 0
    while True:
        b = conn.recv(65536)
        if not b:
            break
        total += len(b)
        conn.sendall(b)
    rec["bytes"] = total


def handler_pp_echo(conn, rec):
    """Expects a PROXY v2 header, records it, then echoes the rest."""
    buf = b""
    while True:
        info, rest = parse_pp_v2(buf)
        if info is not None:
            break
        b = conn.recv(4096)
        if not b:
            rec["pp"] = None
            rec["raw"] = buf
            return
        buf += b
        if len(buf) > 4096:
            rec["pp"] = None
            rec["raw"] = buf
            return
    rec["pp"] = info
    if rest:
        conn.sendall(rest)
    handler_echo(conn, rec)


class UdpUpstream:
    """A UDP echo server on a free loopback port that records the source
    address of every datagram it gets."""

    def __init__(self, host="127.0.0.1", reply_prefix=b""):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.reply_prefix = reply_prefix
        self.received = []  # (peer, data)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(70000)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.received.append((peer, data))
            try:
                self.sock.sendto(self.reply_prefix + data, peer)
            except OSError:
                pass

    def peers(self):
        with self.lock:
            return [p for p, _ in self.received]

    def close(self):
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close()
