"""UDP stream routes: dig to a real dnsmasq, sessions, order, large
datagrams, ACL, session limits and idle expiry."""

import socket
import subprocess

import pytest

from helpers import (dns_answer_a, dns_query, parse_pp_v2, route, scaled,
                     udp_bound, wait_for)

DIG = "/usr/bin/dig"  # installed by scripts/setup.sh
DIG_NO_REPLY = 9  # dig's exit code when no server answered


def dig(port, name, source=None, timeout=2):
    argv = [DIG, "@127.0.0.1", "-p", str(port), name, "+short",
            "+time=%d" % max(1, int(scaled(timeout))), "+tries=1"]
    if source:
        argv += ["-b", source]
    return subprocess.run(argv, capture_output=True, text=True,
                          timeout=scaled(timeout) + 10,
                          stdin=subprocess.DEVNULL)


def udp_client(source="127.0.0.1", timeout=5):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind((source, 0))
    c.settimeout(scaled(timeout))
    return c


def ask(c, port, payload, timeout=5):
    c.settimeout(scaled(timeout))
    c.sendto(payload, ("127.0.0.1", port))
    data, _ = c.recvfrom(70000)
    return data


def test_dig_through_udp_route(sluice, dnsmasq):
    s = sluice({"routes": {"dns": route("udp", dnsmasq.port)}})
    for name in ("test.local", "a.test.local", "b.c.test.local",
                 "test.local", "x.test.local"):
        cp = dig(s.port("dns"), name)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert cp.stdout.strip() == dnsmasq.ANSWER, (name, cp.stdout)


def test_udp_sessions_keep_order_and_size(sluice, udp_upstream):
    up = udp_upstream(reply_prefix=b"re:")
    s = sluice({"routes": {"u": route("udp", up.port)}})
    port = s.port("u")
    clients = [udp_client() for _ in range(8)]
    try:
        for i in range(20):
            for n, c in enumerate(clients):
                msg = b"%d-%d" % (n, i)
                assert ask(c, port, msg) == b"re:" + msg
        # one session (one upstream socket) per client address
        peers = set(up.peers())
        assert len(peers) == len(clients), peers
        # order within a session: the upstream saw each client's datagrams
        # in sending order
        by_peer = {}
        for peer, data in list(up.received):
            by_peer.setdefault(peer, []).append(int(data.split(b"-")[1]))
        for seq in by_peer.values():
            assert seq == list(range(20)), seq
        # a large datagram passes whole
        big = bytes(range(256)) * 250  # 64000 bytes
        assert ask(clients[0], port, big) == b"re:" + big
    finally:
        for c in clients:
            c.close()


def test_udp_acl_deny(sluice, dnsmasq):
    s = sluice({"routes": {"dns": route(
        "udp", dnsmasq.port, acl={"allow": ["cidr:127.0.0.2/32"]})}})
    cp = dig(s.port("dns"), "denied.test.local", source="127.0.0.3",
             timeout=1)
    assert cp.returncode == DIG_NO_REPLY and cp.stdout.strip().endswith(
        "no servers could be reached"), (cp.returncode, cp.stdout)
    # Sync: a query sent straight to dnsmasq after the denied one shows in
    # its log; if the denied one had been forwarded it would be there too.
    with udp_client() as c:
        resp = ask(c, dnsmasq.port, dns_query("sync.test.local"))
        assert dns_answer_a(resp) == [dnsmasq.ANSWER]
    wait_for(lambda: "sync.test.local" in dnsmasq.log(), 5,
             what="dnsmasq logging the sync query")
    assert "denied.test.local" not in dnsmasq.log()
    cp = dig(s.port("dns"), "allowed.test.local", source="127.0.0.2")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.strip() == dnsmasq.ANSWER, cp.stdout + cp.stderr


