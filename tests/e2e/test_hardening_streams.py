"""Issue 8, stream routes: idle TCP relays, connection caps (global and per
source), PROXY headers forged by untrusted sources, and UDP session tables
filled from spoofed sources. Each test performs the attack; see
docs/security.md "Attacks and faults tested"."""

import socket
import sys
import time

import pytest

from helpers import (closed_by_peer, connect, handler_echo, pp_v1,
                     recv_exact, route, scaled, sluice_bin, wait_for)
from netns import Netns, link
from peers import Sluice


def echo_once(port, payload=b"ping", source=None):
    with connect(port, source=source) as c:
        c.sendall(payload)
        return recv_exact(c, len(payload)) == payload


# ------------------------------------------------------------ TCP idle

def test_tcp_idle_relay_is_closed_after_tcp_idle_timeout(sluice,
                                                          tcp_upstream):
    # Attack: connect, say one thing, then hold the relay (and its upstream
    # socket) open for ever without a byte either way.
    up = tcp_upstream(handler_echo)
    s = sluice({"routes": {"r": route("tcp", up.port,
                                      tcp_idle_timeout="1s")}})
    port = s.port("r")
    idle = connect(port)
    busy = connect(port)
    try:
        for c in (idle, busy):
            c.sendall(b"hi")
            assert recv_exact(c, 2) == b"hi"
        t0 = time.monotonic()
        # busy makes progress every 300 ms: it must outlive idle, whose
        # timer is never reset
        idle.settimeout(0.3)
        closed_at = None
        deadline = t0 + scaled(6)
        while time.monotonic() < deadline and closed_at is None:
            busy.sendall(b"x")
            assert recv_exact(busy, 1) == b"x"
            try:
                if idle.recv(1) == b"":
                    closed_at = time.monotonic()
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed_at = time.monotonic()
        assert closed_at is not None, "idle relay still open"
        assert closed_at - t0 >= 0.9, closed_at - t0
        # progress kept the other one alive past the idle timeout
        busy.sendall(b"still")
        assert recv_exact(busy, 5) == b"still"
        wait_for(lambda: "idle timeout" in s.stderr(), 5,
                 what="the idle close in the log")
    finally:
        idle.close()
        busy.close()


# ------------------------------------------------------------ TCP caps

def test_tcp_per_source_cap_refuses_cleanly_others_served(sluice,
                                                          tcp_upstream):
    # Attack: one source opens connections until the route is full.
    up = tcp_upstream(handler_echo)
    s = sluice({"routes": {"r": route("tcp", up.port, max_connections=10,
                                      max_connections_per_source=3)}})
    port = s.port("r")
    held = []
    try:
        for _ in range(3):
            c = connect(port, source="127.0.0.21")
            c.sendall(b"a")
            assert recv_exact(c, 1) == b"a"
            held.append(c)
        with connect(port, source="127.0.0.21") as extra:
            assert closed_by_peer(extra, timeout=5)
        # another source is served while the first is at its cap
        assert echo_once(port, source="127.0.0.22")
        wait_for(lambda: "denied (connection limit per source)" in
                 s.stderr(), 5, what="the refusal in the log")
        # the slot comes back when one closes
        held.pop().close()
        wait_for(lambda: _try_echo(port, "127.0.0.21"), 10,
                 what="a new connection from the capped source")
    finally:
        for c in held:
            c.close()


def _try_echo(port, source):
    try:
        return echo_once(port, source=source)
    except (OSError, AssertionError):
        return False


def test_tcp_global_cap_counts_connections_before_their_proxy_header(
        sluice, tcp_upstream):
    # Attack: trusted-source connections that never finish their PROXY
    # header were not counted by max_connections, so they were unbounded.
    up = tcp_upstream(handler_echo)
    s = sluice({"routes": {"r": route(
        "tcp", up.port, max_connections=3, proxy_protocol="required",
        proxy_protocol_timeout="60s")}})
    port = s.port("r")
    silent = [connect(port) for _ in range(3)]
    try:
        with connect(port) as extra:
            assert closed_by_peer(extra, timeout=5)
    finally:
        for c in silent:
            c.close()
    wait_for(lambda: _try_pp_echo(port), 10, what="a slot after the close")


def _try_pp_echo(port):
    try:
        with connect(port) as c:
            c.sendall(pp_v1("198.51.100.1", 1000, "127.0.0.1", port) + b"ok")
            return recv_exact(c, 2) == b"ok"
    except (OSError, AssertionError):
        return False


# ------------------------------------------------------------ PROXY trust

CLIENT = r"""
import socket, sys
src, port = sys.argv[1], int(sys.argv[2])
hdr = ("PROXY TCP4 198.51.100.7 10.0.0.1 4000 %d\r\n" % port).encode()
c = socket.create_connection(("10.77.0.1", port), timeout=float(sys.argv[3]))
c.sendall(hdr + b"ping")
got = b""
try:
    while len(got) < 4:
        b = c.recv(4 - len(got))
        if not b:
            break
        got += b
except OSError as e:
    print("error", type(e).__name__)
print("got", got.decode(errors="replace") or "-")
"""

