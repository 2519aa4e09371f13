"""The hub's wait for a bridge's `hello`. A control connection that upgrades
and then says nothing, or says something that is not a hello, used to be
held for as long as the peer kept it alive (pings answered, nothing
else): a raw client could pin an allocation's control slot, and a real
bridge whose hello the hub failed to read (jansson reports an allocation
failure inside json_loadb as a syntax error) waited for a welcome without
end. Now the hello has the head timeout as its deadline, and a hello that
cannot be read ends the connection with an `error` message: the bridge
reconnects with back-off."""

import asyncio
import json
import socket
import struct
import time

import pytest

from helpers import scaled, wait_for
from tunnel_x_support import (PyBridge, read_head, upgrade_request,
                              ws_frame_split)

DEADLINE_MS = 1500


def upgraded_control(hub):
    """A control upgrade without credentials (a new allocation); returns
    the socket after the 101 and the bytes that followed it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(10))
    s.connect(("127.0.0.1", hub.port))
    s.sendall(upgrade_request("/_sluice/v1/control",
                              "127.0.0.1:%d" % hub.port))
    st, head, rest = read_head(s)
    assert st == 101, head
    return s, rest


def text_frame(payload):
    """A masked text frame (zero key: the payload stays readable)."""
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def read_until_closed(sock, buf, timeout):
    """Reads the hub's frames until it closes the TCP connection. Returns
    (text messages, close code or None, seconds waited). Pings are
    answered, as a live bridge would, so only a deadline can end it."""
    sock.settimeout(0.2)
    texts, code = [], None
    start = time.monotonic()
    end = start + timeout
    while time.monotonic() < end:
        got = ws_frame_split(buf)
        while got is not None:
            op, payload, buf = got
            got = ws_frame_split(buf)
            if op == 1:
                texts.append(json.loads(payload))
            elif op == 8 and len(payload) >= 2:
                code = struct.unpack(">H", payload[:2])[0]
            elif op == 9:
                pong = bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0"
                sock.sendall(pong + payload)
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            b = b""
        if not b:
            return texts, code, time.monotonic() - start
        buf += b
    raise AssertionError("the hub kept the control connection open for "
                         "%.1fs; messages: %r" % (timeout, texts))


def log_count(hub, words):
    return hub.proc.stdout().count(words) + hub.proc.stderr().count(words)


def test_control_without_hello_closed_after_deadline(env):
    hub = env.hub(args=["--head-timeout-ms", str(DEADLINE_MS),
                        "--ping-ms", "500"])
    s, rest = upgraded_control(hub)
    try:
        texts, code, waited = read_until_closed(
            s, rest, scaled(DEADLINE_MS / 1000 + 8))
    finally:
        s.close()
    # Not before the deadline, and not long after it.
    assert waited >= DEADLINE_MS / 1000 - 0.3, waited
    errors = [t for t in texts if t.get("type") == "error"]
    assert errors and errors[0]["code"] == 408, texts
    assert errors[0]["message"] == "No hello in time", texts
    assert code == 1008, code
    wait_for(lambda: log_count(hub, "no hello within") == 1, scaled(5),
             what="one log line with the reason")


@pytest.mark.parametrize("first", [
    b"\x00garbage\xff{",
    b"[1,2,3]",
    b'{"type":"hello","version":"one"}',
    b'{"type":"hello","version":1,"pool":99}',
], ids=["binary-junk", "not-an-object", "bad-version", "pool-too-large"])
def test_bad_hello_ends_control_connection(env, first):
    # A long deadline: only the bad hello may end the connection.
    hub = env.hub(args=["--head-timeout-ms", "60000"])
    s, rest = upgraded_control(hub)
    try:
        s.sendall(text_frame(first))
        texts, code, _ = read_until_closed(s, rest, scaled(10))
    finally:
        s.close()
    if first.startswith(b"\x00"):
        # Not UTF-8: wslay refuses the frame (1007) before any parse.
        assert code == 1007 and not texts, (code, texts)
        return
    errors = [t for t in texts if t.get("type") == "error"]
    assert errors and errors[0]["code"] == 400, texts
    assert errors[0]["message"] == "Bad hello", texts
    assert code == 1002, code
    wait_for(lambda: log_count(hub, "bad hello") == 1, scaled(5),
             what="one log line with the reason")


def test_other_bridges_unaffected(env):
    """While a silent control connection waits out its deadline and another
    sends garbage, a bridge that says hello is welcomed at once and stays
    connected past the deadline."""
    hub = env.hub(args=["--head-timeout-ms", str(DEADLINE_MS)])
    silent, srest = upgraded_control(hub)
    junk, jrest = upgraded_control(hub)
    junk.sendall(text_frame(b"hello?"))

    async def bridge():
        b = PyBridge(hub.port)
        welcome = await asyncio.wait_for(b.connect(), scaled(10))
        assert welcome["identity"]
        await asyncio.sleep(DEADLINE_MS / 1000 * 2)
        # Still open: a ping is answered.
        pong = await b.ws.ping()
        await asyncio.wait_for(pong, scaled(5))
        await b.close()

    try:
        asyncio.run(bridge())
        _, code, _ = read_until_closed(junk, jrest, scaled(10))
        assert code == 1002
        _, code, _ = read_until_closed(silent, srest, scaled(10))
        assert code == 1008
    finally:
        silent.close()
        junk.close()
