"""Structured JSON logs (issue 14): with --log-format json, the lines
about connections carry route, client, target, bytes, reason (and
identity on the hub and the node) as members of their own, not only
inside msg. Text lines stay the sentence alone."""

import json

from helpers import connect, handler_echo, route, wait_for
from tunnel_x_support import curl_via


def json_lines(text):
    out = []
    for line in text.splitlines():
        assert line.startswith("{"), "not a JSON line: %r" % line
        out.append(json.loads(line))
    return out


def find(lines, **want):
    return [x for x in lines
            if all(x.get(k) == v for k, v in want.items())]


def test_stream_route_fields(sluice, tcp_upstream):
    up = tcp_upstream(handler_echo)
    s = sluice({"routes": {
        "echo": route("tcp", up.port),
        "shut": route("tcp", up.port, acl={"deny": ["cidr:127.0.0.0/8"]}),
    }}, global_args=["--log-format", "json", "-L", "debug"])
    c = connect(s.port("echo"))
    c.sendall(b"x" * 1000)
    got = b""
    while len(got) < 1000:
        got += c.recv(65536)
    c.close()
    d = connect(s.port("shut"))
    d.recv(1)
    d.close()

    def ended():
        lines = json_lines(s.proc.stderr())
        closed = find(lines, route="echo", event="closed")
        refused = find(lines, route="shut", event="refused")
        return (closed, refused) if closed and refused else None
    closed, refused = wait_for(ended, 10, what="closed and refused lines")
    c = closed[0]
    assert c["level"] == "debug"
    assert c["client"].startswith("127.0.0.1:")
    assert c["target"] == "127.0.0.1:%d" % up.port
    assert c["bytes"] == 2000 and c["bytes_in"] == 1000, c
    assert c["reason"] == "done"
    assert "connection #" in c["msg"]
    r = refused[0]
    assert r["reason"] == "acl" or "acl" in r["reason"], r
    assert r["client"].startswith("127.0.0.1:")
    assert r["level"] == "info"


def test_hub_and_node_fields(env, http_server):
    up = http_server(files={"index.html": b"hello"})
    hub = env.hub(global_args=["--log-format=json", "--log-level=debug"])
    target = "http://127.0.0.1:%d" % up.port
    node = env.node(hub, target,
                    global_args=["--log-format=json", "--log-level=debug"])
    cp = curl_via(hub, node.identity, "/index.html")
    assert cp.returncode == 0 and cp.stdout == "hello", cp.stderr

    def hub_lines():
        lines = json_lines(hub.proc.stderr())
        return find(lines, route="hub", event="connected",
                    identity=node.identity) or None
    connected = wait_for(hub_lines, 10, what="the hub's connected line")[0]
    assert connected["kind"] == "control"
    assert connected["client"] == "127.0.0.1"

    def node_lines():
        lines = json_lines(node.proc.stderr())
        ok = find(lines, route="node", event="connected",
                  identity=node.identity)
        paired = find(lines, route="node", event="accepted",
                      identity=node.identity, target=target)
        return (ok, paired) if ok and paired else None
    ok, paired = wait_for(node_lines, 10, what="the node's lines")
    assert ok[0]["target"] == target
    assert ok[0]["url"].startswith("http://%s." % node.identity)
    assert paired[0]["kind"] == "data"


def test_text_lines_have_no_fields(sluice, tcp_upstream):
    up = tcp_upstream(handler_echo)
    s = sluice({"routes": {"echo": route("tcp", up.port)}},
               global_args=["-L", "debug"])
    c = connect(s.port("echo"))
    c.close()
    line = wait_for(lambda: [x for x in s.proc.stderr().splitlines()
                             if "accepted" in x], 10)[0]
    assert " route=" not in line and "{" not in line, line
