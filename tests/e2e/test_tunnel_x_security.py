"""Hostile input on the hub's public port: malformed or forged data
connections, credentials of another allocation, password guessing (401,
then rate limited per source address), an oversized request head and a
slowloris head. Each is refused on its own connection while a real bridge
keeps serving (checked with curl after each)."""

import asyncio
import select
import socket
import threading
import time

import pytest

from helpers import scaled
from tunnel_x_support import (PyBridge, TunnelEnv, basic, control_attempt,
                              curl_via, data_conn, http_get, new_fingerprint,
                              upgrade_request)

HEAD_TIMEOUT = 10  # the hub's default for a request head (s)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A hub with one real bridge ("legit") and two allocations made
    through the API and never used by a bridge (x, y)."""
    env = TunnelEnv(tmp_path_factory.mktemp("security"))
    try:
        hub = env.hub()
        up = env.hash_upstream("legit")
        node = env.node(hub, up.url)
        x = hub.create()
        y = hub.create()
    except BaseException:
        env.close()
        raise
    yield {"env": env, "hub": hub, "node": node, "legit": node.identity,
           "x": x, "y": y}
    problems = env.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def still_serving(site):
    cp = curl_via(site["hub"], site["legit"], "/check", "--fail")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "legit /check"
    assert site["node"].alive() and site["hub"].alive()


# What the hub says with each refusal (docs/protocol.md, src/hub).
REFUSALS = {
    400: b"Malformed Sluice-Hijack header",
    403: b"Forbidden",
    409: b"Conflict",
    429: b'{"error":"Too many failed attempts","code":429}',
}


def refused(sock, want, timeout=10, what="", words=None):
    """The hub answers `want` with its words for that refusal (the whole
    body), then closes the connection. No answer, another answer, or a
    connection left open (a timeout) fails."""
    words = REFUSALS[want] if words is None else words
    sock.settimeout(scaled(timeout))
    data = b""
    try:
        while True:
            try:
                b = sock.recv(65536)
            except ConnectionResetError:
                break                  # after the answer: checked below
            except socket.timeout:
                raise AssertionError("%s: no close within %.0fs after %r"
                                     % (what, scaled(timeout), data[:300]))
            if not b:
                break
            data += b
            assert len(data) < 1 << 16, (what, data[:300])
    finally:
        sock.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "%s: closed without an answer: %r" % (what, data[:300])
    status = head.split(b" ", 2)
    assert status[0] == b"HTTP/1.1" and status[1] == b"%d" % want, (
        what, data[:300])
    assert body == words, (what, data[:300])


def test_malformed_hijack_refused(site):
    hub, x = site["hub"], site["x"]
    ident = x["identity"]
    fp = new_fingerprint()
    bad = ["", "|", ident, ident + "|", "|" + fp, ident.upper() + "|" + fp,
           ident[:11] + "|" + fp, ident + "x|" + fp, ident + "|" + fp.upper(),
           ident + "|" + fp[:-1], ident + "|" + fp + "|" + fp,
           ident + "|" + fp[:14] + "1" + fp[15:],  # version 1, not 4
           ident + "|" + fp[:19] + "c" + fp[20:],  # variant not 8, 9, a, b
           ident + " |" + fp, ident + "|\t" + fp, "a" * 8000]
    for value in bad:
        s = data_conn(hub, x["username"], x["password"], value)
        refused(s, 400, what=repr(value[:80]))
    # and no Sluice-Hijack header at all
    s = socket.create_connection(("127.0.0.1", hub.port), timeout=scaled(10))
    s.sendall(upgrade_request("/_sluice/v1/data", "127.0.0.1",
                              {"Authorization": basic(x["username"],
                                                      x["password"])}))
    refused(s, 400)
    still_serving(site)


def test_malformed_bridge_id_refused(site):
    """Sluice-Bridge, when sent, must be a UUID v4 on both endpoints."""
    hub, x = site["hub"], site["x"]
    auth = {"Authorization": basic(x["username"], x["password"])}
    for value in ("", "nope", new_fingerprint().upper(),
                  new_fingerprint() + "0"):
        s = socket.create_connection(("127.0.0.1", hub.port),
                                     timeout=scaled(10))
        s.sendall(upgrade_request("/_sluice/v1/control", "127.0.0.1",
                                  dict(auth, **{"Sluice-Bridge": value})))
        refused(s, 400, what="control " + repr(value),
                words=b"Malformed Sluice-Bridge header")
        s = socket.create_connection(("127.0.0.1", hub.port),
                                     timeout=scaled(10))
        s.sendall(upgrade_request("/_sluice/v1/data", "127.0.0.1",
                                  dict(auth, **{
                                      "Sluice-Hijack": "%s|%s" % (
                                          x["identity"], new_fingerprint()),
                                      "Sluice-Bridge": value})))
        refused(s, 400, what="data " + repr(value),
                words=b"Malformed Sluice-Bridge header")
    still_serving(site)


def test_identity_not_belonging_to_credentials(site):
    hub, x, y = site["hub"], site["x"], site["y"]
    for ident in (site["legit"], y["identity"]):
        s = data_conn(hub, x["username"], x["password"],
                      "%s|%s" % (ident, new_fingerprint()))
        refused(s, 403)
    # an identity nobody has: still not the caller's
    s = data_conn(hub, x["username"], x["password"],
                  "zz0000000000|%s" % new_fingerprint())
    refused(s, 403)
    still_serving(site)


def test_forged_fingerprint_reused(site):
    """A fingerprint the hub handed out and that was used once cannot be
    used again, by the same credentials or another allocation's."""
    pytest.importorskip("websockets")
    hub, x, y = site["hub"], site["x"], site["y"]
    result = {}

    async def run():
        br = PyBridge(hub.port, x["username"], x["password"], body=b"py")
        await br.connect()
        assert br.identity == x["identity"]
        serving = asyncio.ensure_future(br.serve())

        def user():
            result["first"] = http_get(hub.port, hub.host(br.identity), "/")
        t = threading.Thread(target=user)
        t.start()
        await asyncio.get_running_loop().run_in_executor(
            None, t.join, scaled(20))
        result["fingerprints"] = list(br.fingerprints)
        result["errors"] = list(br.errors)
        await br.close()
        serving.cancel()
    asyncio.run(asyncio.wait_for(run(), scaled(60)))
    st, _, body = result["first"]
    assert (st, body) == (200, b"py"), result
    assert result["fingerprints"], "the hub sent no open"
    fp = result["fingerprints"][0]
    # the same fingerprint again: already used
    s = data_conn(hub, x["username"], x["password"],
                  "%s|%s" % (x["identity"], fp))
    refused(s, 409)
    # the same fingerprint with another allocation's credentials
    s = data_conn(hub, y["username"], y["password"],
                  "%s|%s" % (x["identity"], fp))
    refused(s, 403)
    still_serving(site)


