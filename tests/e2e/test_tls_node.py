"""The bridge node dialling a hub over TLS (`--hub https://...` or
`wss://...`): verified against --hub-ca, the host name (or the IP SAN) and
an optional --hub-pin; a hub whose certificate is from another CA, expired,
for another name or with another key gets no credential (the hub sees no
authentication attempt), the node logs why and retries with back-off, and
connects on its own once the hub has a good certificate; --hub-insecure
works and says so.
"""

import os
import re
import signal
import time

import pytest

from helpers import free_port, scaled, wait_for
from tls_support import Ca, FakeTlsHub, curl_tls, days_before, https_get
from tunnel_x_support import http_get, pool_or_mux

NO_AUTH_MARKS = ("hub control", "hub alloc", "hub data",
                 "credentials rejected")


def https_user(hub, ident, path="/"):
    """A user request over the hub's https port (the certificate is not
    what these tests are about: not verified)."""
    return https_get(hub.https_port, "%s.%s:%d" % (ident, hub.domain,
                                                   hub.https_port),
                     path, verify=False)


def node_log(node):
    """The node's output without the test's own paths (a folder name is no
    reason the node gave)."""
    return (node.proc.stdout() + node.proc.stderr()).replace(node.workdir,
                                                             "")


def assert_no_auth_attempt(hub):
    log = hub.proc.stdout() + hub.proc.stderr()
    for mark in NO_AUTH_MARKS:
        assert mark not in log, "the hub saw %r:\n%s" % (mark, log[-3000:])
    st, j = hub.api("GET", "/api/proxy/")
    assert st == 200, j
    items = j if isinstance(j, list) else j.get("proxies", j.get("items",
                                                                   []))
    assert not items, j


@pytest.fixture
def ca(tmp_path):
    return Ca(str(tmp_path / "ca"))


def hub_with(env, leaf, **kw):
    return env.hub(tls=True, args=["--tls-cert", leaf.path, "--tls-key",
                                   leaf.key_path], **kw)


@pytest.mark.parametrize("form", ["https-ip", "https-localhost", "wss-ip"])
def test_node_over_tls_end_to_end(env, form):
    hub = env.hub(tls=True)  # the hub's own local CA
    scheme, host = form.split("-")
    host = "127.0.0.1" if host == "ip" else "localhost"
    up = env.hash_upstream("tlsup")
    node = env.node(hub, up.url, hub_url="%s://%s:%d" % (
        scheme, host, hub.https_port), hub_ca=hub.ca)
    st, _, body = https_user(hub, node.identity, "/a")
    assert (st, body) == (200, b"tlsup /a")
    # the plain listener reaches the same bridge
    st, _, body = http_get(hub.port, hub.host(node.identity), "/b")
    assert (st, body) == (200, b"tlsup /b")
    assert "insecure" not in node_log(node).lower()
    # a POST through the TLS bridge
    st, _, body = https_get(hub.https_port, "%s.%s:%d" % (
        node.identity, hub.domain, hub.https_port), "/p", verify=False,
        method="POST", body=b"x" * 300000)
    assert st == 200 and b'"length": 300000' in body, body


def refuse_case(ca, tmp_path, case):
    """(hub leaf, node args, the word the node must log)."""
    names, ips = ["localhost", "*.localhost"], ["127.0.0.1"]
    if case == "other-ca":
        other = Ca(str(tmp_path / "other"), name="another CA")
        return other.issue(names, ips), ["--hub-ca", ca.path], \
            "unknown issuer"
    if case == "expired":
        return ca.issue(names, ips, not_before=days_before(30),
                        not_after=days_before(1)), \
            ["--hub-ca", ca.path], "expired"
    if case == "wrong-name":
        return ca.issue(["hub.example"], ["10.9.9.9"]), \
            ["--hub-ca", ca.path], "wrong name"
    good = ca.issue(names, ips)
    other_key = ca.issue(names, ips)
    return good, ["--hub-ca", ca.path, "--hub-pin", other_key.pin], \
        "pin mismatch"


CASES = ["other-ca", "expired", "wrong-name", "pin"]


@pytest.mark.parametrize("case", [c for c in CASES if c != "expired"])
def test_refused_hub_gets_no_credential(env, ca, tmp_path, case):
    leaf, args, word = refuse_case(ca, tmp_path, case)
    hub = hub_with(env, leaf)
    up = env.hash_upstream()
    node = env.node(hub, up.url, hub_url=hub.https_url, args=args,
                    wait=False)
    # the reason, logged at least twice: it retried
    wait_for(lambda: node_log(node).lower().count(word) >= 2, 15,
             what="%r logged twice" % word)
    assert node.alive()
    assert not node.bridges()
    assert_no_auth_attempt(hub)


@pytest.mark.parametrize("case", CASES)
def test_refused_hub_no_byte_sent(env, ca, tmp_path, case):
    """The same refusals against a TLS server that records every byte a
    client sends after a handshake: none, and the retries back off."""
    leaf, args, word = refuse_case(ca, tmp_path, case)
    fake = FakeTlsHub(leaf)
    env.others.append(fake)

    class Dummy:
        url = fake.url
    up = env.hash_upstream()
    node = env.node(Dummy(), up.url, hub_url=fake.url, args=args,
                    wait=False)
    wait_for(lambda: len(fake.accepts) >= 3, 20, what="three dials")
    assert word in node_log(node).lower(), node_log(node)[-2000:]
    assert fake.handshakes_done == 0 or fake.app_bytes == b"", \
        fake.app_bytes[:200]
    assert fake.app_bytes == b"", fake.app_bytes[:200]
    # back-off: the gaps between dials do not shrink to nothing
    gaps = [b - a for a, b in zip(fake.accepts, fake.accepts[1:])]
    assert all(g >= 0.5 for g in gaps[:2]), gaps


