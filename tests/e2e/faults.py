"""Fault injection for test_faults.py: network namespaces for the hub, a
delaying relay, the bridge node and the upstream, joined by veth pairs;
nftables for loss and partitions, `tc tbf` for bandwidth (this kernel has
no netem).

Run as a script, it is one of the two peers the tests start inside a
namespace (each its own process, so neither competes with pytest for the
GIL):

  faults.py relay LISTEN_IP PORT TARGET_IP PORT DELAY_MS
      a TCP relay that holds every chunk DELAY_MS before passing it on,
      in order, each direction on its own (half the RTT each way);
      prints "relay ready" once listening
  faults.py upstream LISTEN_IP PORT BLOB
      HTTP/1.1: GET /blob answers the file BLOB with Content-Length,
      GET /blob?chunked the same in chunks; POST/PUT answer the SHA-256
      and length of the body read; prints "upstream ready"
"""

import asyncio
import hashlib
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import scaled, wait_for  # noqa: E402

HERE = os.path.abspath(__file__)
PY = "/usr/bin/python3"

# Addresses: every link is a /24 of RFC 1918 space, so the bridge's
# private-upstream rule lets the node dial the upstream.
HUB_IP, RELAY_HUB_IP = "10.77.1.1", "10.77.1.2"     # hub <-> relay
RELAY_NODE_IP, NODE_IP = "10.77.2.1", "10.77.2.2"   # relay <-> node
NODE_UP_IP, UP_IP = "10.77.3.1", "10.77.3.2"        # node <-> upstream
HUB_PORT, HUB_API_PORT, NODE_API_PORT = 8080, 8081, 8082
UP_PORT, RELAY_PORT = 9000, 8080


# ------------------------------------------------------------- nftables

def nft(ns, script):
    """Loads an nft script (text) in namespace ns."""
    cp = subprocess.run(ns.argv("nft", "-f", "-"), input=script,
                        capture_output=True, text=True, timeout=scaled(20))
    if cp.returncode != 0:
        raise AssertionError("nft in %s: %s\n%s" % (ns.name, cp.stderr,
                                                   script))


def nft_loss(ns, dev, percent):
    """Drops `percent` % of the packets into and out of dev, each on its
    own random draw."""
    nft(ns, """table inet sluice_loss {
  chain in { type filter hook input priority 0; policy accept;
    iifname "%(dev)s" numgen random mod 100 < %(p)d drop; }
  chain out { type filter hook output priority 0; policy accept;
    oifname "%(dev)s" numgen random mod 100 < %(p)d drop; }
}
""" % {"dev": dev, "p": percent})


def nft_partition(ns):
    """Drops every packet into and out of ns (loopback aside): nothing
    arrives, nothing is reset, as when a cable is cut."""
    nft(ns, """table inet sluice_cut {
  chain in { type filter hook input priority -10; policy accept;
    iifname != "lo" drop; }
  chain out { type filter hook output priority -10; policy accept;
    oifname != "lo" drop; }
}
""")


def nft_heal(ns):
    nft(ns, "delete table inet sluice_cut\n")


def tbf(ns, dev, rate):
    """Caps what leaves dev at rate (tc syntax, e.g. "8mbit")."""
    cp = ns.run("tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate",
                rate, "burst", "32kb", "latency", "400ms")
    if cp.returncode != 0:
        raise AssertionError("tc tbf in %s: %s" % (ns.name, cp.stderr))


# ------------------------------------------------------------ processes

def start_relay(ns, listen_ip, port, target_ip, target_port, delay_ms):
    p = ns.proc("relay", PY, HERE, "relay", listen_ip, port, target_ip,
                target_port, delay_ms)
    wait_for(lambda: _ready(p, "relay ready"), 20, what="relay ready")
    return p


def start_upstream(ns, listen_ip, port, blob):
    p = ns.proc("upstream", PY, HERE, "upstream", listen_ip, port, blob)
    wait_for(lambda: _ready(p, "upstream ready"), 20, what="upstream ready")
    return p


def _ready(p, word):
    if not p.alive():
        raise AssertionError("%s exited:\n%s" % (p.name, p.describe()))
    return word in p.stdout()


def make_blob(path, size):
    """A file of size bytes in which every 64 KiB block differs (a block
    out of place changes the hash); returns its SHA-256."""
    h = hashlib.sha256()
    seed = os.urandom(65536)
    with open(path, "wb") as f:
        i = 0
        while i * 65536 < size:
            b = (i.to_bytes(8, "little") + seed[8:])[:size - i * 65536]
            h.update(b)
            f.write(b)
            i += 1
    return h.hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest(), n
            h.update(b)
            n += len(b)


