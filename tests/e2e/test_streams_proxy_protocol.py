"""PROXY protocol on stream routes: relaying v2 to a real HAProxy with
accept-proxy, accepting v1/v2 from clients, required/mixed modes, trusted
sources, and the ACL deciding on the address the header gives."""

import socket
import time

import pytest

from helpers import (PP2_SIG, closed_by_peer, connect, handler_echo,
                     handler_pp_echo, pp_v1, pp_v2, recv_exact, route,
                     scaled, wait_for)

FAKE_SRC = "203.0.113.7"
FAKE_PORT = 40000


def pp_route(up_port, mode="required", **extra):
    return route("tcp", up_port, proxy_protocol=mode,
                 relay_proxy_protocol_header=True, **extra)


def exchange(port, payload, header=b"", source=None, split=False):
    with connect(port, source=source) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if split and header:
            # the header arrives in two segments
            c.sendall(header[:7])
            time.sleep(0.05)
            c.sendall(header[7:] + payload)
        else:
            c.sendall(header + payload)
        return recv_exact(c, len(payload))


def test_relay_v2_to_haproxy_shows_client_address(sluice, haproxy,
                                                   tcp_upstream):
    backend = tcp_upstream(handler_echo)
    hap = haproxy(backend.port, accept_proxy=True)
    s = sluice({"routes": {"hap": route("tcp", hap.port,
                                        relay_proxy_protocol_header=True)}})
    with connect(s.port("hap"), source="127.0.0.5") as c:
        client_port = c.getsockname()[1]
        c.sendall(b"through haproxy")
        assert recv_exact(c, 15) == b"through haproxy"
    want = "127.0.0.5:%d" % client_port
    log = wait_for(lambda: want in hap.log() and hap.log(), 10,
                   what="HAProxy logging %s" % want)
    line = [ln for ln in log.splitlines() if want in ln][0]
    assert line.startswith(want), line
    # HAProxy's backend connection comes from HAProxy itself
    assert [r["peer"][0] for r in backend.accepted()] == ["127.0.0.1"]


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("split", [False, True], ids=["whole", "split"])
def test_accept_header_and_relay_v2(sluice, tcp_upstream, version, split):
    up = tcp_upstream(handler_pp_echo)
    s = sluice({"routes": {"pp": pp_route(up.port)}})
    port = s.port("pp")
    make = pp_v1 if version == "v1" else pp_v2
    header = make(FAKE_SRC, FAKE_PORT, "127.0.0.1", port)
    assert exchange(port, b"payload after header", header,
                    split=split) == b"payload after header"
    rec = wait_for(lambda: up.accepted() and up.accepted()[0].get("pp"), 5)
    assert rec["src"] == FAKE_SRC and rec["sport"] == FAKE_PORT, rec
    assert rec["command"] == 1 and rec["version"] == 2


def test_mixed_mode_without_header_relays_real_address(sluice, tcp_upstream):
    up = tcp_upstream(handler_pp_echo)
    s = sluice({"routes": {"pp": pp_route(up.port, mode="mixed")}})
    with connect(s.port("pp"), source="127.0.0.6") as c:
        client_port = c.getsockname()[1]
        c.sendall(b"plain hello")
        assert recv_exact(c, 11) == b"plain hello"
    rec = wait_for(lambda: up.accepted() and up.accepted()[0].get("pp"), 5)
    assert (rec["src"], rec["sport"]) == ("127.0.0.6", client_port), rec
    # and with a header, mixed mode believes it
    hdr = pp_v2(FAKE_SRC, FAKE_PORT, "127.0.0.1", s.port("pp"))
    assert exchange(s.port("pp"), b"x", hdr) == b"x"
    rec = wait_for(lambda: len(up.accepted()) == 2 and
                   up.accepted()[1].get("pp"), 5)
    assert rec["src"] == FAKE_SRC