ECHO = r"""
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@pytest.mark.parametrize("mode", ["mixed", "required"])
def test_proxy_header_forged_by_non_loopback_source_is_not_believed(
        tmp_path, mode):
    # Attack: the route allows only 198.51.100.0/24 and accepts PROXY
    # headers with no proxy_protocol_trusted list; a client from
    # 10.77.0.2 (another namespace, so not loopback) claims to be
    # 198.51.100.7. It must not get through.
    with Netns(tmp_path) as srv, Netns(tmp_path) as cli:
        link(srv, "10.77.0.1/24", cli, "10.77.0.2/24")
        echo = srv.proc("echo", sys.executable, "-c", ECHO)
        up_port = int(wait_for(lambda: echo.stdout().strip(), 10,
                               what="the echo server's port"))
        s = Sluice(tmp_path, {"routes": {"r": route(
            "tcp", up_port, bind="0.0.0.0", proxy_protocol=mode,
            acl={"allow": ["cidr:198.51.100.0/24"]})}},
            binary="ip", global_args=("netns", "exec", srv.name,
                                      sluice_bin()))
        try:
            port = s.port("r")
            cp = cli.run(sys.executable, "-c", CLIENT, "10.77.0.2",
                         str(port), str(scaled(5)), timeout=30)
            assert cp.returncode == 0, cp.stderr
            assert cp.stdout.strip().endswith("got -"), cp.stdout
            if mode == "required":
                want = "not a trusted PROXY protocol source"
            else:
                want = "from 10.77.0.2:"
            wait_for(lambda: want in s.stderr(), 5, what=want)
            assert "198.51.100.7" not in s.stderr()
        finally:
            rc = s.stop()
        assert rc == 0, s.stderr()
        assert not s.problems(), s.problems()


# ------------------------------------------------------------ UDP table

class SilentUdp:
    """A UDP socket that reads nothing and answers nothing."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def udp_ask(port, payload, source, timeout=2):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.bind((source, 0))
        c.settimeout(scaled(timeout))
        c.sendto(payload, ("127.0.0.1", port))
        try:
            return c.recvfrom(70000)[0]
        except socket.timeout:
            return None


def test_udp_one_prefix_cannot_fill_the_session_table(sluice, udp_upstream):
    # Attack: many sources of one /24 (spoofed, in real life) open a session
    # each until the table is full; then a client of another prefix gets
    # nothing.
    up = udp_upstream()
    s = sluice({"routes": {"u": route("udp", up.port, max_connections=20,
                                      max_sessions_per_prefix=5)}})
    port = s.port("u")
    socks = []
    try:
        for i in range(2, 32):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind(("127.0.0.%d" % i, 0))
            c.sendto(b"flood", ("127.0.0.1", port))
            socks.append(c)
        # the table never held more than 5 of them
        got = udp_ask(port, b"other prefix", "127.0.1.9", timeout=5)
        assert got == b"other prefix"
        wait_for(lambda: "session limit per prefix" in s.stderr(), 5,
                 what="the per-prefix refusals in the log")
    finally:
        for c in socks:
            c.close()


def test_udp_unanswered_sessions_expire_fast(sluice, udp_upstream):
    silent = SilentUdp()
    up = udp_upstream()
    try:
        s = sluice({"routes": {
            "silent": route("udp", silent.port, udp_unreplied_timeout="1s"),
            "echo": route("udp", up.port, udp_unreplied_timeout="1s")}},
            global_args=("--log-level=debug",))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as e, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            e.bind(("127.0.0.32", 0))
            e.settimeout(scaled(2))
            e.sendto(b"hi", ("127.0.0.1", s.port("echo")))
            assert e.recvfrom(100)[0] == b"hi"
            c.bind(("127.0.0.31", 0))
            c.sendto(b"anyone?", ("127.0.0.1", s.port("silent")))
            silent.sock.settimeout(scaled(5))
            _, first = silent.sock.recvfrom(100)
            t0 = time.monotonic()
            wait_for(lambda: 'route "silent": session #1 from 127.0.0.31'
                     in s.stderr() and "(no reply" in s.stderr(), 8,
                     what="the unanswered session to expire")
            assert time.monotonic() - t0 < scaled(5)
            c.sendto(b"again", ("127.0.0.1", s.port("silent")))
            _, second = silent.sock.recvfrom(100)
            assert second != first  # a new session, a new upstream socket
            # the answered session, as old, lived on: same upstream socket
            e.sendto(b"hi", ("127.0.0.1", s.port("echo")))
            assert e.recvfrom(100)[0] == b"hi"
        assert len(set(up.peers())) == 1, up.peers()
        assert 'route "echo": session #1 from' not in "".join(
            ln for ln in s.stderr().splitlines(True) if "closed" in ln)
    finally:
        silent.close()