def test_wrong_password_401_then_rate_limited(site):
    hub, x, y = site["hub"], site["x"], site["y"]
    src = "127.0.0.2"  # failures count per username and source address
    statuses = []
    for _ in range(12):
        st = control_attempt(hub, x["username"], "wrong" + x["password"][5:],
                             source=src)
        statuses.append(st)
        if st == 429:
            break
    assert statuses[0] == 401, statuses
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401}, statuses
    assert len(statuses) <= 7, statuses
    # limited means limited: the right password from there is not checked
    assert control_attempt(hub, x["username"], x["password"],
                           source=src) == 429
    # data connections with a wrong password from there: refused too
    s = data_conn(hub, x["username"], "nope", "%s|%s" % (
        x["identity"], new_fingerprint()), source=src)
    refused(s, 429)
    # another bridge behind the same address (one NAT, many bridges) is
    # not locked out by that username's failures
    assert control_attempt(hub, y["username"], y["password"],
                           source=src) == 101
    # guessing across usernames: ten times the limit per address, then
    # every username from there waits
    spray = "127.0.0.5"
    seen = []
    for i in range(60):
        st = control_attempt(hub, "nobod%d" % (i % 12), "x" * 24,
                             source=spray)
        seen.append(st)
        if st == 429 and i >= 50:
            break
    assert seen.count(401) == 50, seen
    assert control_attempt(hub, y["username"], y["password"],
                           source=spray) == 429
    # more usernames than the hub has slots, spread over six addresses
    # under the limit each: the per-address counts are not pushed out
    for a in range(6):
        for i in range(45):
            assert control_attempt(hub, "u%d_%d" % (a, i), "x" * 24,
                                   source="127.0.1.%d" % a) == 401
    for i in range(5):
        control_attempt(hub, "u0_more%d" % i, "x" * 24, source="127.0.1.0")
    assert control_attempt(hub, "u0_last", "x" * 24,
                           source="127.0.1.0") == 429
    # an unknown user from a fresh address: 401, not 404
    assert control_attempt(hub, "nobody", "x" * 24,
                           source="127.0.0.3") == 401
    # another address is not affected
    assert control_attempt(hub, x["username"], x["password"],
                           source="127.0.0.4") == 101
    still_serving(site)


