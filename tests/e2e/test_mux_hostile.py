"""Protocol v2 (issue 11): a hostile bridge on a multiplexed data
connection, and a bridge killed mid-transfer.

A bridge in Python (mux_support.MuxBridge) sends what no honest bridge
sends: data past its credit, a frame for a stream never opened, a frame
over 64 KiB, an id the hub opened itself. Each time that connection alone
ends, with a GOAWAY naming why and a line in the hub's log; the user on
it gets an answer (502) or a close, never a hang; another bridge of
another allocation, on the same hub, serves throughout.

Killed mid-transfer (SIGKILL, the kernel closes its sockets), a node's
streams all end on the hub: every user connection gets its end, nothing
stays paired, counted or open, and the bridge comes back when started
again.
"""

import asyncio
import hashlib
import os
import signal
import socket
import struct
import threading
import time

import pytest

from helpers import scaled, wait_for
from mux_support import (CREDIT, DATA, FIN, OPEN, AsyncHashUpstream,
                         MuxBridge, frame, hub_fds)
from tunnel_x_support import http_get


def other_bridge(env, hub):
    """A real node of another allocation, serving hashes."""
    up = AsyncHashUpstream()
    env.others.append(up)
    node = env.node(hub, up.url)
    wait_for(lambda: hub.proxy(node.identity).get("mux", 0) >= 1, 15,
             what="the other bridge's mux connection")
    return node


def other_serves(hub, node):
    body = os.urandom(50000)
    st, _, got = http_get(hub.port, hub.host(node.identity), "/o",
                          method="POST", body=body, timeout=20)
    assert st == 200, (st, got)
    assert hashlib.sha256(body).hexdigest().encode() in got