def test_udp_session_limit(sluice, udp_upstream):
    up = udp_upstream()
    s = sluice({"routes": {"u": route("udp", up.port, max_connections=2)}})
    port = s.port("u")
    a, b, c = udp_client(), udp_client(), udp_client()
    try:
        assert ask(a, port, b"a1") == b"a1"
        assert ask(b, port, b"b1") == b"b1"
        c.sendto(b"c1", ("127.0.0.1", port))
        # a's next datagram passes the relay after c1 did
        assert ask(a, port, b"a2") == b"a2"
        assert b"c1" not in [d for _, d in list(up.received)]
        assert len(set(up.peers())) == 2
    finally:
        for x in (a, b, c):
            x.close()


def test_udp_idle_session_expires(sluice, udp_upstream):
    up = udp_upstream()
    s = sluice({"routes": {"u": route("udp", up.port,
                                      udp_idle_timeout="1s",
                                      udp_sweep_interval="200ms")}})
    port = s.port("u")
    idle, busy = udp_client(), udp_client()
    try:
        assert ask(idle, port, b"first") == b"first"
        assert ask(busy, port, b"busy") == b"busy"
        idle_port = [p for p, d in up.received if d == b"first"][0][1]
        busy_port = [p for p, d in up.received if d == b"busy"][0][1]
        assert udp_bound(idle_port)

        # keep one session busy while the other one idles out
        def expired():
            assert ask(busy, port, b"busy") == b"busy"
            return not udp_bound(idle_port)
        wait_for(expired, 6, interval=0.2, what="idle UDP session expiry")
        assert {p[1] for p, d in up.received if d == b"busy"} == {busy_port}
        assert udp_bound(busy_port)
        # the expired client gets a new session
        assert ask(idle, port, b"again") == b"again"
        again_port = [p for p, d in up.received if d == b"again"][0][1]
        assert udp_bound(again_port)
    finally:
        idle.close()
        busy.close()


def test_udp_relays_proxy_v2_header_per_datagram(sluice, udp_upstream):
    up = udp_upstream()
    s = sluice({"routes": {"u": route("udp", up.port,
                                      relay_proxy_protocol_header=True)}})
    port = s.port("u")
    c = udp_client(source="127.0.0.9")
    try:
        for i in range(3):
            msg = b"dgram %d" % i
            reply = ask(c, port, msg)
            # the echo carries the header back; sluice passes replies as
            # they are
            info, rest = parse_pp_v2(reply)
            assert info is not None, reply
            assert rest == msg
            assert info["proto"] == 2, info  # DGRAM
            assert (info["src"], info["sport"]) == ("127.0.0.9",
                                                    c.getsockname()[1])
            assert info["dport"] == port
    finally:
        c.close()


def test_udp_largest_datagram_and_several_replies(sluice):
    # an upstream answering each datagram three times
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(scaled(5))
    try:
        s = sluice({"routes": {"u": route("udp", srv.getsockname()[1])}})
        with udp_client() as c:
            big = bytes(i % 251 for i in range(65507))  # the IPv4 maximum
            c.sendto(big, ("127.0.0.1", s.port("u")))
            data, peer = srv.recvfrom(70000)
            assert data == big
            for i in range(3):
                srv.sendto(b"reply %d" % i, peer)
            for i in range(3):
                assert c.recvfrom(100)[0] == b"reply %d" % i
            srv.sendto(big, peer)
            assert c.recvfrom(70000)[0] == big
    finally:
        srv.close()


def test_udp6_route(sluice):
    srv = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        srv.bind(("::1", 0))
    except OSError:
        srv.close()
        pytest.skip("no IPv6 loopback")
    srv.settimeout(scaled(5))
    try:
        s = sluice({"routes": {"u6": route("udp6", srv.getsockname()[1],
                                           host="::1", bind="::1")}})
        assert s.routes["u6"].addr == "::1"
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as c:
            c.settimeout(scaled(5))
            c.sendto(b"six", ("::1", s.port("u6")))
            data, peer = srv.recvfrom(100)
            assert data == b"six" and peer[0] == "::1"
            srv.sendto(b"xis", peer)
            assert c.recvfrom(100)[0] == b"xis"
    finally:
        srv.close()