def answer_status(sock, timeout=10):
    """Reads what the hub sends until it closes (EOF or reset) and returns
    (status, everything read). No answer before the close, or no close
    within timeout (scaled), fails."""
    sock.settimeout(scaled(timeout))
    data = b""
    while True:
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            break
        except socket.timeout:
            raise AssertionError("no close within %.0fs after %r"
                                 % (scaled(timeout), data[:300]))
        if not b:
            break
        data += b
    assert b"\r\n\r\n" in data, "closed without an answer: %r" % data[:300]
    return int(data.split(b" ", 2)[1]), data


def test_oversized_head_cut_off(site):
    """A head over the 64 KiB cap: 431 as soon as the cap is passed (long
    before the head timeout), on user and bridge Hosts alike."""
    hub = site["hub"]
    for host in (hub.host(site["legit"]), "127.0.0.1:%d" % hub.port):
        s = socket.create_connection(("127.0.0.1", hub.port),
                                     timeout=scaled(10))
        t0 = time.monotonic()
        try:
            s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n" % host).encode())
            filler = b"X-Fill: " + b"a" * 1000 + b"\r\n"
            sent = 0
            try:
                while sent < 80 * 1024:  # over the 64 KiB head cap
                    s.sendall(filler)
                    sent += len(filler)
            except (BrokenPipeError, ConnectionResetError):
                pass
            st, data = answer_status(s)
        finally:
            s.close()
        took = time.monotonic() - t0
        assert st == 431, data[:300]
        assert data.endswith(b"\r\n\r\nRequest Header Fields Too Large"), \
            data[:300]
        assert took < min(HEAD_TIMEOUT / 2, scaled(5)), took
    still_serving(site)


def test_slowloris_head_cut_off(site):
    """One byte a second: the hub answers 408 when its head timeout (10 s
    by default, docs/hub.md) has passed since the connection came, not
    sooner although bytes keep coming, and not much later; meanwhile it
    serves others."""
    hub = site["hub"]
    s = socket.create_connection(("127.0.0.1", hub.port), timeout=scaled(10))
    t0 = time.monotonic()  # the hub accepts, and arms its timer, after this
    answered = None
    try:
        head = ("GET / HTTP/1.1\r\nHost: %s\r\nX-Slow: " %
                hub.host(site["legit"])).encode()
        s.sendall(head[:1])
        # One byte a second is the attack itself; the wait in between is
        # a select on the socket, so the answer is timed when it comes.
        # Bounded to well past the head timeout.
        for i in range(int(HEAD_TIMEOUT + scaled(5))):
            r, _, _ = select.select([s], [], [], 1)
            if r:
                answered = time.monotonic() - t0
                break
            if i == 3:
                # the hub serves others while this head trickles in
                still_serving(site)
            try:
                s.send(head[1 + i:2 + i] or b"a")
            except (BrokenPipeError, ConnectionResetError):
                answered = time.monotonic() - t0
                break
        assert answered is not None, "slow head never cut off"
        assert HEAD_TIMEOUT - 0.05 <= answered, answered
        assert answered < HEAD_TIMEOUT + scaled(3), answered
        st, data = answer_status(s, timeout=5)
        assert st == 408, data[:300]
        assert data.endswith(b"\r\n\r\nRequest Timeout"), data[:300]
    finally:
        s.close()
    still_serving(site)