CASES = {
    # name: (what the bridge sends once the hub opened stream 1,
    #        the GOAWAY code, the words of the hub's log)
    # A response the user does not read: the hub stops reading the stream
    # once its user's queue is full, so the bridge, sending on regardless
    # of credit, passes it.
    "past_credit": (lambda: frame(DATA, 1, b"HTTP/1.1 200 OK\r\n"
                                           b"Content-Length: 1000000000\r\n"
                                           b"\r\n") +
                    b"".join(frame(DATA, 1, b"x" * 16384)
                             for _ in range(2048)),
                    2, "data past a stream's credit"),
    "unknown_stream": (lambda: frame(DATA, 99, b"abc"),
                       4, "DATA for a stream never opened"),
    "oversized_frame": (lambda: struct.pack(">BBHII", 2, DATA, 0, 1,
                                            70000) + b"y" * 70000,
                        3, "a frame over 64 KiB"),
    "stream_id_of_the_hub": (lambda: frame(OPEN, 3, b"\x01\x00"),
                             1, "OPEN of a stream id of ours"),
    "fin_twice": (lambda: frame(FIN, 1) + frame(FIN, 1),
                  1, "FIN twice on a stream"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_bridge_is_cut_off_alone(env, case):
    send, code, words = CASES[case]
    hub = env.hub(args=["--mux", "1"])
    node = other_bridge(env, hub)
    alloc = hub.create()
    ident = alloc["identity"]
    result = {}

    async def main():
        b = MuxBridge(hub.port, alloc["username"], alloc["password"])
        await b.connect()
        assert b.welcome.get("mux") == 1, b.welcome
        head = await b.open_mux()
        assert head.startswith(b"HTTP/1.1 101")
        assert b"sluice-framing: mux" in head.lower()
        await asyncio.get_running_loop().run_in_executor(
            None, wait_for, lambda: hub.proxy(ident)["mux"] == 1, 10)

        # A user asks: the hub opens stream 1 with the request in it.
        cut = threading.Event()

        def user():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(scaled(20))
            s.connect(("127.0.0.1", hub.port))
            try:
                s.sendall(b"GET /h HTTP/1.1\r\nHost: %s\r\n\r\n"
                          % hub.host(ident).encode())
                cut.wait(scaled(20))  # reads only once it is over
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                result["user"] = data
            except OSError as e:
                result["user"] = repr(e).encode()
            finally:
                s.close()
        t = threading.Thread(target=user, daemon=True)
        t.start()
        stream, first = await b.wait_open()
        assert stream == 1 and first.startswith(b"GET /h HTTP/1.1\r\n")
        b.send(send())
        try:
            await b.w.drain()
        except (ConnectionError, OSError):
            pass
        await b.until_eof(timeout=15)
        cut.set()
        result["goaway"] = b.goaway
        await b.close()
        await asyncio.get_running_loop().run_in_executor(None, t.join,
                                                         scaled(20))
    asyncio.run(asyncio.wait_for(main(), scaled(60)))
    assert result["goaway"] is not None and result["goaway"][0] == code, \
        result
    err = hub.proc.stderr()
    assert words in err, err[-3000:]
    # The user was answered (502, or the response that had begun, cut
    # short), not left hanging.
    assert result["user"].startswith(b"HTTP/1.1 502") or \
        result["user"] == b"" or (case == "past_credit" and
                                  result["user"].startswith(b"HTTP/1.1 200")
                                  and len(result["user"]) < 1000000000), \
        result["user"][:200]
    # That connection alone went; the other bridge serves on, and the
    # hostile allocation keeps nothing paired.
    other_serves(hub, node)
    wait_for(lambda: hub.proxy(ident)["mux"] == 0 and
             hub.proxy(ident)["pairs"] == 0, 10, what="nothing left")
    assert hub.proxy(node.identity)["mux"] >= 1


def test_credit_is_cumulative_and_a_repeat_is_harmless(env):
    """A bridge that grants the same credit twice, or less than before,
    changes nothing; the stream's bytes arrive whole."""
    hub = env.hub(args=["--mux", "1"])
    alloc = hub.create()
    ident = alloc["identity"]
    body = os.urandom(600 * 1024)  # more than the first window
    got = {}

    async def main():
        b = MuxBridge(hub.port, alloc["username"], alloc["password"])
        await b.connect()
        await b.open_mux()
        await asyncio.get_running_loop().run_in_executor(
            None, wait_for, lambda: hub.proxy(ident)["mux"] == 1, 10)

        def user():
            s = socket.create_connection(("127.0.0.1", hub.port),
                                         timeout=scaled(20))
            s.sendall(b"POST /c HTTP/1.1\r\nHost: %s\r\nContent-Length: %d"
                      b"\r\n\r\n" % (hub.host(ident).encode(), len(body)))
            s.sendall(body)
            got["user"] = s.recv(4096)
            s.close()
        t = threading.Thread(target=user, daemon=True)
        t.start()
        stream, first = await b.wait_open()
        data = first
        head_end = None
        while head_end is None or len(data) - head_end < len(body):
            if head_end is None and b"\r\n\r\n" in data:
                head_end = data.index(b"\r\n\r\n") + 4
            f = await b.next_frame(timeout=15)
            assert f is not None
            if f[0] == DATA and f[1] == stream:
                data += f[2]
                # Grant as we go: twice the same, then a smaller one.
                off = len(data) + 256 * 1024
                for o in (off, off, off - 1000):
                    b.send(frame(CREDIT, stream, struct.pack(">Q", o)))
        assert data[head_end:] == body
        b.send(frame(DATA, stream, b"HTTP/1.1 200 OK\r\nContent-Length: 2"
                                   b"\r\n\r\nok"))
        await asyncio.get_running_loop().run_in_executor(None, t.join,
                                                         scaled(20))
        await b.close()
    asyncio.run(asyncio.wait_for(main(), scaled(60)))
    assert got["user"].startswith(b"HTTP/1.1 200"), got


def test_bridge_killed_mid_transfer_leaves_nothing(env):
    up = AsyncHashUpstream()
    env.others.append(up)
    web = env.nginx()
    from tunnel_x_support import big_file
    big_file(os.path.join(web.root, "big.bin"), 64)
    hub = env.hub(args=["--mux", "2"])
    node = env.node(hub, web.url)
    ident = node.identity
    wait_for(lambda: hub.proxy(ident)["mux"] == 2, 15, what="2 mux conns")
    base_fds = hub_fds(hub.pid)
    host = hub.host(ident)
    n = 30
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", hub.port),
                                     timeout=scaled(30))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: %s\r\n\r\n"
                  % host.encode())
        socks.append(s)
    # Every user has some of its download: the transfers run.
    for s in socks:
        assert s.recv(65536)
    wait_for(lambda: hub.proxy(ident)["pairs"] == n, 10, what="all paired")
    os.kill(node.pid, signal.SIGKILL)
    node.proc.wait(10)
    env.nodes.remove(node)  # killed on purpose: no exit code to judge

    # Every user connection ends (EOF or reset) soon after.
    deadline = time.monotonic() + scaled(20)
    for s in socks:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            while s.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
        finally:
            s.close()
    # Nothing stays on the hub: no pair, no mux connection, no data
    # connection, the descriptors of before.
    wait_for(lambda: hub.proxy(ident)["pairs"] == 0 and
             hub.proxy(ident)["mux"] == 0, 15, what="pairs and mux gone")
    m = hub.metrics()
    data = [v for k, v in m.items() if "data_conn" in k]
    assert all(v == 0 for v in data), {k: v for k, v in m.items()
                                       if "conn" in k}
    wait_for(lambda: hub_fds(hub.pid) <= base_fds - 3, 15,
             what="the hub's descriptors back (base %d, now %d)"
             % (base_fds, hub_fds(hub.pid)))
