"""Attacks on the WebSocket layer (src/net/ws.c) from either end of the
tunnel: a peer that floods pings and never reads the pongs (the hub facing
a hostile bridge, the node facing a hostile hub), and a message cut into
as many tiny or empty fragments as a peer cares to send. Each must cost a
bounded amount of memory (VmRSS of the real process, before and after)
and touch only its own connection: a real bridge keeps serving."""

import base64
import fcntl
import hashlib
import os
import socket
import struct
import termios
import threading
import time

import pytest

from helpers import scaled, wait_for
from tunnel_x_support import (basic, curl_via, read_head, upgrade_request,
                              ws_frame_split)

FLOOD_MB = 26
GROWTH_KIB = 16 * 1024   # what the flood may add to the process's RSS
PING = b"\x89\xfd\x00\x00\x00\x00" + b"p" * 125   # masked, zero key
SERVER_PING = b"\x89\x7d" + b"p" * 125              # a hub's, unmasked
# Under AddressSanitizer every freed block waits in a quarantine (256 MB by
# default) before reuse, so RSS would count the pings already answered:
# cut it to 1 MB, and RSS shows what the process holds. No effect without
# ASan.
LEAN = {"ASAN_OPTIONS": ":".join(
    o for o in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=1")
    if o)}


def outq(sock):
    """Bytes sock has sent that the peer's kernel has not acknowledged
    (they sit in our send buffer)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                          b"\0\0\0\0"))[0]


def flood(sock, unit, total, stall=2.0):
    """Sends `unit` repeatedly, up to `total` bytes, until the peer stops
    taking them for `stall` s (scaled). Returns the bytes sent."""
    chunk = unit * max(1, (256 * 1024) // len(unit))
    sock.settimeout(scaled(stall))
    sent = 0
    while sent < total:
        try:
            n = sock.send(chunk)
        except socket.timeout:
            break
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += n
    return sent


def settled(sock, timeout=30):
    """Waits until the peer has stopped taking bytes from sock (its send
    queue empty, or unchanged for a second): the peer has read all it is
    going to read."""
    last = [None, time.monotonic()]

    def still():
        q = outq(sock)
        now = time.monotonic()
        if q == 0:
            return True
        if q != last[0]:
            last[0], last[1] = q, now
            return False
        return now - last[1] >= 1.0
    wait_for(still, timeout, interval=0.1, what="the peer to stop reading")


def control(hub, creds):
    s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
    s.sendall(upgrade_request("/_sluice/v1/control", "127.0.0.1", {
        "Authorization": basic(creds["username"], creds["password"])}))
    st, head, rest = read_head(s, timeout=30)
    assert st == 101, head
    return s


def site(env):
    hub = env.hub(env=LEAN)
    up = env.hash_upstream("legit")
    node = env.node(hub, up.url)
    return hub, node


def still_serving(hub, node):
    cp = curl_via(hub, node.identity, "/check", "--fail")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "legit /check"


def test_ping_flood_unread_hub_memory_bounded(env):
    hub, node = site(env)
    still_serving(hub, node)
    creds = hub.create()
    s = control(hub, creds)
    before = hub.rss_kib()
    sent = flood(s, PING, FLOOD_MB << 20)
    settled(s)
    after = hub.rss_kib()
    grew = after - before
    print("hub RSS %d -> %d KiB, %d bytes of pings taken"
          % (before, after, sent))
    # The bridge on another connection is served while the flooder's is
    # full.
    still_serving(hub, node)
    s.close()
    assert grew < GROWTH_KIB, (
        "the hub grew by %d KiB on %d bytes of pings it was never read "
        "the pongs of" % (grew, sent))
    # It stopped reading: most of the flood never left this side.
    assert sent < FLOOD_MB << 20


class HostileHub:
    """Speaks the hub's side of the upgrade (101 with the right accept),
    then floods pings at the node and never reads a byte."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.conns = []
        self.ready = threading.Event()
        self.go = threading.Event()
        self.sent = 0
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            c, _ = self.ls.accept()
        except OSError:
            return
        self.conns.append(c)
        c.settimeout(scaled(30))
        head = b""
        while b"\r\n\r\n" not in head:
            b = c.recv(4096)
            if not b:
                return
            head += b
        head = head.decode("latin-1")
        key = ""
        for line in head.split("\r\n"):
            if line.lower().startswith("sec-websocket-key:"):
                key = line.split(":", 1)[1].strip()
        acc = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
            .digest()).decode()
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                   "\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s"
                   "\r\n\r\n" % acc).encode())
        self.ready.set()
        self.go.wait(scaled(30))
        self.sent = flood(c, SERVER_PING, FLOOD_MB << 20)
        self.done = True

    def stop(self):
        self.ls.close()
        for c in self.conns:
            c.close()


