"""Real peers started on free loopback ports: sshd, nginx (or Python's
http.server), dnsmasq, iperf3 and HAProxy; and sluice itself.

Each starts in its own process group with its output in files under the
test's tmp_path, waits until it listens (reading /proc/net, so no probe
connection disturbs it) and is ended by stop(). The bench script uses them
too, so they do not depend on pytest except for skipping when a binary is
missing.
"""

import getpass
import os
import shutil
import signal
import subprocess

from helpers import (Proc, find_binary, free_port, parse_listening,
                     require_binary, sanitizer_report, scaled, sluice_bin,
                     start_nginx, tcp_listening, to_yaml, udp_bound,
                     wait_for)


def _wait_up(proc, cond, timeout, what):
    def ready():
        if not proc.alive():
            raise AssertionError("%s exited while starting:\n%s"
                                 % (what, proc.describe()))
        return cond()
    wait_for(ready, timeout, what=what)


class Peer:
    proc = None

    def stop(self):
        if self.proc is not None:
            self.proc.kill_group()


# ------------------------------------------------------------------ sluice

class Sluice:
    """`sluice boot up --config FILE`. The routes it reports on stdout are
    in .routes (name -> RouteInfo)."""

    def __init__(self, workdir, config, name="sluice", global_args=(),
                 args=(), nroutes=None, env=None, preexec_fn=None,
                 binary=None, wait=True):
        self.workdir = str(workdir)
        self.config_path = os.path.join(self.workdir, name + ".yaml")
        with open(self.config_path, "w") as f:
            f.write(config if isinstance(config, str) else to_yaml(config))
        if nroutes is None and isinstance(config, dict):
            nroutes = len(config.get("routes", {}))
        self.nroutes = nroutes or 0
        self.binary = binary or sluice_bin()
        argv = ([self.binary] + list(global_args) +
                ["boot", "up", "--config", self.config_path] + list(args))
        self.proc = Proc(argv, self.workdir, name, env=env,
                         preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self.routes = {}
        self.exit_code = None
        self.stopped = False
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=15):
        def ready():
            if not self.proc.alive():
                raise AssertionError("sluice exited (code %s) before "
                                     "listening:\n%s" % (
                                         self.proc.popen.returncode,
                                         self.proc.describe()))
            routes = parse_listening(self.proc.stdout())
            return routes if len(routes) >= self.nroutes else None
        self.routes = wait_for(ready, timeout, what="sluice listening lines")
        return self.routes

    def port(self, name):
        return self.routes[name].port

    def stderr(self):
        return self.proc.stderr()

    def stdout(self):
        return self.proc.stdout()

    def alive(self):
        return self.proc.alive()

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig and waits (bounded) for the exit. Returns the exit code
        (None if it did not exit in time; then the group is killed)."""
        self.stopped = True
        self.proc.signal(sig)
        rc = self.proc.wait(timeout)
        if rc is None:
            self.proc.kill_group()
        self.exit_code = rc
        return rc

    def problems(self):
        """What teardown must fail on: a non-zero (or missing) exit code or
        a sanitizer report. Stops the process if it still runs."""
        out = []
        if not self.stopped:
            if self.proc.alive():
                rc = self.stop()
                if rc is None:
                    out.append("sluice did not exit within %.0fs of SIGTERM"
                               % scaled(15))
                elif rc != 0:
                    out.append("sluice exited with code %d after SIGTERM"
                               % rc)
            else:
                self.stopped = True
                self.exit_code = self.proc.popen.returncode
                out.append("sluice died during the test with code %d"
                           % self.exit_code)
        else:
            # the test stopped it: the exit code must still be 0
            rc = self.proc.popen.poll()
            if rc is not None and rc != 0:
                out.append("sluice exited with code %d" % rc)
        self.proc.kill_group()
        report = sanitizer_report(self.proc.stderr())
        if report:
            out.append("sanitizer report in sluice's stderr:\n" + report)
        return out


def run_sluice(args, timeout=20, input=None):
    """Runs sluice to completion (config check, version, ...). Returns the
    CompletedProcess; fails on a sanitizer report."""
    cp = subprocess.run([sluice_bin()] + list(args), capture_output=True,
                        timeout=scaled(timeout), input=input,
                        stdin=None if input is not None else
                        subprocess.DEVNULL)
    cp.stdout = cp.stdout.decode("utf-8", "replace")
    cp.stderr = cp.stderr.decode("utf-8", "replace")
    report = sanitizer_report(cp.stderr)
    assert report is None, "sanitizer report:\n" + report
    return cp


# -------------------------------------------------------------------- sshd

class Sshd(Peer):
    def __init__(self, workdir):
        self.sshd = require_binary("/usr/sbin/sshd")
        self.ssh = require_binary("ssh")
        keygen = require_binary("ssh-keygen")
        self.user = getpass.getuser()
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        d = os.path.join(str(workdir), "sshd")
        os.makedirs(d, exist_ok=True)
        self.host_key = os.path.join(d, "host_key")
        self.user_key = os.path.join(d, "user_key")
        for key in (self.host_key, self.user_key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f",
                            key], check=True, timeout=scaled(20),
                           stdin=subprocess.DEVNULL)
        auth = os.path.join(d, "authorized_keys")
        shutil.copy(self.user_key + ".pub", auth)
        self.port = free_port()
        cfg = os.path.join(d, "sshd_config")
        with open(cfg, "w") as f:
            f.write("\n".join([
                "Port %d" % self.port,
                "ListenAddress 127.0.0.1",
                "HostKey %s" % self.host_key,
                "AuthorizedKeysFile %s" % auth,
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PidFile none",
                "LogLevel VERBOSE",
                ""]))
        subprocess.run([self.sshd, "-t", "-f", cfg], check=True,
                       timeout=scaled(20), capture_output=True)
        self.proc = Proc([self.sshd, "-D", "-e", "-f", cfg], d, "sshd")
        _wait_up(self.proc, lambda: tcp_listening(self.port), 15, "sshd")

    def ssh_argv(self, port, *command):
        return [self.ssh, "-F", "/dev/null", "-p", str(port),
                "-i", self.user_key, "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=%d" % max(1, int(scaled(10))),
                "-o", "LogLevel=ERROR",
                "%s@127.0.0.1" % self.user] + list(command)


# ------------------------------------------------------------- HTTP server

class HttpServer(Peer):
    """nginx serving files from .root (falls back to Python's http.server
    when nginx is not installed)."""

    def __init__(self, workdir, files=None, workers=1):
        d = os.path.join(str(workdir), "http")
        self.root = os.path.join(d, "www")
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        os.makedirs(self.root, exist_ok=True)
        for name, data in (files or {}).items():
            with open(os.path.join(self.root, name), "wb") as f:
                f.write(data)
        self.port = free_port()
        nginx = find_binary("nginx")
        if not nginx and os.environ.get("CI") == "true":
            require_binary("nginx")  # no silent stand-in in CI
        if nginx:
            self.kind = "nginx"
            self.proc = start_nginx(nginx, d, "nginx", self.port,
                                    "    root %s;" % self.root,
                                    workers=workers, connections=8192,
                                    bulk=True)
        else:
            self.kind = "python"
            self.proc = Proc(["/usr/bin/python3", "-m", "http.server",
                              "--bind", "127.0.0.1", "--directory",
                              self.root, str(self.port)], d, "httpd")
        _wait_up(self.proc, lambda: tcp_listening(self.port), 15,
                 "HTTP server")


# ----------------------------------------------------------------- dnsmasq

class Dnsmasq(Peer):
    ANSWER = "10.1.2.3"

    def __init__(self, workdir):
        binary = require_binary("dnsmasq")
        d = os.path.join(str(workdir), "dnsmasq")
        os.makedirs(d, exist_ok=True)
        self.port = free_port(both=True)
        argv = [binary, "-k", "-p", str(self.port),
                "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", "-C", "/dev/null",
                "--address=/test.local/%s" % self.ANSWER,
                "--log-facility=-", "--log-queries",
                "--pid-file=%s/dnsmasq.pid" % d]
        if os.geteuid() == 0:
            argv.append("--user=root")
        self.proc = Proc(argv, d, "dnsmasq")
        _wait_up(self.proc, lambda: udp_bound(self.port), 15, "dnsmasq")

    def log(self):
        return self.proc.stderr() + self.proc.stdout()


# ------------------------------------------------------------------ iperf3

class Iperf3Server(Peer):
    def __init__(self, workdir, name="iperf3"):
        binary = require_binary("iperf3")
        d = os.path.join(str(workdir), name)
        os.makedirs(d, exist_ok=True)
        self.port = free_port()
        self.proc = Proc([binary, "-s", "-p", str(self.port), "-B",
                          "127.0.0.1"], d, name)
        _wait_up(self.proc, lambda: tcp_listening(self.port), 15, "iperf3")


# ----------------------------------------------------------------- HAProxy

class Haproxy(Peer):
    """HAProxy in TCP mode from a free port to target_port, logging each
    connection to stdout (option tcplog). accept_proxy makes it expect a
    PROXY header (v1 or v2) from its clients."""

    def __init__(self, workdir, target_port, accept_proxy=False,
                 name="haproxy", maxconn=4096, nbthread=None, options=()):
        binary = require_binary("haproxy")
        d = os.path.join(str(workdir), name)
        os.makedirs(d, exist_ok=True)
        self.port = free_port()
        cfg = os.path.join(d, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("""global
  log stdout format raw local0
  maxconn %d
%s
defaults
  mode tcp
  log global
  option tcplog
  timeout connect 5s
  timeout client 60s
  timeout server 60s
%s
frontend fe
  bind 127.0.0.1:%d%s
  maxconn %d
  default_backend be

backend be
  server s1 127.0.0.1:%d maxconn %d
""" % (maxconn, "  nbthread %d" % nbthread if nbthread else "",
                "".join("  %s\n" % o for o in options),
                self.port, " accept-proxy" if accept_proxy else "",
                maxconn, target_port, maxconn))
        self.proc = Proc([binary, "-db", "-f", cfg], d, name)
        _wait_up(self.proc, lambda: tcp_listening(self.port), 15, "haproxy")

    def log(self):
        return self.proc.stdout()
