"""Options before or after the command word (issue 14): `sluice bridge
list --state-dir D` works as `sluice bridge --state-dir D list` and as
`sluice proxy list --state-dir D`; the shared options (--log-level,
--log-format) may follow the command; `boot status` takes its options on
either side of the subcommand."""

import json

from test_boot_roles import cli


def test_bridge_options_after_the_command(env, http_server):
    up = http_server(files={"index.html": b"hi"})
    hub = env.hub()
    node = env.node(hub, "http://127.0.0.1:%d" % up.port)
    d = node.state_dir
    outs = []
    for args in (["bridge", "list", "--state-dir", d, "--json"],
                 ["bridge", "--state-dir", d, "list", "--json"],
                 ["bridge", "list", "--json", "--state-dir=" + d],
                 ["bridge", "list", "--api", "127.0.0.1:%d" % node.api_port,
                  "--json"],
                 ["-L", "error", "bridge", "list", "--state-dir", d,
                  "--json"],
                 ["bridge", "list", "--state-dir", d, "--json",
                  "--log-level", "error"]):
        rc, out, err = cli(*args)
        assert rc == 0, (args, err)
        outs.append([b["identity"] for b in json.loads(out)])
    assert all(o == [node.identity] for o in outs), outs
    # The hub's side has always taken them after the command: the same.
    rc, out, err = cli("proxy", "list", "--state-dir", hub.state_dir,
                       "--json")
    assert rc == 0, err
    assert [p["identity"] for p in json.loads(out)] == [node.identity]


def test_bridge_command_values_are_not_options(env, http_server):
    """A value of the command's own option is never taken for one of the
    connection options: `--token --api` is a token named --api."""
    up = http_server(files={"index.html": b"hi"})
    hub = env.hub()
    node = env.node(hub, "http://127.0.0.1:%d" % up.port)
    rc, out, err = cli("bridge", "create", "http://127.0.0.1:1",
                       hub.url, "--token", "--api", "--state-dir",
                       node.state_dir, timeout=60)
    assert rc == 0, err
    rc, out, err = cli("bridge", "list", "--json", "--state-dir",
                       node.state_dir)
    assert rc == 0, err
    assert "http://127.0.0.1:1" in [b["upstream"] for b in json.loads(out)]


def test_bridge_unknown_option_before_the_command(tmp_path):
    rc, out, err = cli("bridge", "--bogus", "list")
    assert rc == 2
    assert "unknown option '--bogus'" in err
    rc, out, err = cli("bridge", "--state-dir", str(tmp_path))
    assert rc == 2 and "usage: sluice bridge" in err


def test_shared_options_after_the_command(tmp_path):
    rc, out, err = cli("version", "--log-level", "debug")
    assert rc == 0 and out.startswith("sluice ")
    rc, out, err = cli("version", "--log-format=yaml")
    assert rc == 2 and "--log-format: 'yaml'" in err
    rc, out, err = cli("boot", "status", "--state-dir", str(tmp_path), "-L",
                       "error")
    assert rc == 3 and "not running" in out, err  # 3: not running (LSB)
    rc2, out2, err2 = cli("boot", "--state-dir", str(tmp_path), "status")
    assert (rc2, out2) == (rc, out), err2


def test_log_options_after_boot_up(env, http_server):
    """`sluice boot up --proxy ... --log-format json -L debug` logs JSON
    at debug level, as with the options before the command."""
    up = http_server(files={"index.html": b"hi"})
    hub = env.hub(args=["--log-format", "json", "-L", "debug"])
    env.node(hub, "http://127.0.0.1:%d" % up.port)
    lines = [json.loads(x) for x in hub.proc.stderr().splitlines()
             if x.startswith("{")]
    assert lines, hub.proc.stderr()[-2000:]
    assert any(x["level"] == "debug" for x in lines), lines[:20]
