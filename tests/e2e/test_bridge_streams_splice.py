"""TCP through bridges, zero-copy (issue 10): a plain TCP pair nothing
reads is relayed with splice(2) at the hub (the public stream port's user
<-> its raw data connection) and at the bridge (the data connection <->
the tcp:// upstream). Each test runs with splice on and with it off
(SLUICE_NO_SPLICE=1): bulk both ways by SHA-256, half-close each way, an
upstream that resets mid-transfer, many small writes, and the debug line
that says which path a relay took.
"""

import hashlib
import os
import socket
import struct
import threading
import time

import pytest

from helpers import handler_echo, recv_all, wait_for
from streams_support import (StreamBridge, free_range, node_log, range_arg,
                             tcp_connect, wait_bridge_line, wait_log)

MODES = ("splice", "copy")


def _tunnel(env, mode, upstream, debug=False):
    """A hub with a stream port and a bridge to upstream, both with splice
    on or off; debug: both log at debug level."""
    run_env = {"SLUICE_NO_SPLICE": "1"} if mode == "copy" else {
        "SLUICE_NO_SPLICE": ""}
    g = ["-L", "debug"] if debug else []
    hub = env.hub(stream_ports=range_arg(free_range(4)), env=run_env,
                  global_args=g)
    node = env.node(hub, "tcp://127.0.0.1:%d" % upstream.port, wait=False,
                    env=run_env, global_args=g)
    return hub, StreamBridge(node, wait_bridge_line(node))


@pytest.mark.parametrize("mode", MODES)
def test_relay_path_is_logged(env, tcp_upstream, mode):
    """Both relays say at debug level which path they took: spliced with
    the default, copying with SLUICE_NO_SPLICE=1."""
    up = tcp_upstream(handler_echo)
    hub, b = _tunnel(env, mode, up, debug=True)
    with tcp_connect(b.port, timeout=10) as c:
        c.sendall(b"hello")
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c, timeout=10) == (b"hello", "eof")
    word = "spliced (zero-copy)" if mode == "splice" else "copying"
    other = "copying" if mode == "splice" else "spliced (zero-copy)"
    hub_out = wait_log(hub, "relay with data")
    node_out = wait_log(b.node, "relay " + word)
    line = [ln for ln in hub_out.splitlines() if "relay with data" in ln]
    assert line and line[0].endswith(word), line
    assert "relay " + other not in node_out


@pytest.mark.parametrize("mode", MODES)
def test_bulk_both_ways_by_sha256(env, tcp_upstream, mode):
    """32 MiB up through an echo while reading it back: what comes back
    is what went, byte for byte; then 32 MiB down alone."""
    size = 32 << 20
    up = tcp_upstream(handler_echo)
    hub, b = _tunnel(env, mode, up)
    payload = os.urandom(size)
    with tcp_connect(b.port, timeout=10) as c:
        def send():
            view = memoryview(payload)
            for i in range(0, size, 1 << 20):
                c.sendall(view[i:i + (1 << 20)])
            c.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        data, how = recv_all(c, timeout=120, limit=size + 1)
        t.join(30)
    assert how == "eof", (how, len(data))
    assert hashlib.sha256(data).hexdigest() == \
        hashlib.sha256(payload).hexdigest(), len(data)

    down = os.urandom(size)

    def serve(conn, rec):
        conn.sendall(down)
        conn.shutdown(socket.SHUT_WR)
        rec["rest"] = conn.recv(16)
    up2 = tcp_upstream(serve)
    hub2, b2 = _tunnel(env, mode, up2)
    with tcp_connect(b2.port, timeout=10) as c:
        data, how = recv_all(c, timeout=120, limit=size + 1)
    assert (how, len(data)) == ("eof", size)
    assert hashlib.sha256(data).digest() == hashlib.sha256(down).digest()


