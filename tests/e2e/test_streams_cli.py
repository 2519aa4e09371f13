"""The command line around stream routes: help, version, log formats,
`config check` and `boot up` with good and bad configuration files."""

import json
import os
import re

import pytest

from helpers import (connect, handler_echo, recv_exact, route, scaled,
                     sluice_bin, to_yaml, sanitizer_report)
from peers import run_sluice


def test_help_lists_commands():
    cp = run_sluice(["--help"])
    assert cp.returncode == 0, cp.stderr
    assert "usage" in cp.stdout.lower()
    for word in ("boot up", "config check", "--log-level", "--log-format"):
        assert word in cp.stdout, word


def test_version_prints_semver():
    cp = run_sluice(["version"])
    assert cp.returncode == 0, cp.stderr
    assert re.match(r"^sluice \d+\.\d+\.\d+", cp.stdout), cp.stdout


def test_unknown_command_and_bad_log_level_fail():
    # a usage error is exit code 2 (an abort would be 134 or a signal)
    cp = run_sluice(["frobnicate"])
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert "sluice: unknown command 'frobnicate'" in cp.stderr, cp.stderr
    assert cp.stdout == "", cp.stdout
    cp = run_sluice(["--log-level=loud", "version"])
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert "'loud' is not one of error, warn, info, debug, trace" in \
        cp.stderr, cp.stderr
    assert cp.stdout == "", cp.stdout


def test_config_check_ok(tmp_path):
    cfg = {"routes": {
        "ssh": route("tcp", 22, listen_port=2222),
        "dns": route("udp", 53, udp_idle_timeout="30s",
                     udp_sweep_interval="5s"),
        "web": route("tcp4", 8080, acl={"allow": ["cidr:127.0.0.0/8"],
                                        "deny": ["ip:127.0.0.9"]},
                     proxy_protocol="mixed",
                     proxy_protocol_trusted=["127.0.0.1/32"],
                     relay_proxy_protocol_header=True, max_connections=10,
                     connect_timeout="5s"),
    }}
    path = tmp_path / "routes.yaml"
    path.write_text(to_yaml(cfg))
    cp = run_sluice(["config", "check", str(path)])
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.splitlines()[0] == "%s: ok (3 routes)" % path


# (field, value, words the error must contain besides route/field/value)
BAD_FIELDS = [
    ("scheme", "tcp5", ["tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"]),
    ("port", "abc", ["2222:22"]),
    ("port", "70000:22", []),
    ("port", "22:0", []),
    ("proxy_protocol", "sometimes", ["disabled", "mixed", "required"]),
    ("connect_timeout", "10parsecs", ["10s"]),
    ("udp_idle_timeout", "-5s", []),
    ("max_connections", "-3", []),
    ("relay_proxy_protocol_header", "maybe", ["true", "false"]),
    ("bind", "notanip", []),
]


def _bad_config(tmp_path, field, value, name="bad-route"):
    r = route("tcp", 8080)
    r[field] = value
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml({"routes": {name: r}}))
    return path


def _assert_names(msg, name, field, value, words):
    assert name in msg, msg
    assert field in msg, msg
    assert value in msg, msg
    for w in words:
        assert w in msg, "%r missing from %r" % (w, msg)


@pytest.mark.parametrize("field,value,words", BAD_FIELDS,
                         ids=["%s=%s" % (f, v) for f, v, _ in BAD_FIELDS])
