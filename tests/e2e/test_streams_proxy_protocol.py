"""PROXY protocol on stream routes: relaying v2 to a real HAProxy with
accept-proxy, accepting v1/v2 from clients, required/mixed modes, trusted
sources, and the ACL deciding on the address the header gives."""

import socket
import struct
import time

import pytest

from helpers import (PP2_SIG, connect, handler_echo, handler_pp_echo,
                     parse_pp_v2, pp_v1, pp_v2, recv_all, recv_exact, route,
                     scaled, wait_for)

FAKE_SRC = "203.0.113.7"
FAKE_PORT = 40000


def pp_route(up_port, mode="required", **extra):
    return route("tcp", up_port, proxy_protocol=mode,
                 relay_proxy_protocol_header=True, **extra)


def _proc_tcp_addr(addr):
    ip, port = addr[0], addr[1]
    return "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(ip))[0], port)


def tcp_queues(local, remote):
    """(tx_queue, rx_queue) of the IPv4 TCP socket local -> remote, from
    /proc/net/tcp, or None if there is none."""
    want = (_proc_tcp_addr(local), _proc_tcp_addr(remote))
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if (parts[1], parts[2]) == want:
                tx, rx = parts[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


def wait_consumed(c, what="sluice reading what was sent"):
    """Waits until every byte sent on c was acknowledged by sluice's end
    and read from its socket by sluice."""
    here, there = c.getsockname(), c.getpeername()
    wait_for(lambda: tcp_queues(here, there) == (0, 0) and
             tcp_queues(there, here) == (0, 0), 5, what=what)


def exchange(port, payload, header=b"", source=None, split=False):
    with connect(port, source=source) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if split and header:
            # the header arrives in two segments, the second only once
            # sluice has read the first
            c.sendall(header[:7])
            wait_consumed(c, "sluice reading the first 7 header bytes")
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
            # sluice read it all, so its close is a FIN
            assert recv_all(c, timeout=5) == (b"", "eof"), first
    # a client that says nothing is closed after proxy_protocol_timeout
    with connect(port) as c:
        t0 = time.monotonic()
        assert recv_all(c, timeout=10) == (b"", "eof")
        took = time.monotonic() - t0
        assert 1.0 - scaled(0.1) <= took <= 1.0 + scaled(2), took
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
            assert recv_all(c, timeout=5) == (b"", "eof"), name
    up.sync()
    assert up.accepted() == []
    for name in ("deny", "allow"):
        port = s.port(name)
        hdr = pp_v1("198.51.100.9", 5555, "127.0.0.1", port)
        assert exchange(port, b"ok", hdr) == b"ok"
    up.sync()
    srcs = [r.get("pp", {}).get("src") for r in up.accepted()]
    assert srcs == ["198.51.100.9", "198.51.100.9"], srcs


def handler_record_all(conn, rec):
    """Reads to EOF, records it all (raw) and the v2 header sluice put in
    front (pp), and sends back what followed that header."""
    buf = b""
    while True:
        b = conn.recv(65536)
        if not b:
            break
        buf += b
    info, rest = parse_pp_v2(buf)
    rec["raw"], rec["pp"], rec["rest"] = buf, info, rest
    conn.sendall(rest)


def send_all_then_read(port, data, source):
    """Sends data, half-closes, reads to EOF: (client port, reply, how)."""
    with connect(port, source=source) as c:
        cport = c.getsockname()[1]
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        reply, how = recv_all(c, timeout=5)
    return cport, reply, how


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_untrusted_source_header_not_believed(sluice, tcp_upstream,
                                              version):
    # docs/configuration.md: only the sources in proxy_protocol_trusted may
    # supply the client address. src/stream/tcp_route.c (start_conn): in
    # mixed mode an untrusted source's bytes are payload, so its header is
    # relayed as data, behind sluice's own v2 header giving the real
    # address; in required mode an untrusted source is refused undialled.
    up = tcp_upstream(handler_record_all)
    trusted = ["127.0.0.7/32"]
    s = sluice({"routes": {
        "mixed": pp_route(up.port, mode="mixed",
                          proxy_protocol_trusted=trusted),
        "required": pp_route(up.port, proxy_protocol_trusted=trusted)}})
    make = pp_v1 if version == "v1" else pp_v2
    for name in ("mixed", "required"):
        port = s.port(name)
        hdr = make(FAKE_SRC, FAKE_PORT, "127.0.0.1", port)
        # from a trusted source the header is believed, and consumed
        n = len(up.accepted())
        _, reply, how = send_all_then_read(port, hdr + b"t", "127.0.0.7")
        assert (reply, how) == (b"t", "eof"), (name, reply, how)
        rec = wait_for(lambda: len(up.accepted()) == n + 1 and
                       up.accepted()[n]["done"].is_set() and
                       up.accepted()[n], 5)
        assert rec["rest"] == b"t", rec
        assert (rec["pp"]["src"], rec["pp"]["sport"]) == (FAKE_SRC,
                                                          FAKE_PORT), rec

    # mixed, untrusted source: the forged header is data
    port = s.port("mixed")
    hdr = make(FAKE_SRC, FAKE_PORT, "127.0.0.1", port)
    cport, reply, how = send_all_then_read(port, hdr + b"u", "127.0.0.8")
    assert (reply, how) == (hdr + b"u", "eof"), (reply, how)
    rec = wait_for(lambda: len(up.accepted()) == 3 and
                   up.accepted()[2]["done"].is_set() and up.accepted()[2], 5)
    info = rec["pp"]
    assert info is not None, rec["raw"]
    assert (info["command"], info["src"], info["sport"], info["dst"],
            info["dport"]) == (1, "127.0.0.8", cport, "127.0.0.1", port), info
    assert rec["rest"] == hdr + b"u", rec["raw"]
    # nothing in what arrived names the forged address except the relayed
    # forged header itself
    assert rec["raw"].count(FAKE_SRC.encode() if version == "v1" else
                            socket.inet_aton(FAKE_SRC)) == 1, rec["raw"]

    # required, untrusted source: refused before any dial
    port = s.port("required")
    hdr = make(FAKE_SRC, FAKE_PORT, "127.0.0.1", port)
    with connect(port, source="127.0.0.8") as c:
        c.sendall(hdr + b"u")
        # sluice closes without reading: a FIN, or a reset when the bytes
        # arrived before the close
        data, how = recv_all(c, timeout=5)
        assert data == b"" and how in ("eof", "reset"), (data, how)
    up.sync()
    assert len(up.accepted()) == 3, [r.get("raw") for r in up.accepted()]


def test_untrusted_source_refusal_logs_its_address(sluice, tcp_upstream):
    # The refusal names the source it refused (at the default log level).
    up = tcp_upstream(handler_echo)
    s = sluice({"routes": {"required": pp_route(
        up.port, proxy_protocol_trusted=["127.0.0.7/32"])}})
    with connect(s.port("required"), source="127.0.0.8") as c:
        cport = c.getsockname()[1]
        data, how = recv_all(c, timeout=5)
        assert (data, how) == (b"", "eof")
    want = ('route "required": connection #1 from 127.0.0.8:%d denied (not '
            'a trusted PROXY protocol source)' % cport)
    wait_for(lambda: "not a trusted" in s.stderr(), 5,
             what="the refusal in the log")
    line = [ln for ln in s.stderr().splitlines() if "not a trusted" in ln][0]
    assert line.endswith(" info  " + want), line


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