def test_ping_flood_unread_node_memory_bounded(env):
    hh = HostileHub()
    env.others.append(hh)
    node = env.node(hh, "http://127.0.0.1:9", wait=False, env=LEAN)
    assert hh.ready.wait(scaled(30)), "the node never dialled"
    # The node has its control connection up: what it holds from here on
    # is the flood's doing.
    before = node.rss_kib()
    hh.go.set()
    hh.t.join(scaled(120))
    assert not hh.t.is_alive(), "the flood did not end"
    settled(hh.conns[0])
    after = node.rss_kib()
    grew = after - before
    print("node RSS %d -> %d KiB, %d bytes of pings taken"
          % (before, after, hh.sent))
    assert node.alive()
    assert grew < GROWTH_KIB, (
        "the node grew by %d KiB on %d bytes of pings from a hub that "
        "never read the pongs" % (grew, hh.sent))
    assert hh.sent < FLOOD_MB << 20


def frame(opcode, fin, payload):
    """A masked (zero key) client frame."""
    n = len(payload)
    assert n < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | n]) + b"\0" * 4 \
        + payload


def close_code(sock, timeout=20):
    """Reads until the hub's close frame; returns its status code, or None
    if the connection ended (or went silent) without one."""
    sock.settimeout(scaled(timeout))
    buf = b""
    while True:
        got = ws_frame_split(buf)
        while got is not None:
            op, body, buf = got
            if op == 0x8:
                return (struct.unpack("!H", body[:2])[0] if len(body) >= 2
                        else 1005)
            got = ws_frame_split(buf)
        try:
            b = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            return None
        if not b:
            return None
        buf += b


@pytest.mark.parametrize("size", [0, 1], ids=["empty", "one-byte"])
def test_fragment_flood_refused_1009(env, size):
    """A text message that never ends: a first fragment, then 4096
    continuations. A control connection takes messages of 64 KiB, and
    every fragment after the first costs 64 bytes besides its payload, so
    the hub refuses it with 1009 after about 1024. wslay alone would take
    empty ones for ever and one-byte ones up to 65536, one allocation
    each."""
    hub, node = site(env)
    creds = hub.create()
    s = control(hub, creds)
    before = hub.rss_kib()
    cont = frame(0x0, False, b"x" * size)
    msg = frame(0x1, False, b"{" if size else b"") + cont * 4096

    def send():
        try:
            s.sendall(msg)
        except OSError:
            pass
    t = threading.Thread(target=send, daemon=True)
    t.start()
    code = close_code(s)
    t.join(scaled(10))
    after = hub.rss_kib()
    s.close()
    print("hub RSS %d -> %d KiB, close code %r" % (before, after, code))
    assert code == 1009, "no 1009 after 4096 fragments: %r" % code
    assert after - before < GROWTH_KIB
    wait_for(lambda: "closed (input too large)" in hub.proc.stderr()
             or None, 10, what="the hub to log the refusal")
    still_serving(hub, node)
