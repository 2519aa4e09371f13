"""Peers for the multiplexed data connections' tests (test_mux_*.py,
protocol v2): the frames in Python, a bridge that speaks them (so a test
can make it misbehave), and an asyncio upstream that hashes request
bodies for a thousand users at once, one of whose paths can stop reading.
"""

import asyncio
import hashlib
import json
import os
import struct
import threading

from helpers import scaled
from tunnel_x_support import basic, upgrade_request

HEADER = struct.Struct(">BBHII")
OPEN, DATA, FIN, RST, CREDIT, PING, PONG, GOAWAY, DGRAM = range(1, 10)
GOAWAY_CODES = {1: "protocol", 2: "flow", 3: "too big", 4: "unknown",
                5: "reused", 6: "internal", 7: "timeout"}


def frame(ftype, stream, payload=b"", flags=0, version=2):
    return HEADER.pack(version, ftype, flags, stream, len(payload)) + payload


def parse_frames(buf):
    """([(type, stream, payload)], rest) of the whole frames in buf."""
    out = []
    while len(buf) >= HEADER.size:
        _, t, _, s, n = HEADER.unpack_from(buf)
        if len(buf) < HEADER.size + n:
            break
        out.append((t, s, buf[HEADER.size:HEADER.size + n]))
        buf = buf[HEADER.size + n:]
    return out, buf


class MuxBridge:
    """A bridge on asyncio: control connection (websockets) offering mux,
    then one multiplexed data connection it drives frame by frame. By
    default it answers each stream's request head with 200 and `body`;
    tests call its methods to send what no honest bridge sends."""

    def __init__(self, hub_port, username, password, body=b"ok"):
        self.hub_port = hub_port
        self.username = username
        self.password = password
        self.body = body
        self.welcome = None
        self.identity = None
        self.ws = None
        self.r = self.w = None
        self.buf = b""
        self.pending = []  # parsed, not yet taken
        self.frames = []   # every frame the hub sent, in order
        self.goaway = None  # (code, reason) once the hub went away
        self.eof = False

    async def connect(self):
        import websockets
        self.ws = await websockets.connect(
            "ws://127.0.0.1:%d/_sluice/v1/control" % self.hub_port,
            extra_headers={"Authorization": basic(self.username,
                                                  self.password)},
            max_size=1 << 16, ping_interval=None, open_timeout=scaled(30),
            close_timeout=1)
        await self.ws.send(json.dumps({"type": "hello", "version": 1,
                                       "capabilities": ["http", "mux"],
                                       "pool": 0}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("type") == "welcome":
                break
        self.welcome = msg
        self.identity = msg["identity"]
        return msg

    async def open_mux(self):
        """Dials the mux data connection; returns the 101's head."""
        self.r, self.w = await asyncio.open_connection("127.0.0.1",
                                                       self.hub_port)
        self.w.write(upgrade_request(
            "/_sluice/v1/data", "127.0.0.1:%d" % self.hub_port,
            {"Authorization": basic(self.username, self.password),
             "Sluice-Hijack": "%s|%s" % (self.identity,
                                         "00000000-0000-4000-8000-%012x"
                                         % int.from_bytes(os.urandom(6),
                                                          "big")),
             "Sluice-Framing": "mux"}))
        head = await self.r.readuntil(b"\r\n\r\n")
        return head

    async def next_frame(self, timeout=10):
        """The next frame from the hub, or None at EOF."""
        while not self.pending:
            data = await asyncio.wait_for(self.r.read(1 << 20),
                                          scaled(timeout))
            if not data:
                self.eof = True
                return None
            got, self.buf = parse_frames(self.buf + data)
            self.pending.extend(got)
        f = self.pending.pop(0)
        self.frames.append(f)
        if f[0] == GOAWAY:
            code = struct.unpack(">II", f[2][:8])[1]
            self.goaway = (code, f[2][8:].decode("latin-1"))
        if f[0] == PING:
            self.send(frame(PONG, 0, f[2]))
        return f

    async def wait_open(self, timeout=10):
        """(stream, first bytes) of the next stream the hub opens."""
        while True:
            f = await self.next_frame(timeout)
            if f is None:
                raise AssertionError("the mux connection ended before OPEN")
            if f[0] == OPEN:
                tl = f[2][1]
                return f[1], f[2][2 + tl:]

    async def until_eof(self, timeout=10):
        """Reads frames until the hub closes; returns them."""
        seen = []
        while True:
            try:
                f = await self.next_frame(timeout)
            except (ConnectionError, OSError):
                self.eof = True
                return seen
            if f is None:
                return seen
            seen.append(f)

    def send(self, data):
        self.w.write(data)

    async def close(self):
        if self.w is not None:
            self.w.close()
        if self.ws is not None:
            await self.ws.close()


class AsyncHashUpstream:
    """An HTTP/1.1 upstream on its own asyncio loop (thread): each request
    body (Content-Length) is answered with its SHA-256 and length as JSON,
    so a thousand users at once cost one thread. A request for a path that
    starts with /stall waits `stall` seconds before it reads its body (its
    stream's window fills, the others must go on); `stalled` is set when
    one starts waiting, `unstalled` when it reads again."""

    def __init__(self, stall=10.0):
        self.stall = stall
        self.requests = 0
        self.stalled = threading.Event()
        self.unstalled = threading.Event()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,),
                                       daemon=True)
        self.thread.start()
        ready.wait(10)
        self.url = "http://127.0.0.1:%d" % self.port

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.server = await asyncio.start_server(
                self._serve, "127.0.0.1", 0, backlog=4096)
            self.port = self.server.sockets[0].getsockname()[1]
        self.loop.run_until_complete(start())
        ready.set()
        self.loop.run_forever()

    async def _serve(self, r, w):
        try:
            while True:
                try:
                    head = await r.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                text = head.decode("latin-1")
                path = text.split(" ", 2)[1]
                n = 0
                for line in text.split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        n = int(v)
                if path.startswith("/stall"):
                    self.stalled.set()
                    await asyncio.sleep(self.stall)
                    self.unstalled.set()
                h = hashlib.sha256()
                left = n
                while left:
                    b = await r.read(min(left, 1 << 20))
                    if not b:
                        return
                    h.update(b)
                    left -= len(b)
                self.requests += 1
                out = json.dumps({"sha256": h.hexdigest(), "length": n,
                                  "path": path}).encode()
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                        b"\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    def stop(self):
        def stop():
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(stop)
        self.thread.join(timeout=5)


async def post_hashed(port, host, path, body, timeout=60):
    """POSTs body to path through the hub on a connection of its own;
    returns the upstream's JSON answer."""
    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                  scaled(timeout))
    try:
        w.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % (path.encode(), host.encode(),
                                               len(body)))
        w.write(body)
        await asyncio.wait_for(w.drain(), scaled(timeout))
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"),
                                      scaled(timeout))
        status = int(head.split(b" ", 2)[1])
        n = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                n = int(v)
        data = await asyncio.wait_for(r.readexactly(n), scaled(timeout))
        if status != 200:
            return {"status": status, "body": data.decode("latin-1")}
        return json.loads(data)
    finally:
        w.close()


def hub_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))
