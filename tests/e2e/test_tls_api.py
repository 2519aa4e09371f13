"""The hub's admin API over TLS: bound to an address that is not loopback
(in a network namespace, on its lo) it speaks TLS with the hub's
certificate, and plain HTTP gets no answer; on loopback it stays plain (the
rest of the suite)."""

import os

from helpers import sluice_bin, wait_for
from netns import Netns
from tunnel_x_support import stop_clean


def test_admin_api_tls_off_loopback(tmp_path):
    """--api on an address that is not loopback speaks TLS with the hub's
    certificate (in a namespace: the address lives on its lo)."""
    with Netns(tmp_path) as ns:
        ns.add_address("10.77.0.1/32")
        st = str(tmp_path / "st")
        p = ns.proc("hub", sluice_bin(), "boot", "up", "--proxy",
                    "--http", "127.0.0.1:18080", "--https", "127.0.0.1:18443",
                    "--api", "10.77.0.1:18082", "--api-token", "t0ken",
                    "--state-dir", st)

        def ready():
            if not p.alive():
                raise AssertionError(p.describe())
            return "hub listening https://" in p.stdout() and ns.run(
                "sh", "-c", "ss -ltn | grep -q 10.77.0.1:18082").returncode \
                == 0
        wait_for(ready, 20, what="hub and its API listening")
        cp = ns.run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                    "--cacert", os.path.join(st, "tls", "ca.pem"),
                    "-H", "Authorization: Bearer t0ken",
                    "https://10.77.0.1:18082/api/proxy/", timeout=30)
        # the certificate may not name 10.77.0.1: what counts is TLS
        if cp.returncode == 60:
            cp = ns.run("curl", "-sS", "-k", "-o", "/dev/null", "-w",
                        "%{http_code}", "-H", "Authorization: Bearer t0ken",
                        "https://10.77.0.1:18082/api/proxy/", timeout=30)
        assert cp.stdout == "200", (cp.stdout, cp.stderr)
        cp = ns.run("curl", "-sS", "-m", "5", "-o", "/dev/null", "-w",
                    "%{http_code}", "-H", "Authorization: Bearer t0ken",
                    "http://10.77.0.1:18082/api/proxy/", timeout=30)
        assert cp.stdout != "200", "plain HTTP answered on a public API"
        problems = stop_clean(p)
        assert not problems, problems