def test_config_check_names_bad_field(tmp_path, field, value, words):
    path = _bad_config(tmp_path, field, value)
    cp = run_sluice(["config", "check", str(path)])
    assert cp.returncode == 1, cp.stdout + cp.stderr
    lines = [ln for ln in (cp.stdout + cp.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    _assert_names(lines[0], "bad-route", field, value, words)


@pytest.mark.parametrize("acl,value", [
    ({"allow": ["host:1.2.3.4"]}, "host:1.2.3.4"),
    ({"deny": ["cidr:10.0.0.0/33"]}, "cidr:10.0.0.0/33"),
    ({"deny": ["ip:300.1.1.1"]}, "ip:300.1.1.1"),
], ids=["unknown-kind", "bad-prefix", "bad-ip"])
def test_config_check_names_bad_acl_rule(tmp_path, acl, value):
    path = _bad_config(tmp_path, "acl", acl)
    cp = run_sluice(["config", "check", str(path)])
    assert cp.returncode == 1, cp.stdout + cp.stderr
    msg = (cp.stdout + cp.stderr).strip()
    _assert_names(msg, "bad-route", "acl", value, ["ip:", "cidr:"])


def test_config_check_missing_file_and_yaml_syntax(tmp_path):
    missing = tmp_path / "nope.yaml"
    cp = run_sluice(["config", "check", str(missing)])
    assert cp.returncode == 1, (cp.returncode, cp.stderr)
    assert "%s: cannot open: No such file or directory" % missing in \
        cp.stdout + cp.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("routes:\n  a: [unclosed\n")
    cp = run_sluice(["config", "check", str(broken)])
    assert cp.returncode == 1, (cp.returncode, cp.stderr)
    assert "%s: YAML syntax error at line 3" % broken in \
        cp.stdout + cp.stderr


@pytest.mark.parametrize("field,value", [("scheme", "sctp"),
                                         ("port", "0:99999"),
                                         ("proxy_protocol", "always")])
def test_boot_up_refuses_bad_config(tmp_path, field, value):
    path = _bad_config(tmp_path, field, value)
    cp = run_sluice(["boot", "up", "--config", str(path)], timeout=20)
    assert cp.returncode == 1, (cp.returncode, cp.stderr)
    assert "listening" not in cp.stdout
    _assert_names(cp.stderr, "bad-route", field, value, [])


def test_boot_up_port_in_use_fails_cleanly(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        path = tmp_path / "busy.yaml"
        path.write_text(to_yaml({"routes": {
            "taken": route("tcp", 9, listen_port=port)}}))
        cp = run_sluice(["boot", "up", "--config", str(path)], timeout=20)
    assert cp.returncode == 1, (cp.returncode, cp.stderr)
    assert "listening" not in cp.stdout
    assert ('route "taken": cannot listen on tcp 127.0.0.1:%d: address '
            'already in use' % port) in cp.stderr, cp.stderr


def test_log_format_json_lines_parse(tmp_path, sluice, tcp_upstream):
    up = tcp_upstream(handler_echo)
    s = sluice({"routes": {"echo": route("tcp", up.port)}},
               global_args=["--log-format=json", "-L", "debug"])
    with connect(s.port("echo")) as c:
        c.sendall(b"ping")
        assert recv_exact(c, 4) == b"ping"
    assert s.stop() == 0
    lines = [ln for ln in s.stderr().splitlines() if ln.strip()]
    assert lines, "no log lines at debug level"
    levels = set()
    for ln in lines:
        obj = json.loads(ln)
        assert isinstance(obj, dict)
        assert {"time", "level", "msg"} <= set(obj), obj
        levels.add(obj["level"])
    assert "debug" in levels, levels
    assert any("echo" in json.loads(ln)["msg"] for ln in lines), \
        "no log line names the route"


def test_log_level_filters(tmp_path, sluice, tcp_upstream):
    up = tcp_upstream(handler_echo)
    quiet = sluice({"routes": {"echo": route("tcp", up.port)}},
                   global_args=["--log-level=error"])
    loud = sluice({"routes": {"echo": route("tcp", up.port)}},
                  global_args=["--log-level=debug"])
    for s in (quiet, loud):
        with connect(s.port("echo")) as c:
            c.sendall(b"x")
            assert recv_exact(c, 1) == b"x"
        assert s.stop() == 0
    assert " debug " in loud.stderr()
    assert " debug " not in quiet.stderr()
    assert " info " not in quiet.stderr()


def test_sanitizer_marks_detected_in_helper():
    # guards the teardown check itself
    assert sanitizer_report("==1==ERROR: AddressSanitizer: heap-use")
    assert sanitizer_report("x.c:3:5: runtime error: signed overflow")
    assert sanitizer_report("all good") is None
    assert scaled(1) > 0 and os.path.isabs(sluice_bin())
