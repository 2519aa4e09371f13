"""A real Prometheus (Debian's `prometheus`) scrapes a hub's and a node's
/metrics on loopback; its HTTP API then answers with the traffic counters
of what went through the tunnel (issue 14). promtool lints both outputs
(names, types, units)."""

import subprocess

import pytest

from dash_support import (Prometheus, RecordingUpstream, request,
                          wait_until)
from helpers import find_binary, scaled
from tunnel_x_support import http_get

SIZE = 500000


@pytest.fixture
def prometheus_bin():
    if find_binary("prometheus") is None:
        pytest.skip("prometheus not installed (scripts/setup.sh installs it)")


def test_prometheus_scrapes_hub_and_node(env, prometheus_bin, tmp_path):
    up = RecordingUpstream()
    env.others.append(up)
    hub = env.hub()
    node = env.node(hub, up.url)
    ident = node.identity
    prom = Prometheus(tmp_path, {
        "sluice-hub": "127.0.0.1:%d" % hub.api_port,
        "sluice-node": "127.0.0.1:%d" % node.api_port,
    })
    env.others.append(prom)
    st, _, body = http_get(hub.port, hub.host(ident), "/big?bytes=%d" % SIZE)
    assert st == 200 and len(body) == SIZE

    def targets_up():
        r = prom.query("up")
        return r if len(r) == 2 and all(v == 1 for v in r.values()) else None
    try:
        wait_until(targets_up, 30, "both targets up in Prometheus", 0.5)
    except AssertionError:
        raise AssertionError("targets: %r\n%s" % (
            prom.api("/api/v1/targets"), prom.proc.describe()))

    def hub_down():
        r = prom.query('sluice_proxy_traffic_bytes_total{identity="%s",'
                       'side="user",direction="down"}' % ident)
        return r if r and list(r.values())[0] >= SIZE else None
    wait_until(hub_down, 30, "the hub's user download counter", 0.5)

    def node_up():
        r = prom.query('sluice_node_bridge_gateway_bytes_total{identity='
                       '"%s",direction="up"}' % ident)
        return r if r and list(r.values())[0] >= SIZE else None
    wait_until(node_up, 30, "the node's gateway upload counter", 0.5)
    r = prom.query('sluice_node_bridge_upstream_bytes_total{identity="%s"}'
                   % ident)
    assert {dict(k)["direction"] for k in r} == {"down", "up"}, r
    # a rate over the counters works as it would on a dashboard
    wait_until(lambda: prom.query(
        'sum(increase(sluice_proxy_traffic_bytes_total{identity="%s"}[1m]))'
        % ident), 30, "an increase over the counters", 0.5)
    # the exposition is clean by Prometheus' own linter
    promtool = find_binary("promtool")
    for port in (hub.api_port, node.api_port):
        st, _, text = request(port, "GET", "/metrics")
        assert st == 200
        if promtool:
            cp = subprocess.run([promtool, "check", "metrics"], input=text,
                                capture_output=True, timeout=scaled(30))
            assert cp.returncode == 0, (port, cp.stdout, cp.stderr)
