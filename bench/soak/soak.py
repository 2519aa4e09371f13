"""The soak: a real hub, a real bridge node and nginx under mixed load for
a chosen time, with the hub's and the node's memory and descriptors
sampled all along. bench/soak/run (30 minutes, release build) and
tests/e2e/test_soak.py (2 minutes, the suite's binary) both run soak().

Load, all of it through the hub to the main node's identity unless said:
  - wrk -t1 -c16 on a 1 KiB page, in bursts of at most 30 s (each burst's
    requests, non-2xx and socket errors are counted);
  - large transfers: curl downloads a --large-mb file and uploads one
    (nginx WebDAV PUT), each checked by SHA-256;
  - bridges connecting and leaving: extra `sluice boot up --bridge`
    processes, each on one of a few state directories (so each comes back
    with the same identity instead of piling up allocations), serve one
    request and are stopped, by SIGTERM or SIGKILL in turn;
  - users that vanish mid-request: raw sockets that close (FIN, or RST
    through SO_LINGER 0) half-way through a response body, half-way
    through an upload body, or half-way through a request head.

Judged, after the load stops:
  - RSS of the hub and of the node: the median of the last minute of load
    against the median of the first minute after warm-up (the first 20% of
    the load) must grow less than rss_limit (a fraction);
  - descriptors (entries of /proc/PID/fd) of each must come back to at
    most their count before the load, within a bounded wait;
  - every transfer's SHA-256 and every bridge's request must be right, no
    wrk response may be other than 2xx, and every sluice process stopped
    by SIGTERM must exit 0 with no sanitizer report.
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from helpers import free_port, scaled, start_nginx  # noqa: E402
from helpers import tcp_listening  # noqa: E402
from helpers import wait_for  # noqa: E402
from tunnel_x_support import Hub, Node  # noqa: E402

SMALL = b"s" * 1024
CSV_FIELDS = ("t_s", "phase", "hub_rss_kib", "hub_fds", "node_rss_kib",
              "node_fds", "wrk_requests", "transfers", "bridge_cycles",
              "vanished")


def log(msg):
    print("soak: " + msg, file=sys.stderr, flush=True)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Nginx:
    """nginx with one worker: GET from its root, PUT under /up/ (WebDAV)."""

    def __init__(self, workdir, large_mb):
        d = os.path.join(workdir, "nginx")
        self.root = os.path.join(d, "www")
        os.makedirs(os.path.join(self.root, "up"), exist_ok=True)
        with open(os.path.join(self.root, "small.txt"), "wb") as f:
            f.write(SMALL)
        self.large = os.path.join(self.root, "large.bin")
        h = hashlib.sha256()
        block = os.urandom(1 << 20)
        with open(self.large, "wb") as f:
            for i in range(large_mb):
                # each MiB differs, so a block sent twice or out of order
                # changes the hash
                b = struct.pack("!I", i) + block[4:]
                f.write(b)
                h.update(b)
        self.large_sha = h.hexdigest()
        self.large_size = large_mb << 20
        self.port = free_port()
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = start_nginx(nginx, d, "nginx", self.port, """\
    root %s;
    location /up/ {
      dav_methods PUT DELETE;
      client_max_body_size 0;
    }""" % self.root, connections=4096, error_level="error", bulk=True)
        wait_for(lambda: tcp_listening(self.port), 15, what="nginx")
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.kill_group()


class Stats:
    """Counters the load threads share, and the failures they saw."""

    def __init__(self):
        self.lock = threading.Lock()
        self.n = {"wrk_requests": 0, "wrk_non2xx": 0, "wrk_socket_errors": 0,
                  "transfers": 0, "bridge_cycles": 0, "vanished": 0}
        self.failures = []
        self.notes = []

    def add(self, key, v=1):
        with self.lock:
            self.n[key] += v

    def fail(self, msg):
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(msg)
        log("FAILURE " + msg)

    def get(self, key):
        with self.lock:
            return self.n[key]


class Soak:
    def __init__(self, workdir, binary, minutes, interval, large_mb,
                 env=None, churn_slots=3, wrk_conns=16, csv_path=None):
        self.workdir = str(workdir)
        self.binary = binary
        self.load_s = minutes * 60.0
        self.interval = interval
        self.large_mb = large_mb
        self.env = env
        self.churn_slots = churn_slots
        self.wrk_conns = wrk_conns
        self.csv_path = csv_path or os.path.join(self.workdir, "soak.csv")
        self.stats = Stats()
        self.stop_load = threading.Event()
        self.rows = []
        self.problems = []
        self.hub = self.node = self.nginx = None
        self.t0 = None

    # ------------------------------------------------------------ set-up

    def start(self):
        self.nginx = Nginx(self.workdir, self.large_mb)
        self.hub = Hub(self.workdir, name="hub", binary=self.binary,
                       env=self.env)
        self.node = Node(self.workdir, self.hub, self.nginx.url, name="node",
                         binary=self.binary, env=self.env)
        self.host = "%s.%s" % (self.node.identity, self.hub.domain)
        self.base = "http://%s:%d" % (self.host, self.hub.port)
        self.resolve = "%s:%d:127.0.0.1" % (self.host, self.hub.port)
        # Each churn slot is started once here, so its allocation (an
        # scrypt hash and a row) is made before the baseline, not during
        # the measured minutes.
        for slot in range(self.churn_slots):
            self.bridge_cycle(slot, signal.SIGTERM)
        self.check_small(self.base, self.resolve, "set-up")

    def settle_baseline(self):
        """Descriptor counts once they hold still for 2 s (the node refills
        its pool after set-up): the baseline they must come back to."""
        last = None
        steady_since = time.monotonic()

        def steady():
            nonlocal last, steady_since
            now = (fd_count(self.hub.pid), fd_count(self.node.pid))
            if now != last:
                last, steady_since = now, time.monotonic()
                return None
            return now if time.monotonic() - steady_since >= 2 else None
        return wait_for(steady, 30, interval=0.2,
                        what="steady descriptor counts before the load")

    # ------------------------------------------------------------- load

    def curl(self, *args, timeout=120):
        return subprocess.run(
            ["curl", "-sS", "--max-time", str(int(scaled(timeout)))] +
            [str(a) for a in args], capture_output=True,
            timeout=scaled(timeout) + 10, stdin=subprocess.DEVNULL)

    def check_small(self, base, resolve, what):
        cp = self.curl("--fail", "--resolve", resolve, base + "/small.txt",
                       timeout=30)
        if cp.returncode != 0 or cp.stdout != SMALL:
            self.stats.fail("%s: GET /small.txt gave curl %d, %d bytes: %s"
                            % (what, cp.returncode, len(cp.stdout),
                               cp.stderr.decode("utf-8", "replace")[:200]))
            return False
        return True

    def loop_wrk(self):
        while not self.stop_load.is_set():
            left = self.load_s - (time.monotonic() - self.t0)
            if left < 1:
                break
            secs = int(min(30, left))
            cp = subprocess.run(
                ["wrk", "-t1", "-c%d" % self.wrk_conns, "-d%ds" % secs,
                 "--timeout", "10s", "-H", "Host: %s:%d" % (self.host,
                                                             self.hub.port),
                 "http://127.0.0.1:%d/small.txt" % self.hub.port],
                capture_output=True, text=True, timeout=scaled(secs + 60),
                stdin=subprocess.DEVNULL)
            out = cp.stdout
            m = re.search(r"(\d+) requests in \S+, ([\d.]+)([KMGT]?B) read",
                          out)
            if cp.returncode != 0 or not m:
                self.stats.fail("wrk failed (%d): %s %s" % (
                    cp.returncode, out[-300:], cp.stderr[-300:]))
                continue
            n = int(m.group(1))
            self.stats.add("wrk_requests", n)
            # wrk counts a response by its status line alone: the bytes
            # read show that the pages themselves came (less 1% for
            # wrk's rounding of the figure)
            read = float(m.group(2)) * 1024 ** "BKMGT".index(m.group(3)[0])
            if read < 0.99 * n * len(SMALL):
                self.stats.fail("wrk: %d responses but only %s%s read" % (
                    n, m.group(2), m.group(3)))
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            if bad:
                self.stats.add("wrk_non2xx", int(bad.group(1)))
                self.stats.fail("wrk: %s responses other than 2xx/3xx"
                                % bad.group(1))
            errs = re.search(r"Socket errors: connect (\d+), read (\d+), "
                             r"write (\d+), timeout (\d+)", out)
            if errs:
                self.stats.add("wrk_socket_errors",
                               sum(int(x) for x in errs.groups()))

    def download(self):
        p = subprocess.Popen(
            ["curl", "-sS", "--fail", "--max-time", str(int(scaled(300))),
             "--resolve", self.resolve, self.base + "/large.bin"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL)
        h = hashlib.sha256()
        n = 0
        while True:
            b = p.stdout.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        err = p.stderr.read().decode("utf-8", "replace")
        rc = p.wait(timeout=30)
        if rc != 0 or n != self.nginx.large_size or \
                h.hexdigest() != self.nginx.large_sha:
            self.stats.fail("download: curl %d, %d of %d bytes, sha256 %s: "
                            "%s" % (rc, n, self.nginx.large_size,
                                    "right" if h.hexdigest() ==
                                    self.nginx.large_sha else "WRONG",
                                    err[:200]))
        else:
            self.stats.add("transfers")

    def upload(self, k):
        name = "u%d.bin" % k
        cp = self.curl("--fail", "-H", "Expect:", "-T", self.nginx.large,
                       "--resolve", self.resolve, self.base + "/up/" + name,
                       timeout=300)
        path = os.path.join(self.nginx.root, "up", name)
        got = None
        if os.path.exists(path):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    h.update(b)
            got = h.hexdigest()
            os.remove(path)
        if cp.returncode != 0 or got != self.nginx.large_sha:
            self.stats.fail("upload: curl %d, stored sha256 %s: %s" % (
                cp.returncode, "missing" if got is None else
                ("right" if got == self.nginx.large_sha else "WRONG"),
                cp.stderr.decode("utf-8", "replace")[:200]))
        else:
            self.stats.add("transfers")

    def loop_transfers(self):
        k = 0
        while not self.stop_load.is_set() and \
                time.monotonic() - self.t0 < self.load_s:
            self.download()
            if self.stop_load.is_set():
                break
            self.upload(k)
            k += 1
            self.stop_load.wait(1)  # pacing, not a wait on an event

    def bridge_cycle(self, slot, sig):
        """One bridge comes, serves a request through its own identity and
        goes (SIGTERM: must exit 0; SIGKILL: a bridge that vanishes)."""
        node = Node(self.workdir, self.hub, self.nginx.url,
                    name="churn%d" % slot, binary=self.binary, env=self.env,
                    wait=False)
        try:
            node.wait_bridges(1)
            # its first request must not race its pool to the hub
            wait_for(lambda: self.hub.proxy(node.identity).get("pool", 0),
                     10, what="a pool connection of churn%d" % slot)
            host = "%s.%s" % (node.identity, self.hub.domain)
            self.check_small("http://%s:%d" % (host, self.hub.port),
                             "%s:%d:127.0.0.1" % (host, self.hub.port),
                             "bridge churn%d" % slot)
        finally:
            if sig == signal.SIGKILL:
                node.kill()
            else:
                node.stop(sig)
            self.problems.extend(node.problems())
        self.stats.add("bridge_cycles")

    def loop_churn(self):
        k = 0
        while not self.stop_load.is_set() and \
                time.monotonic() - self.t0 < self.load_s:
            sig = signal.SIGKILL if k % 2 else signal.SIGTERM
            try:
                self.bridge_cycle(k % self.churn_slots, sig)
            except Exception as e:  # a bridge that never came up
                self.stats.fail("bridge churn%d: %r" % (
                    k % self.churn_slots, e))
            k += 1
            self.stop_load.wait(2)

    def vanish(self, k):
        """One user that leaves half-way: k picks what it leaves (a
        download body, an upload body, a head) and how (FIN or RST)."""
        what = k % 3
        s = socket.create_connection(("127.0.0.1", self.hub.port),
                                     timeout=scaled(30))
        try:
            hosthdr = "Host: %s:%d\r\n" % (self.host, self.hub.port)
            if what == 0:
                s.sendall(("GET /large.bin HTTP/1.1\r\n%s\r\n"
                           % hosthdr).encode())
                want = self.nginx.large_size // 2
                got = 0
                while got < want:
                    b = s.recv(1 << 18)
                    if not b:
                        self.stats.fail("vanishing user: EOF after %d bytes "
                                        "of a download" % got)
                        return
                    got += len(b)
            elif what == 1:
                size = 1 << 20
                s.sendall(("PUT /up/gone%d.bin HTTP/1.1\r\n%sContent-Length:"
                           " %d\r\n\r\n" % (k, hosthdr, size)).encode())
                s.sendall(os.urandom(size // 2))
            else:
                s.sendall(("GET /small.txt HTTP/1.1\r\n%sX-Half: "
                           % hosthdr).encode())
            if (k // 3) % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        finally:
            s.close()
        self.stats.add("vanished")

    def loop_vanish(self):
        k = 0
        while not self.stop_load.is_set() and \
                time.monotonic() - self.t0 < self.load_s:
            try:
                self.vanish(k)
            except OSError as e:
                self.stats.fail("vanishing user %d: %r" % (k, e))
            k += 1
            self.stop_load.wait(0.5)

    # ---------------------------------------------------------- sampling

    def sample(self, phase):
        row = {"t_s": round(time.monotonic() - self.t0, 1), "phase": phase,
               "hub_rss_kib": rss_kib(self.hub.pid),
               "hub_fds": fd_count(self.hub.pid),
               "node_rss_kib": rss_kib(self.node.pid),
               "node_fds": fd_count(self.node.pid),
               "wrk_requests": self.stats.get("wrk_requests"),
               "transfers": self.stats.get("transfers"),
               "bridge_cycles": self.stats.get("bridge_cycles"),
               "vanished": self.stats.get("vanished")}
        self.rows.append(row)
        with open(self.csv_path, "a") as f:
            f.write(",".join(str(row[k]) for k in CSV_FIELDS) + "\n")
        return row

    def loop_sample(self):
        k = 1
        while not self.stop_load.wait(
                max(0, self.t0 + k * self.interval - time.monotonic())):
            self.sample("load")
            k += 1

    # -------------------------------------------------------------- run

    def run(self):
        with open(self.csv_path, "w") as f:
            f.write(",".join(CSV_FIELDS) + "\n")
        self.baseline = self.settle_baseline()
        log("baseline: hub %d descriptors, node %d" % self.baseline)
        self.t0 = time.monotonic()
        self.sample("baseline")
        loops = [self.loop_wrk, self.loop_transfers, self.loop_churn,
                 self.loop_vanish]
        threads = [threading.Thread(target=f, daemon=True) for f in loops]
        sampler = threading.Thread(target=self.loop_sample, daemon=True)
        for t in threads + [sampler]:
            t.start()
        next_note = 60
        while time.monotonic() - self.t0 < self.load_s:
            self.stop_load.wait(min(5, max(
                0.1, self.load_s - (time.monotonic() - self.t0))))
            if not (self.hub.alive() and self.node.alive()):
                self.stats.fail("hub or node died during the load")
                break
            if time.monotonic() - self.t0 >= next_note:
                r = self.rows[-1]
                log("%4.0fs hub %d KiB %d fds, node %d KiB %d fds, %d wrk "
                    "requests, %d transfers, %d bridge cycles, %d vanished"
                    % (r["t_s"], r["hub_rss_kib"], r["hub_fds"],
                       r["node_rss_kib"], r["node_fds"], r["wrk_requests"],
                       r["transfers"], r["bridge_cycles"], r["vanished"]))
                next_note += 60
        self.stop_load.set()
        self.load_end = time.monotonic() - self.t0
        for t in threads + [sampler]:
            # a transfer in flight finishes on its own (curl's --max-time)
            t.join(timeout=scaled(330))
            if t.is_alive():
                self.stats.fail("a load thread did not finish")
        self.sample("stopped")
        self.drain()
        self.check_small(self.base, self.resolve, "after the load")

    def drain(self):
        """Waits (bounded) for both descriptor counts to come back to the
        baseline, sampling once a second."""
        deadline = time.monotonic() + scaled(60)
        while True:
            r = self.sample("drain")
            back = (r["hub_fds"] <= self.baseline[0] and
                    r["node_fds"] <= self.baseline[1])
            if back or time.monotonic() >= deadline:
                self.drained = back
                self.drain_s = max(0.0, r["t_s"] - self.load_end)
                self.after = (r["hub_fds"], r["node_fds"])
                return
            time.sleep(1)  # polling /proc: no event to wait on

    def stop(self):
        for role in (self.node, self.hub):
            if role is not None:
                self.problems.extend(role.problems())
        if self.nginx:
            self.nginx.stop()

    # ---------------------------------------------------------- verdict

    def verdict(self, rss_limit):
        """(passed, [summary lines])."""
        warm = 0.2 * self.load_s
        load = [r for r in self.rows if r["phase"] == "load"]
        first = [r for r in load if warm <= r["t_s"] < warm + 60]
        last = [r for r in load if r["t_s"] >= self.load_s - 60]
        lines = []
        ok = True
        s = self.stats
        lines.append("soak: %.1f min of load, %d samples every %gs; "
                     "warm-up %.0fs; load average %s" % (
                         self.load_s / 60, len(load), self.interval, warm,
                         " ".join("%.1f" % x for x in os.getloadavg())))
        lines.append("load: %d wrk requests (%d non-2xx, %d socket errors), "
                     "%d large transfers of %d MiB by SHA-256, %d bridge "
                     "cycles, %d vanished users" % (
                         s.n["wrk_requests"], s.n["wrk_non2xx"],
                         s.n["wrk_socket_errors"], s.n["transfers"],
                         self.large_mb, s.n["bridge_cycles"],
                         s.n["vanished"]))
        for who in ("hub", "node"):
            key = who + "_rss_kib"
            if not first or not last:
                lines.append("%s RSS: too few samples" % who)
                ok = False
                continue
            a = statistics.median(r[key] for r in first)
            b = statistics.median(r[key] for r in last)
            growth = (b - a) / a
            peak = max(r[key] for r in self.rows)
            good = growth < rss_limit
            ok &= good
            lines.append("%s RSS: median %d KiB in %.0f-%.0fs, %d KiB in "
                         "the last minute: %+.1f%% (limit %.0f%%), peak %d "
                         "KiB: %s" % (who, a, warm,
                                      min(warm + 60, self.load_s), b,
                                      growth * 100, rss_limit * 100, peak,
                                      "pass" if good else "FAIL"))
        for i, who in enumerate(("hub", "node")):
            peak = max(r[who + "_fds"] for r in self.rows)
            good = self.after[i] <= self.baseline[i]
            ok &= good
            lines.append("%s descriptors: %d before the load, peak %d, %d "
                         "%.0fs after it stopped: %s" % (
                             who, self.baseline[i], peak, self.after[i],
                             self.drain_s, "pass" if good else "FAIL"))
        if s.n["transfers"] == 0:
            s.fail("no large transfer completed")
        if s.failures or self.problems:
            ok = False
            lines.append("failures: %d" % (len(s.failures) +
                                           len(self.problems)))
            lines.extend("  " + f for f in s.failures + self.problems)
        else:
            lines.append("transfers, bridges and exits: all correct")
        lines.append("soak: %s" % ("PASS" if ok else "FAIL"))
        return ok, lines


PLOT = r"""
set terminal png size 1000,700
set output '%(png)s'
set datafile separator ','
set key top left
set multiplot layout 2,1 title 'sluice soak: %(title)s'
set xlabel 'seconds'
set ylabel 'RSS (MiB)'
set arrow from %(warm)g, graph 0 to %(warm)g, graph 1 nohead dt 2
set arrow from %(end)g, graph 0 to %(end)g, graph 1 nohead dt 2
plot '%(csv)s' every ::1 using 1:($3/1024) with lines lw 2 title 'hub', \
     '' every ::1 using 1:($5/1024) with lines lw 2 title 'node'
set ylabel 'descriptors'
plot '%(csv)s' every ::1 using 1:4 with lines lw 2 title 'hub', \
     '' every ::1 using 1:6 with lines lw 2 title 'node'
unset multiplot
"""


def plot(csv_path, png_path, load_s, title):
    """PNG of RSS and descriptors over time (gnuplot); False if gnuplot is
    missing."""
    gp = shutil.which("gnuplot")
    if not gp:
        return False
    script = PLOT % {"png": png_path, "csv": csv_path, "warm": 0.2 * load_s,
                     "end": load_s, "title": title}
    subprocess.run([gp], input=script, text=True, check=True, timeout=60)
    return True
