"""The config file's hub: and node: sections (issue 14): they set the
options of `boot up --proxy` and `--bridge` by the flags' names without
the dashes, a flag on the command line wins over the file, `--no-routes`
takes the sections without the routes, and `sluice config check`
validates them with errors naming the section, the field and the line,
and never shows a secret's value."""

import json
import os
import re
import socket

from helpers import Proc, connect, free_port, handler_echo, route, \
    sluice_bin, to_yaml, wait_for
from test_boot_roles import cli
from tunnel_x_support import BRIDGE_RE, HUB_RE, Role, curl_via


class Booted(Role):
    """`sluice boot up ARGS` waiting for the stdout lines it names."""

    def __init__(self, workdir, name, args, want):
        self.proc = Proc([sluice_bin(), "boot", "up"] + list(args),
                         str(workdir), name)
        self.pid = self.proc.pid

        def ready():
            if not self.proc.alive():
                raise AssertionError("exited early:\n" + self.proc.describe())
            out = self.proc.stdout()
            return out if all(w.search(out) for w in want) else None
        self.out = wait_for(ready, 30, what="the listening lines")


def write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else to_yaml(doc))
    return str(p)


def test_hub_section_sets_the_hub_and_a_flag_wins(env, tmp_path):
    port, api, flag_port = free_port(), free_port(), free_port()
    state = str(tmp_path / "from-file")
    cfg = write(tmp_path, "hub.yaml", {"hub": {
        "http": "127.0.0.1:%d" % port,
        "api": "127.0.0.1:%d" % api,
        "domain": "file.test",
        "state-dir": state,
        "max_pairs": 7,                 # underscores stand for dashes
        "cookie-isolation": False,
    }})
    h = Booted(tmp_path, "hub", ["--proxy", "--config", cfg], [HUB_RE])
    env.hubs.append(h)
    m = HUB_RE.search(h.out)
    assert (m.group(2), m.group(3)) == (str(port), "file.test"), h.out
    # state-dir from the file: hub.json names this process and its API
    with open(os.path.join(state, "hub.json")) as f:
        info = json.load(f)
    assert info["pid"] == h.pid and info["api"].endswith(":%d" % api)
    assert "7 requests" in h.proc.stderr()  # the caps line: max-pairs
    h.stop()

    # The same file with flags: the flags win, the rest still comes from
    # the file.
    h2 = Booted(tmp_path, "hub2", ["--proxy", "--config", cfg, "--http",
                                   "127.0.0.1:%d" % flag_port,
                                   "--domain", "flag.test"], [HUB_RE])
    env.hubs.append(h2)
    m = HUB_RE.search(h2.out)
    assert (m.group(2), m.group(3)) == (str(flag_port), "flag.test"), h2.out
    assert "7 requests" in h2.proc.stderr()


def test_node_section_with_the_hub_in_one_process(env, tmp_path,
                                                  tcp_upstream):
    up = env.hash_upstream("sections")
    echo = tcp_upstream(handler_echo)
    port, api, node_api = free_port(), free_port(), free_port()
    cfg = write(tmp_path, "both.yaml", {
        "hub": {"http": "127.0.0.1:%d" % port, "api": "127.0.0.1:%d" % api,
                "token": "from-file"},
        # api in node: is the node's API, though --api is the hub's here
        "node": {"upstream": up.url, "api": "127.0.0.1:%d" % node_api,
                 "token": "from-file", "pool": 1},
        "routes": {"echo": route("tcp", echo.port)},
    })
    state = str(tmp_path / "state")
    c = Booted(tmp_path, "both", ["--proxy", "--bridge", "--config", cfg,
                                  "--state-dir", state], [HUB_RE, BRIDGE_RE])
    env.hubs.append(c)
    identity = BRIDGE_RE.search(c.out).group(1)

    class Ports:
        pass
    p = Ports()
    p.port, p.domain = port, "localhost"
    r = curl_via(p, identity, "/y", "-w", "\n%{http_code}")
    body, code = r.stdout.rsplit("\n", 1)
    assert code == "200" and body == "sections /y", r.stdout
    rc, out, err = cli("bridge", "list", "--json", "--api",
                       "127.0.0.1:%d" % node_api)
    assert rc == 0 and json.loads(out)[0]["identity"] == identity, err
    rc, out, err = cli("proxy", "list", "--json", "--api",
                       "127.0.0.1:%d" % api)
    assert rc == 0 and json.loads(out)[0]["identity"] == identity, err
    # the routes of the same file run too
    assert "listening echo tcp" in c.out
    with connect(int(c.out.split("listening echo tcp 127.0.0.1:")[1]
                     .split()[0])) as s:
        s.sendall(b"hi")
        assert s.recv(2) == b"hi"