def test_required_mode_closes_without_header(sluice, tcp_upstream):
    up = tcp_upstream(handler_pp_echo)
    s = sluice({"routes": {"pp": pp_route(
        up.port, proxy_protocol_timeout="1s")}})
    port = s.port("pp")
    for first in (b"GET / HTTP/1.0\r\n\r\n", b"PROXY TCP4 bogus\r\n",
                  b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"):
        with connect(port) as c:
            c.sendall(first)
            assert closed_by_peer(c, timeout=5), first
    # a client that says nothing is closed after proxy_protocol_timeout
    with connect(port) as c:
        t0 = time.monotonic()
        assert closed_by_peer(c, timeout=10)
        assert time.monotonic() - t0 >= 0.7
    up.sync()
    assert up.accepted() == [], "upstream was dialed without a header"


def test_acl_decides_on_header_address(sluice, tcp_upstream):
    up = tcp_upstream(handler_pp_echo)
    s = sluice({"routes": {
        "deny": pp_route(up.port, acl={"deny": ["cidr:203.0.113.0/24"]}),
        # the socket's own address (127.0.0.1) is not in this list
        "allow": pp_route(up.port, acl={"allow": ["cidr:198.51.100.0/24"]}),
    }})
    for name in ("deny", "allow"):
        port = s.port(name)
        with connect(port) as c:
            c.sendall(pp_v2(FAKE_SRC, FAKE_PORT, "127.0.0.1", port) + b"x")
            assert closed_by_peer(c, timeout=5), name
    up.sync()
    assert up.accepted() == []
    for name in ("deny", "allow"):
        port = s.port(name)
        hdr = pp_v1("198.51.100.9", 5555, "127.0.0.1", port)
        assert exchange(port, b"ok", hdr) == b"ok"
    up.sync()
    srcs = [r.get("pp", {}).get("src") for r in up.accepted()]
    assert srcs == ["198.51.100.9", "198.51.100.9"], srcs


def test_untrusted_source_header_not_believed(sluice, tcp_upstream):
    up = tcp_upstream(handler_pp_echo)
    s = sluice({"routes": {"pp": pp_route(
        up.port, mode="mixed", proxy_protocol_trusted=["127.0.0.7/32"])}})
    port = s.port("pp")
    # from a trusted source the header is believed
    hdr = pp_v2(FAKE_SRC, FAKE_PORT, "127.0.0.1", port)
    assert exchange(port, b"t", hdr, source="127.0.0.7") == b"t"
    rec = wait_for(lambda: up.accepted() and up.accepted()[0].get("pp"), 5)
    assert rec["src"] == FAKE_SRC
    # from any other source it must not be: either the connection is
    # refused, or the upstream is told the real address
    with connect(port, source="127.0.0.8") as c:
        c.sendall(hdr + b"u")
        try:
            c.settimeout(scaled(5))
            got = c.recv(100)
        except OSError:
            got = b""
    up.sync()
    others = [r for r in up.accepted()[1:]]
    for r in others:
        wait_for(lambda: "pp" in r, 5)
        assert r["pp"] is None or r["pp"]["src"] == "127.0.0.8", r
    assert FAKE_SRC.encode() not in got


def test_local_and_unknown_headers_use_real_address(sluice, tcp_upstream):
    up = tcp_upstream(handler_pp_echo)
    s = sluice({"routes": {"pp": pp_route(up.port)}})
    port = s.port("pp")
    # v2 LOCAL (health checks of a load balancer) and v1 UNKNOWN carry no
    # address: the connection's own is used
    local = PP2_SIG + bytes([0x20, 0x00]) + b"\x00\x00"
    for hdr in (local, b"PROXY UNKNOWN\r\n"):
        with connect(port, source="127.0.0.10") as c:
            cport = c.getsockname()[1]
            c.sendall(hdr + b"hc")
            assert recv_exact(c, 2) == b"hc"
        rec = wait_for(lambda: up.accepted() and up.accepted()[-1].get("pp"),
                       5)
        assert (rec["src"], rec["sport"]) == ("127.0.0.10", cport), rec
        up.records.clear()


def test_ipv6_source_in_header_relayed(sluice, tcp_upstream):
    up = tcp_upstream(handler_pp_echo)
    s = sluice({"routes": {"pp": pp_route(up.port)}})
    port = s.port("pp")
    hdr = pp_v2("2001:db8::7", 4242, "2001:db8::1", 443)
    assert exchange(port, b"v6", hdr) == b"v6"
    rec = wait_for(lambda: up.accepted() and up.accepted()[0].get("pp"), 5)
    assert rec["family"] == 2 and rec["src"] == "2001:db8::7", rec
    assert rec["sport"] == 4242
    # v1 with TCP6 as well
    assert exchange(port, b"v1", pp_v1("2001:db8::8", 4343, "2001:db8::1",
                                       443)) == b"v1"
    rec = wait_for(lambda: len(up.accepted()) == 2 and
                   up.accepted()[1].get("pp"), 5)
    assert rec["src"] == "2001:db8::8" and rec["sport"] == 4343, rec