def test_hub_pin_accepted(env, ca):
    leaf = ca.issue(["localhost", "*.localhost"], ["127.0.0.1"])
    hub = hub_with(env, leaf)
    up = env.hash_upstream("pinned")
    node = env.node(hub, up.url, hub_url=hub.https_url,
                    args=["--hub-ca", ca.path, "--hub-pin", leaf.pin])
    st, _, body = https_user(hub, node.identity, "/x")
    assert (st, body) == (200, b"pinned /x")


def test_hub_insecure_works_and_warns(env, ca, tmp_path):
    other = Ca(str(tmp_path / "other"))
    leaf = other.issue(["hub.example"])
    hub = hub_with(env, leaf)
    up = env.hash_upstream("insec")
    node = env.node(hub, up.url, hub_url=hub.https_url,
                    args=["--hub-insecure"])
    warn = [ln for ln in node_log(node).splitlines()
            if "insecure" in ln.lower()]
    assert warn, node_log(node)[-2000:]
    st, _, body = https_user(hub, node.identity, "/i")
    assert (st, body) == (200, b"insec /i")


def test_node_retries_until_hub_has_good_cert(env, ca, tmp_path):
    names, ips = ["localhost", "*.localhost"], ["127.0.0.1"]
    other = Ca(str(tmp_path / "other"))
    bad = other.issue(names, ips)
    good = ca.issue(names, ips)
    port = free_port()
    state = str(tmp_path / "hubstate")
    hub = hub_with(env, bad, https_port=port, state_dir=state)
    up = env.hash_upstream("back")
    node = env.node(hub, up.url, hub_url=hub.https_url,
                    args=["--hub-ca", ca.path], wait=False)
    wait_for(lambda: "unknown issuer" in node_log(node).lower(), 15,
             what="a refusal")
    assert_no_auth_attempt(hub)
    assert hub.stop() == 0
    hub2 = hub_with(env, good, https_port=port, state_dir=state)
    t0 = time.monotonic()
    node.wait_bridges(1, timeout=40)
    wait_for(lambda: pool_or_mux(hub2, node.identity), 10,
             what="a pool or mux connection")
    st, _, body = https_user(hub2, node.identity, "/r")
    assert (st, body) == (200, b"back /r")
    assert time.monotonic() - t0 < scaled(40)


DATA_TLS_RE = re.compile(r"data connection #(\d+): TLS (\S+), (session "
                         r"resumed|full handshake|new session|[^\n]*)$",
                         re.M)


def test_data_connections_resume_tls_session(env):
    """The pool's data connections resume the TLS session the node got
    (tickets): the node says, at debug level, `data connection #N: TLS
    <version>, session resumed` for each. (The pool's: a hub without
    multiplexing.)"""
    hub = env.hub(tls=True, args=["--no-mux"])
    up = env.hash_upstream()
    node = env.node(hub, up.url, hub_url=hub.https_url, hub_ca=hub.ca,
                    pool=4, global_args=["--log-level=debug"])
    wait_for(lambda: hub.proxy(node.identity).get("pool", 0) >= 4, 15,
             what="4 pool connections")
    wait_for(lambda: len(DATA_TLS_RE.findall(node_log(node))) >= 4, 10,
             what="4 data connections' TLS lines")
    found = DATA_TLS_RE.findall(node_log(node))
    assert all(how == "session resumed" for _, _, how in found), found
    # a user request pairs one and the pool refills, resumed again
    st, _, body = https_user(hub, node.identity, "/r")
    assert st == 200, body
    wait_for(lambda: len(DATA_TLS_RE.findall(node_log(node))) >= 5, 10,
             what="a fifth data connection")
    found = DATA_TLS_RE.findall(node_log(node))
    assert all(how == "session resumed" for _, _, how in found), found


def test_bad_hub_ca_file_refused_at_start(env, tmp_path):
    hub = env.hub(tls=True)
    bad = str(tmp_path / "bad-ca.pem")
    with open(bad, "w") as f:
        f.write("not a certificate\n")
    up = env.hash_upstream()
    node = env.node(hub, up.url, hub_url=hub.https_url, hub_ca=bad,
                    wait=False)
    rc = node.proc.wait(15)
    out = node.proc.stdout() + node.proc.stderr()
    if rc is None:
        # a node may also keep running and log the error on each dial
        wait_for(lambda: bad in node.proc.stderr(), 10,
                 what="the file named")
        assert not node.bridges()
    else:
        # it exited on its own: its code is judged here, not at teardown
        node.stops.append((signal.SIGKILL, rc))
        assert rc != 0 and bad in out, (rc, out)
    assert os.path.exists(bad)


def test_https_only_hub(env):
    """--https alone: no plain listener; the node and the users both come
    over TLS (the user verifying with the hub's CA)."""
    hub = env.hub(http=False)
    out = hub.proc.stdout()
    assert "hub listening http://" not in out, out
    up = env.hash_upstream()
    node = env.node(hub, up.url, hub_url=hub.https_url, hub_ca=hub.ca)
    cp = curl_tls(hub.https_port, "%s.%s" % (node.identity, hub.domain),
                  "/o", "--fail", cafile=hub.ca)
    assert cp.returncode == 0 and cp.stdout == "upstream /o", cp.stderr