def test_no_routes_takes_the_sections_only(env, tmp_path, tcp_upstream):
    echo = tcp_upstream(handler_echo)
    port = free_port()
    cfg = write(tmp_path, "nr.yaml", {
        "hub": {"http": "127.0.0.1:%d" % port,
                "api": "127.0.0.1:%d" % free_port()},
        "routes": {"echo": route("tcp", echo.port)},
    })
    h = Booted(tmp_path, "nr", ["--proxy", "--no-routes", "--config", cfg,
                                "--state-dir", str(tmp_path / "s")],
               [HUB_RE])
    env.hubs.append(h)
    assert HUB_RE.search(h.out).group(2) == str(port)
    assert "listening echo" not in h.out
    rc, out, err = cli("boot", "up", "--no-routes", "--config", cfg)
    assert rc == 2 and "--no-routes needs --proxy or --bridge" in err


def test_sections_apply_to_the_roles_run_only(env, tmp_path, tcp_upstream):
    """Without --proxy the hub: section configures no hub: a file whose
    hub: names a port already taken still runs its routes alone."""
    echo = tcp_upstream(handler_echo)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cfg = write(tmp_path, "r.yaml", {
            "hub": {"http": "127.0.0.1:%d" % busy.getsockname()[1]},
            "routes": {"echo": route("tcp", echo.port)},
        })
        r = Booted(tmp_path, "routes", ["--config", cfg],
                   [re.compile(r"^listening echo ", re.M)])
        env.hubs.append(r)
        assert "hub listening" not in r.out


def test_config_check_names_the_field_and_hides_secrets(tmp_path):
    ok = write(tmp_path, "ok.yaml", {
        "hub": {"http": "127.0.0.1:8080", "api-token": "sup3r-s3cret",
                "tls-cert": ["a.pem", "b.pem"], "tls-key": ["a.key",
                                                            "b.key"]},
        "node": {"hub": "https://hub.example.com", "allow": "cidr:10.0.0.0/8",
                 "password": "hunter2-hunter2"},
    })
    rc, out, err = cli("config", "check", ok)
    assert rc == 0, err
    assert "hub: 4 settings for boot up --proxy: http, api-token, " \
        "tls-cert, tls-key" in out
    assert "node: 3 settings for boot up --bridge: hub, allow, password" \
        in out
    assert "sup3r" not in out and "hunter2" not in out

    cases = [
        ("hub:\n  max-pairs: lots\n",
         'hub: field "max-pairs": "lots" is not a whole number (line 2'),
        ("node:\n  pool: 99\n",
         'node: field "pool": "99" is not a whole number 0-16 (line 2'),
        ("hub:\n  htpp: 127.0.0.1:1\n",
         'hub: unknown field "htpp" (line 2): boot up --proxy has no option '
         '--htpp'),
        ("hub:\n  HTTP: 127.0.0.1:1\n",
         'hub: "HTTP" is not an option name; accepted fields (the --proxy '
         'options without the dashes): http, https,'),
        # a role's option the config layer does not list is still checked
        # by the role itself
        ("hub:\n  pairing-window-ms: soon\n",
         'hub: field "pairing-window-ms" (line 2): refused as the line '
         'above says'),
        ("hub:\n  http: localhost:80\n",
         'hub: field "http": "localhost:80" is not IP:PORT'),
        ("node:\n  hub: ftp://x\n", 'node: field "hub": "ftp://x" is not '
         'http://HOST[:PORT] or https://HOST[:PORT]'),
        ("node:\n  allow: [\"ip:300.1.1.1\"]\n",
         'node: field "allow": bad acl rule "ip:300.1.1.1"'),
        ("hub:\n  token: a\n  gateway_token: b\n",
         'hub: field "gateway_token": sets what "token" above sets (line 3'),
        ("hub:\n  https-redirect: perhaps\n",
         'hub: field "https-redirect": "perhaps" is not true or false'),
        ("hub:\n  domain:\n", 'hub: field "domain": has no value'),
        ("node:\n  proxy-protocol: v3\n",
         'node: field "proxy-protocol": "v3" is not one of v1, v2'),
        ("hub: [1, 2]\n", "hub: expected a mapping of hub options, got a "
         "list"),
    ]
    for i, (doc, want) in enumerate(cases):
        path = write(tmp_path, "bad%d.yaml" % i, doc)
        rc, out, err = cli("config", "check", path)
        assert rc == 1 and want in err, (doc, err)
    # A secret's bad value is never echoed.
    path = write(tmp_path, "secret.yaml",
                 'node:\n  password: "hunter2\\u0001"\n')
    rc, out, err = cli("config", "check", path)
    assert rc == 1 and 'node: field "password": the value is not one line ' \
        'of text (not shown: a secret)' in err and "hunter2" not in err, err


def test_boot_refuses_a_bad_section_before_starting(tmp_path):
    path = write(tmp_path, "bad.yaml", "hub:\n  max-pairs: -1\n")
    rc, out, err = cli("boot", "up", "--proxy", "--config", path,
                       "--state-dir", str(tmp_path / "s"))
    assert rc == 1 and 'hub: field "max-pairs": "-1"' in err, err
    assert not os.path.exists(str(tmp_path / "s" / "hub.pid"))
    # Two state directories for one process are refused by name.
    path = write(tmp_path, "dirs.yaml", {"hub": {"state-dir": "/tmp/a"},
                                         "node": {"state-dir": "/tmp/b"}})
    rc, out, err = cli("boot", "up", "--proxy", "--bridge", "--config", path)
    assert rc == 2 and "name two state directories" in err, err
