"""A node stops on SIGTERM (exit 0, at once) whatever state its TLS
connections to the hub are in: a hub that accepts the TCP connection and
never answers the ClientHello (the handshake in flight for ever), and a
real hub with the pool's data connections still shaking hands when the
signal comes. The node also gives up such a handshake by itself and dials
again (every wait has a bound)."""

import socket
import threading
import time

from helpers import scaled, wait_for


class SilentHub:
    """Accepts TCP connections, reads what comes, never answers."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.ls.settimeout(0.05)
        self.port = self.ls.getsockname()[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.conns = []
        self.accepts = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepts.append(time.monotonic())
            self.conns.append(c)

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        for c in self.conns:
            c.close()
        self.ls.close()


def test_sigterm_with_control_handshake_in_flight(env):
    silent = SilentHub()
    env.others.append(silent)
    up = env.hash_upstream()
    node = env.node(silent, up.url, hub_url=silent.url,
                    args=["--hub-insecure"], wait=False)
    wait_for(lambda: silent.accepts, 10, what="the node's dial")
    t0 = time.monotonic()
    rc = node.stop(timeout=5)
    assert rc == 0, "node: exit %s %.1fs after SIGTERM with a TLS " \
        "handshake in flight" % (rc, time.monotonic() - t0)


def test_handshake_in_flight_has_a_bound(env):
    silent = SilentHub()
    env.others.append(silent)
    up = env.hash_upstream()
    node = env.node(silent, up.url, hub_url=silent.url,
                    args=["--hub-insecure"], wait=False)
    wait_for(lambda: len(silent.accepts) >= 2, 30,
             what="a second dial after a handshake that never ended")
    assert silent.accepts[1] - silent.accepts[0] < scaled(25)
    assert node.alive()


def test_sigterm_while_data_connections_shake_hands(env):
    """Stops right after the second bridge's line, when its pool's TLS
    handshakes are often still running; ten times (a round hit it about
    one time in seven when this was written)."""
    for i in range(10):
        hub = env.hub(tls=True)
        a = env.hash_upstream("a")
        b = env.hash_upstream("b")
        node = env.node(hub, a.url, hub_url=hub.https_url, hub_ca=hub.ca,
                        pool=4)
        st, body = node.add_bridge(b.url)
        assert st == 201, body
        node.wait_bridges(2)
        t0 = time.monotonic()
        rc = node.stop(timeout=5)
        assert rc == 0, "round %d: node exit %s %.1fs after SIGTERM" % (
            i, rc, time.monotonic() - t0)
        assert hub.stop() == 0
