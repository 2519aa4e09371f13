"""Network namespaces a test creates for itself: hosts with addresses that
are not loopback (public ones too) and no route off the machine.

A namespace starts with only `lo` (up); `link()` joins two namespaces with
a veth pair. Nothing in a namespace has a default route unless a test adds
one toward another namespace, so no packet can reach a real network.

Where this machine cannot make namespaces (not root, no CAP_SYS_ADMIN), the
test is skipped with a reason that starts with "no network namespaces":
the one kind of skip a CI run allows (see conftest.py).
"""

import itertools
import os
import subprocess
import uuid

import pytest

from helpers import Proc, scaled

NO_NETNS = "no network namespaces"
_links = itertools.count()


def _ip(*argv, check=True):
    cp = subprocess.run(["ip"] + list(argv), capture_output=True, text=True,
                        timeout=scaled(10), stdin=subprocess.DEVNULL)
    if check and cp.returncode != 0:
        raise AssertionError("ip %s: %s" % (" ".join(argv), cp.stderr.strip()))
    return cp


class Netns:
    """One namespace: `run()` a command in it, `proc()` a long-lived one
    (a helpers.Proc, ended by the session's safety net too), `close()`
    ends those and deletes the namespace. Use as a context manager."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.name = "sl" + uuid.uuid4().hex[:10]
        self.procs = []
        if os.geteuid() != 0:
            pytest.skip(NO_NETNS + ": they need root")
        cp = _ip("netns", "add", self.name, check=False)
        if cp.returncode != 0:
            pytest.skip(NO_NETNS + ": ip netns add: " + cp.stderr.strip())
        if self.run("true").returncode != 0:
            self.close()
            pytest.skip(NO_NETNS + ": ip netns exec fails here")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def argv(self, *argv):
        return ["ip", "netns", "exec", self.name] + [str(a) for a in argv]

    def run(self, *argv, timeout=20, check=False, **kw):
        cp = subprocess.run(self.argv(*argv), capture_output=True, text=True,
                            timeout=scaled(timeout), stdin=subprocess.DEVNULL,
                            **kw)
        if check and cp.returncode != 0:
            raise AssertionError("in %s: %s: %s" % (
                self.name, " ".join(map(str, argv)), cp.stderr.strip()))
        return cp

    def proc(self, name, *argv, env=None):
        p = Proc(self.argv(*argv), self.tmp_path, name, env=env)
        self.procs.append(p)
        return p

    def add_address(self, cidr, dev="lo"):
        _ip("-n", self.name, "addr", "add", cidr, "dev", dev)

    def close(self):
        for p in reversed(self.procs):
            p.kill_group()
        _ip("netns", "del", self.name, check=False)


def link(a, addr_a, b, addr_b):
    """Joins namespaces a and b with a veth pair: addr_a (CIDR, e.g.
    "198.51.100.1/24") on a's end, addr_b on b's. Returns the two
    interface names."""
    n = next(_links)
    ea, eb = "sla%d_%d" % (os.getpid() % 10000, n), "slb%d_%d" % (
        os.getpid() % 10000, n)
    _ip("link", "add", ea, "netns", a.name, "type", "veth", "peer", "name",
        eb, "netns", b.name)
    for ns, dev, addr in ((a, ea, addr_a), (b, eb, addr_b)):
        flags = ["nodad"] if ":" in addr else []
        _ip("-n", ns.name, "addr", "add", addr, "dev", dev, *flags)
        _ip("-n", ns.name, "link", "set", dev, "up")
    return ea, eb
