"""Promises of README.md and docs/ that no other test checked, found by
scripts/mutants.sh: each test here is named in that script's list for the
mutant (the deliberate bug) it catches."""

import select

import pytest

from helpers import wait_for
from tunnel_x_support import Hub, data_conn, new_fingerprint, read_head


@pytest.fixture
def hub(tmp_path):
    h = Hub(tmp_path)
    yield h
    problems = h.problems()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def answered(sock):
    """True if sock has something to read (an answer, EOF or a reset)."""
    r, _, _ = select.select([sock], [], [], 0)
    return bool(r)


def test_hub_pool_capped_at_16(hub):
    """docs/protocol.md: an identity's idle pool holds at most 16 data
    connections; beyond that `429`. (Mutant hub-pool-cap.)"""
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