class Curls:
    """Many curl processes run at once inside a namespace, each writing
    its body to a file; wait() gives, per transfer, curl's exit code,
    the HTTP status, the bytes received, their SHA-256 and the seconds
    taken."""

    def __init__(self, ns, workdir):
        self.ns = ns
        self.workdir = str(workdir)
        self.items = []

    def start(self, name, url, host, *args, max_time=120):
        out = os.path.join(self.workdir, name + ".body")
        err = open(os.path.join(self.workdir, name + ".curl"), "wb")
        argv = self.ns.argv("curl", "-sS", "-o", out, "-w", "%{http_code}",
                            "-m", "%d" % int(scaled(max_time)),
                            "-H", "Host: " + host, *args, url)
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err,
                             stdin=subprocess.DEVNULL)
        self.items.append({"name": name, "popen": p, "out": out, "t0": t0,
                           "errf": err})

    def wait(self, timeout):
        deadline = time.monotonic() + scaled(timeout)
        results = []
        for it in self.items:
            p = it["popen"]
            try:
                stdout, _ = p.communicate(
                    timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                stdout, _ = p.communicate()
                it["hung"] = True
            it["errf"].close()
            took = time.monotonic() - it["t0"]
            sha, n = (file_sha256(it["out"]) if os.path.exists(it["out"])
                      else (hashlib.sha256(b"").hexdigest(), 0))
            with open(it["out"] if os.path.exists(it["out"]) else os.devnull,
                      "rb") as f:
                head = f.read(300)
            with open(os.path.join(self.workdir, it["name"] + ".curl"),
                      "rb") as f:
                err = f.read().decode("utf-8", "replace").strip()
            code = stdout.decode().strip()
            results.append({"name": it["name"], "rc": p.returncode,
                            "status": int(code) if code.isdigit() else 0,
                            "bytes": n, "sha256": sha, "took": took,
                            "body": head, "stderr": err,
                            "hung": it.get("hung", False)})
        return results


def cpu_seconds(pid):
    """User plus system CPU time of pid so far, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- relay

async def _pump(reader, writer, delay):
    """Reads chunks and writes each delay seconds after it arrived, in
    order. A bounded queue gives back-pressure: the reader waits while
    8 chunks (up to 512 KiB) are in flight, as a TCP window would."""
    q = asyncio.Queue(maxsize=8)

    async def read():
        try:
            while True:
                b = await reader.read(65536)
                await q.put((time.monotonic() + delay, b))
                if not b:
                    return
        except (ConnectionError, OSError):
            await q.put((time.monotonic(), None))

    async def write():
        try:
            while True:
                at, b = await q.get()
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if b is None:   # the source broke: break the sink too
                    writer.transport.abort()
                    return
                if not b:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(b)
                await writer.drain()
        except (ConnectionError, OSError):
            writer.transport.abort()
    rt = asyncio.ensure_future(read())
    await write()
    rt.cancel()


async def _relay_main(listen_ip, port, target_ip, target_port, delay_ms):
    delay = delay_ms / 1000.0

    async def on_client(cr, cw):
        try:
            ur, uw = await asyncio.open_connection(target_ip, target_port)
        except OSError:
            cw.transport.abort()
            return
        await asyncio.gather(_pump(cr, uw, delay), _pump(ur, cw, delay),
                             return_exceptions=True)
        for w in (cw, uw):
            w.close()

    server = await asyncio.start_server(on_client, listen_ip, port,
                                        backlog=1024)
    print("relay ready", flush=True)
    async with server:
        await server.serve_forever()


# ------------------------------------------------------------- upstream

def _upstream_main(listen_ip, port, blob):
    from http.server import ThreadingHTTPServer
    from tunnel_x_support import _HashHandler

    class Handler(_HashHandler):
        def do_GET(self):
            if not self.path.startswith("/blob"):
                return super().do_GET()
            size = os.path.getsize(blob)
            chunked = self.path.endswith("?chunked")
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            with open(blob, "rb") as f:
                while True:
                    b = f.read(65536)
                    if not b:
                        break
                    if chunked:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
                    else:
                        self.wfile.write(b)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")

    ThreadingHTTPServer.request_queue_size = 1024
    srv = ThreadingHTTPServer((listen_ip, int(port)), Handler)
    srv.daemon_threads = True
    srv.name = "upstream"
    srv.handle_error = lambda request, address: None
    print("upstream ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "relay":
        asyncio.run(_relay_main(sys.argv[2], int(sys.argv[3]), sys.argv[4],
                                int(sys.argv[5]), int(sys.argv[6])))
    elif sys.argv[1] == "upstream":
        _upstream_main(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: faults.py relay|upstream ...")
