"""The dashboards of the hub's and the node's APIs, their live feed and the
node's request inspector, spoken to over HTTP as the page does (issue 14);
test_dashboard_browser.py drives the same pages in a real browser.

- The shell (/, /ui/...) is served with a strict CSP and needs no
  credential; data requests from a page need the page's dashboard key (or
  the token), and pass only from the same origin.
- /api/events streams a snapshot a second, to at most 16 pages at once.
- The inspector records requests through the tunnel with their secrets
  redacted, replays one to the upstream, and is off with --inspect off.
"""

import json
import re
import time

import pytest

from dash_support import (EventStream, RecordingUpstream, dashboard_key,
                          page_headers, page_json, request, wait_until)
from helpers import scaled
from tunnel_x_support import http_get

TOKEN = "dashboard-token-for-tests"


@pytest.fixture
def upstream(env):
    u = RecordingUpstream()
    env.others.append(u)
    return u


def test_hub_shell_and_page_rule(env):
    """The page and its files need no credential; the data they ask for
    needs the page's key and a same-origin request; a page of another
    origin (another port, a cross-site fetch, a rebound name) gets 403."""
    hub = env.hub()
    p = hub.api_port
    st, h, body = request(p, "GET", "/", headers={"Sec-Fetch-Site": "none"})
    assert st == 200 and h["content-type"].startswith("text/html"), (st, h)
    csp = h["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and h["x-frame-options"] == "DENY"
    assert b"<html" in body and b"/ui/dash.js" in body
    key = dashboard_key(p)
    assert key == dashboard_key(p)  # one key per server
    for name, ctype in (("dash.js", "text/javascript"),
                        ("dash.css", "text/css")):
        st, h, body = request(p, "GET", "/ui/" + name,
                              headers={"Sec-Fetch-Site": "same-origin"})
        assert st == 200 and h["content-type"].startswith(ctype), (name, st)
        assert len(body) > 1000
    # pages are served only at /, unknown files nowhere
    for path in ("/ui/hub.html", "/ui/nope.js", "/ui/../server.c"):
        assert request(p, "GET", path)[0] == 404, path
    # a rebound name cannot read the shell (it carries the key)
    st, _, _ = request(p, "GET", "/", headers={"Host": "evil.example:%d" % p})
    assert st == 403
    # data: the key from the same origin passes ...
    st, j = page_json(p, key, "GET", "/api/proxy/")
    assert st == 200 and j == {"proxies": []}, (st, j)
    st, j = page_json(p, key, "POST", "/api/proxy/", body={})
    assert st == 201 and "password" in j, (st, j)
    # ... and nothing else does
    origin = "http://127.0.0.1:%d" % p
    for headers in ({"Sec-Fetch-Site": "same-origin"},
                    {"X-Sluice-Dashboard": "0" * 32,
                     "Sec-Fetch-Site": "same-origin"},
                    {"X-Sluice-Dashboard": key, "Sec-Fetch-Site": "cross-site"},
                    {"X-Sluice-Dashboard": key, "Sec-Fetch-Site": "same-site"},
                    {"X-Sluice-Dashboard": key,
                     "Origin": "http://127.0.0.1:%d" % (p + 1)},
                    {"X-Sluice-Dashboard": key, "Origin": "null"},
                    {"X-Sluice-Dashboard": key, "Origin": origin,
                     "Host": "evil.example:%d" % p},
                    {"X-Sluice-Dashboard": key + key, "Origin": origin}):
        st, _, body = request(p, "DELETE", "/api/proxy/prune/?older_than=0",
                              headers=headers)
        assert st == 403, (headers, st, body)
    # the CLI's and curl's requests (no browser headers) pass as before
    assert request(p, "GET", "/api/proxy/")[0] == 200
    assert len(json.loads(request(p, "GET", "/api/proxy/")[2])["proxies"]) == 1


def test_hub_dashboard_with_token(env):
    """With a token, the shell is still served (it holds no data) and asks
    for the token; every data request needs it, key or not."""
    hub = env.hub(args=["--api-token", TOKEN, "--api-require-token"])
    p = hub.api_port
    st, _, body = request(p, "GET", "/")
    assert st == 200 and b"token-form" in body
    key = dashboard_key(p)
    st, _ = page_json(p, key, "GET", "/api/proxy/")
    assert st == 401
    s = EventStream(p, headers=page_headers(p, key))
    assert s.status == 401, s.head
    s.close()
    auth = dict(page_headers(p, key), Authorization="Bearer " + TOKEN)
    st, _, body = request(p, "GET", "/api/proxy/", headers=auth)
    assert st == 200, body
    s = EventStream(p, headers={"Authorization": "Bearer " + TOKEN})
    assert s.status == 200 and "text/event-stream" in s.head, s.head
    snap = next(s.snapshots())
    assert snap["proxies"] == [] and snap["time"] > 0
    s.close()


def test_events_feed_and_cap(env, upstream):
    """Each page's stream gets a snapshot at once and then one a second,
    with the allocation's live state and traffic; a 17th page at once gets
    503, and a slot frees when a page goes."""
    hub = env.hub()
    p = hub.api_port
    first = EventStream(p)
    assert first.status == 200
    assert "no-store" in first.head
    it = first.snapshots()
    t0 = time.monotonic()
    assert next(it)["proxies"] == []
    node = env.node(hub, upstream.url)
    host = hub.host(node.identity)
    st, _, body = http_get(hub.port, host, "/big?bytes=300000")
    assert st == 200 and len(body) == 300000
    deadline = time.monotonic() + scaled(15)
    seen = None
    for snap in it:
        rows = [x for x in snap["proxies"] if x["identity"] == node.identity]
        if rows and rows[0]["bridges"] >= 1 and \
                rows[0]["traffic"]["user"]["down"] >= 300000:
            seen = rows[0]
            break
        assert time.monotonic() < deadline, snap
    assert seen is not None
    # about one a second, not a polling storm
    n, t1 = 0, time.monotonic()
    for _ in it:
        n += 1
        if n == 3:
            break
    assert time.monotonic() - t1 >= 1.5
    assert time.monotonic() - t0 < scaled(30)
    streams = [first]
    try:
        for _ in range(15):
            s = EventStream(p)
            assert s.status == 200, s.head
            streams.append(s)
        extra = EventStream(p)
        assert extra.status == 503, extra.head
        extra.close()
        streams.pop().close()
        wait_until(lambda: _stream_ok(p), 10, "a freed stream slot")
    finally:
        for s in streams:
            s.close()
    # the API is still well
    assert request(p, "GET", "/api/proxy/")[0] == 200


def _stream_ok(port):
    s = EventStream(port)
    try:
        return s.status == 200
    finally:
        s.close()


def test_node_inspector_records_and_replays(env, upstream):
    """Requests through the tunnel appear in the node's inspector in
    order, with heads, bodies and timing and without their secrets; a
    replay reaches the upstream again (without the secrets) and is
    recorded as a replay."""
    hub = env.hub()
    node = env.node(hub, upstream.url)
    host = hub.host(node.identity)
    p = node.api_port
    st, _, body = http_get(hub.port, host, "/first?q=1",
                           headers={"Authorization": "Bearer user-secret",
                                    "Cookie": "session=user-cookie"})
    assert st == 200
    st, _, body = http_get(hub.port, host, "/form", method="POST",
                           body=b'{"n": 42}',
                           headers={"Content-Type": "application/json",
                                    "X-Marker": "replay-me"})
    assert st == 200 and json.loads(body)["body"] == '{"n": 42}'
    key = dashboard_key(p)

    def listed():
        st, j = page_json(p, key, "GET",
                          "/api/bridge/%s/requests/" % node.identity)
        assert st == 200, j
        done = [r for r in j["requests"] if r["state"] == "complete"]
        return j["requests"] if len(done) >= 2 else None
    rows = wait_until(listed, 10, "two complete exchanges")
    assert [(r["method"], r["path"], r["status"]) for r in rows] == \
        [("GET", "/first?q=1", 200), ("POST", "/form", 200)]
    assert all(r["duration_ms"] >= 0 and not r["replay"] for r in rows)
    st, first = page_json(p, key, "GET", "/api/bridge/%s/requests/%d/"
                          % (node.identity, rows[0]["id"]))
    assert st == 200
    text = json.dumps(first)
    assert "user-secret" not in text and "user-cookie" not in text
    assert "Authorization: [redacted]" in first["request"]["head"]
    assert "X-Forwarded-For: 127.0.0.1" in first["request"]["head"]
    assert first["response"]["head"].startswith("HTTP/1.")
    st, post = page_json(p, key, "GET", "/api/bridge/%s/requests/%d/"
                         % (node.identity, rows[1]["id"]))
    assert post["request"]["body"] == '{"n": 42}' and post["replayable"]
    before = len(upstream.seen)
    st, rep = page_json(p, key, "POST", "/api/bridge/%s/requests/%d/replay/"
                        % (node.identity, rows[1]["id"]))
    assert st == 200, rep
    assert rep["replay"] and rep["status"] == 200 and rep["id"] > rows[1]["id"]
    assert json.loads(rep["response"]["body"])["body"] == '{"n": 42}'
    seen = upstream.seen
    assert len(seen) == before + 1
    again = seen[-1]
    assert again["method"] == "POST" and again["path"] == "/form"
    assert again["body"] == b'{"n": 42}'
    assert again["headers"].get("X-Marker") == "replay-me"
    # the first one had secrets: its replay goes without them
    st, rep = page_json(p, key, "POST", "/api/bridge/%s/requests/%d/replay/"
                        % (node.identity, rows[0]["id"]))
    assert st == 200, rep
    h = upstream.seen[-1]["headers"]
    assert "Authorization" not in h and "Cookie" not in h, h
    # unknown ones
    for path, code in (("/api/bridge/%s/requests/999/" % node.identity, 404),
                       ("/api/bridge/%s/requests/x/" % node.identity, 404),
                       ("/api/bridge/zz0000000000/requests/", 404)):
        assert page_json(p, key, "GET", path)[0] == code, path
    st, j = page_json(p, key, "POST", "/api/bridge/%s/requests/999/replay/"
                      % node.identity)
    assert st == 404, j
    # the feed says the inspector is on and where it stands
    s = EventStream(p)
    snap = next(s.snapshots())
    s.close()
    assert snap["inspect"] is True
    b = [x for x in snap["bridges"] if x["identity"] == node.identity][0]
    assert b["inspector"]["last"] >= rows[1]["id"] + 2


def test_node_inspector_bounds(env, upstream):
    """The inspector keeps the last 50 exchanges, bodies up to 16 KiB, and
    says why a cut one cannot be replayed."""
    hub = env.hub()
    node = env.node(hub, upstream.url)
    host = hub.host(node.identity)
    p = node.api_port
    big = b"y" * 40000
    st, _, body = http_get(hub.port, host, "/upload", method="PUT", body=big)
    assert st == 200
    for i in range(55):
        assert http_get(hub.port, host, "/n/%d" % i)[0] == 200
    key = dashboard_key(p)

    def listed():
        st, j = page_json(p, key, "GET",
                          "/api/bridge/%s/requests/" % node.identity)
        rows = j["requests"]
        return rows if rows and rows[-1]["path"] == "/n/54" and \
            rows[-1]["state"] == "complete" else None
    rows = wait_until(listed, 10, "the last request listed")
    assert len(rows) == 50
    assert rows[0]["path"] == "/n/5"
    # a smaller store shows the cut body
    hub2 = env.hub()
    node2 = env.node(hub2, upstream.url, name="node-b")
    assert http_get(hub2.port, hub2.host(node2.identity), "/upload",
                    method="PUT", body=big)[0] == 200
    k2 = dashboard_key(node2.api_port)

    def first():
        st, j = page_json(node2.api_port, k2, "GET",
                          "/api/bridge/%s/requests/1/" % node2.identity)
        return j if st == 200 and j["state"] == "complete" else None
    x = wait_until(first, 10, "the upload recorded")
    assert x["request"]["body_length"] == 40000
    assert x["request"]["body_kept"] == 16384
    assert x["request"]["body_truncated"] and not x["replayable"]
    st, j = page_json(node2.api_port, k2, "POST",
                      "/api/bridge/%s/requests/1/replay/" % node2.identity)
    assert st == 409 and "body" in j["error"], j


def test_node_inspect_off(env, upstream):
    """--inspect off: nothing is recorded, the requests routes say so, the
    feed says so, the tunnel works as ever."""
    hub = env.hub()
    node = env.node(hub, upstream.url, args=["--inspect", "off"])
    assert http_get(hub.port, hub.host(node.identity), "/x")[0] == 200
    key = dashboard_key(node.api_port)
    st, j = page_json(node.api_port, key, "GET",
                      "/api/bridge/%s/requests/" % node.identity)
    assert st == 404 and j["error"] == "The inspector is off", j
    s = EventStream(node.api_port)
    snap = next(s.snapshots())
    s.close()
    assert snap["inspect"] is False
    assert "inspector" not in snap["bridges"][0]


def test_node_metrics(env, upstream):
    """/metrics on the node: traffic counters per bridge with conventional
    names, matching the bytes that went through."""
    hub = env.hub()
    node = env.node(hub, upstream.url)
    st, _, body = http_get(hub.port, hub.host(node.identity),
                           "/big?bytes=200000")
    assert st == 200 and len(body) == 200000

    def metrics():
        st, h, text = request(node.api_port, "GET", "/metrics")
        assert st == 200 and h["content-type"].startswith(
            "text/plain; version=0.0.4"), (st, h)
        out = {}
        for line in text.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out
    lab = 'identity="%s",direction="%s"'
    m = wait_until(lambda: (lambda x: x if x.get(
        "sluice_node_bridge_upstream_bytes_total{%s}"
        % (lab % (node.identity, "down")), 0) >= 200000 else None)(metrics()),
        10, "the download counted")
    assert m["sluice_node_bridge_gateway_bytes_total{%s}"
             % (lab % (node.identity, "up"))] >= 200000
    assert m["sluice_node_bridge_connected{identity=\"%s\"}"
             % node.identity] == 1
    assert m['sluice_node_bridges{state="connected"}'] == 1
    assert m["sluice_node_bridge_inspected_requests_total{identity=\"%s\"}"
             % node.identity] >= 1
    # every sample name follows the conventions
    for k in m:
        name = k.split("{")[0]
        assert re.fullmatch(r"sluice_node_[a-z_]+", name), name
        if "bytes" in name and name.endswith("_total"):
            assert name.endswith("_bytes_total"), name
