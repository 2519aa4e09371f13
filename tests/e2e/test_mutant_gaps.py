"""Promises of README.md and docs/ that no other test checked, found by
scripts/mutants.sh: each test here is named in that script's list for the
mutant (the deliberate bug) it catches."""

import select
import socket

from helpers import scaled, wait_for
from tunnel_x_support import (data_conn, http_get, new_fingerprint,
                              read_head, upgrade_request)


def answered(sock):
    """True if sock has something to read (an answer, EOF or a reset)."""
    r, _, _ = select.select([sock], [], [], 0)
    return bool(r)


def test_hub_pool_capped_at_16(hubs):
    """docs/protocol.md: an identity's idle pool holds at most 16 data
    connections; beyond that `429`. (Mutant hub-pool-cap.)"""
    hub = hubs()
    creds = hub.create()
    ident = creds["identity"]

    def dial():
        return data_conn(hub, creds["username"], creds["password"],
                         "%s|%s" % (ident, new_fingerprint()))

    # No bridge and no user: every data connection that passes the checks
    # waits in the pool (unanswered until it ages out after 60 s).
    socks = [dial() for _ in range(20)]
    try:
        def four_refused():
            return sum(answered(s) for s in socks) >= 4
        wait_for(four_refused, 20,
                 what="4 of 20 pool connections refused (the pool holds 16)")
        # One more after the fact: once it is refused, the 20 before it
        # have all been judged, so the counts below are final.
        late = dial()
        socks.append(late)
        st, _, _ = read_head(late, timeout=20)
        assert st == 429, "a data connection beyond a full pool: %r" % st
        waiting, refused = 0, 0
        for s in socks[:20]:
            if answered(s):
                st, _, _ = read_head(s, timeout=5)
                assert st == 429, st
                refused += 1
            else:
                waiting += 1
        assert (waiting, refused) == (16, 4)
    finally:
        for s in socks:
            s.close()


def test_gateway_token_wrong_value_refused(hubs):
    """docs/hub.md: with --token, a bridge asking for an allocation must
    give that token; a wrong one (not only a missing one) is answered 401,
    and the right one still gets 101. (Mutant hub-gateway-token.)"""
    hub = hubs("--token", "s3cret")

    def attempt(query):
        s = socket.create_connection(("127.0.0.1", hub.port), scaled(10))
        try:
            s.sendall(upgrade_request("/_sluice/v1/control" + query,
                                      "127.0.0.1:%d" % hub.port))
            st, head, _ = read_head(s, timeout=30)
            return st, head
        finally:
            s.close()

    for query in ["?token=wrong", "?token=s3cre", "?token=s3cret2",
                  "?token=S3CRET", "?token=", "?x=1&token=nope"]:
        st, head = attempt(query)
        assert st == 401, (query, head)
        assert "sluice-identity:" not in head.lower(), query
    st, head = attempt("?token=s3cret")
    assert st == 101 and "sluice-identity:" in head.lower(), head


def test_node_keeps_its_pool_size_idle(env):
    """docs/node.md: each connected bridge keeps --pool idle data
    connections, no more: after each request (which uses one and dials a
    replacement) the hub holds exactly --pool of them again.
    (Mutant node-pool-size.)"""
    hub = env.hub()
    up = env.hash_upstream("poolup")
    node = env.node(hub, up.url, pool=2)

    def settled():
        m = hub.metrics()
        return (m.get("sluice_hub_user_connections", -1) == 0 and
                m.get("sluice_hub_data_connections", -1) == 2)
    wait_for(settled, 20, what="2 idle pool connections at the hub")
    for i in range(3):
        st, _, body = http_get(hub.port, hub.host(node.identity), "/p%d" % i)
        assert (st, body) == (200, b"poolup /p%d" % i)
        wait_for(settled, 20, what="exactly 2 idle pool connections again "
                                   "after request %d" % i)