@pytest.mark.parametrize("mode", MODES)
def test_half_close_user_first(env, tcp_upstream, mode):
    """The user shuts its write side; the upstream reads to EOF and still
    sends 1 MiB back, which the user gets whole before its EOF."""
    reply = os.urandom(1 << 20)

    def answer_after_eof(conn, rec):
        got = b""
        while True:
            x = conn.recv(65536)
            if not x:
                break
            got += x
        rec["got"] = got
        conn.sendall(reply)
        conn.shutdown(socket.SHUT_WR)

    up = tcp_upstream(answer_after_eof)
    hub, b = _tunnel(env, mode, up)
    sent = os.urandom(200000)
    with tcp_connect(b.port, timeout=10) as c:
        c.sendall(sent)
        c.shutdown(socket.SHUT_WR)
        data, how = recv_all(c, timeout=30)
    assert how == "eof" and data == reply, (how, len(data))
    rec = wait_for(lambda: up.accepted() and "got" in up.accepted()[0]
                   and up.accepted()[0], 10, what="upstream record")
    assert rec["got"] == sent


@pytest.mark.parametrize("mode", MODES)
def test_half_close_upstream_first(env, tcp_upstream, mode):
    """The upstream sends a banner and shuts its write side; the user
    reads the banner and EOF, then still sends, and the upstream gets
    every byte."""
    def banner_then_read(conn, rec):
        conn.sendall(b"banner\n")
        conn.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            x = conn.recv(65536)
            if not x:
                break
            got += x
        rec["got"] = got

    up = tcp_upstream(banner_then_read)
    hub, b = _tunnel(env, mode, up)
    late = os.urandom(500000)
    with tcp_connect(b.port, timeout=10) as c:
        assert recv_all(c, timeout=15) == (b"banner\n", "eof")
        c.sendall(late)
        c.shutdown(socket.SHUT_WR)
        rec = wait_for(lambda: up.accepted() and "got" in up.accepted()[0]
                       and up.accepted()[0], 20, what="upstream record")
    assert rec["got"] == late, len(rec["got"])


@pytest.mark.parametrize("mode", MODES)
def test_upstream_reset_mid_transfer(env, tcp_upstream, mode):
    """The upstream sends 4 MiB and resets its connection: the user sees
    its connection end (a reset, or EOF after what arrived), never a
    hang; the hub logs the user's end once and goes on serving."""
    def send_then_reset(conn, rec):
        conn.sendall(os.urandom(4 << 20))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
        conn.close()
        rec["reset"] = True

    up = tcp_upstream(send_then_reset)
    hub, b = _tunnel(env, mode, up, debug=True)
    with tcp_connect(b.port, timeout=10) as c:
        c.sendall(b"go")
        data, how = recv_all(c, timeout=30, limit=8 << 20)
    assert how in ("reset", "eof"), (how, len(data))
    assert len(data) <= 4 << 20
    wait_log(hub, "(user, %s)" % b.identity)
    time.sleep(0.5)
    lines = [ln for ln in node_log(hub).splitlines()
             if "(user, %s)" % b.identity in ln and "closing" in ln]
    assert len(lines) == 1, lines
    # The port still serves: the next connection gets its bytes.
    with tcp_connect(b.port, timeout=10) as c:
        c.sendall(b"x")
        data, how = recv_all(c, timeout=30, limit=8 << 20)
    assert how in ("reset", "eof") and len(data) > 0, (how, len(data))


@pytest.mark.parametrize("mode", MODES)
def test_many_small_writes(env, tcp_upstream, mode):
    """3000 small writes (1-200 bytes, no Nagle) through an echo, read
    back while they go: the same bytes in the same order."""
    up = tcp_upstream(handler_echo)
    hub, b = _tunnel(env, mode, up)
    rnd = os.urandom(3000 * 200)
    pieces = []
    off = 0
    for i in range(3000):
        n = 1 + rnd[i] % 200
        pieces.append(rnd[off:off + n])
        off += n
    sent = b"".join(pieces)
    with tcp_connect(b.port, timeout=10) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def send():
            for p in pieces:
                c.sendall(p)
            c.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        data, how = recv_all(c, timeout=60, limit=len(sent) + 1)
        t.join(30)
    assert (how, len(data)) == ("eof", len(sent))
    assert data == sent
