"""Peers and clients for the dashboard, inspector and metrics tests
(test_dashboard_*.py, test_metrics_prometheus.py): an upstream that
records what it is sent, HTTP helpers that speak to an API as the
dashboard's page does, a server-sent events reader, and a Prometheus
process."""

import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers import Proc, find_binary, free_port, scaled, tcp_listening, \
    wait_for


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _record_and_answer(self):
        n = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(n) if n else b""
        srv = self.server
        with srv.lock:
            srv.seen.append({"method": self.command, "path": self.path,
                             "headers": dict(self.headers.items()),
                             "body": body})
        if self.path.startswith("/big"):
            # /big?bytes=N: N bytes, written in pieces (a download to watch)
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            size = int(q.get("bytes", ["1000000"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            left = size
            try:
                while left:
                    k = min(left, len(chunk))
                    self.wfile.write(chunk[:k])
                    left -= k
            except OSError:
                pass
            return
        out = json.dumps({"method": self.command, "path": self.path,
                          "body": body.decode("utf-8", "replace")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _record_and_answer
    do_POST = _record_and_answer
    do_PUT = _record_and_answer
    do_DELETE = _record_and_answer


class RecordingUpstream:
    """An HTTP/1.1 upstream that records every request (method, path,
    headers, body) in .seen; GET /big?bytes=N sends N bytes, anything else
    answers its request as JSON."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None
        self.server.seen = []
        self.server.lock = threading.Lock()
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def seen(self):
        with self.server.lock:
            return list(self.server.seen)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def request(port, method, path, body=None, headers=None, timeout=10):
    """(status, headers dict, body bytes) of one request to 127.0.0.1:port
    on its own connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(timeout))
    try:
        h = dict(headers or {})
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def dashboard_key(port, headers=None):
    """The dashboard key the page at / carries."""
    st, _, body = request(port, "GET", "/", headers=headers)
    assert st == 200, (st, body)
    m = re.search(rb'name="sluice-dashboard-key" content="([0-9a-f]{32})"',
                  body)
    assert m, body[:400]
    return m.group(1).decode()


def page_headers(port, key):
    """What the dashboard's own fetches send (a same-origin page)."""
    return {"X-Sluice-Dashboard": key, "Sec-Fetch-Site": "same-origin",
            "Origin": "http://127.0.0.1:%d" % port}


def page_json(port, key, method, path, body=None):
    st, _, raw = request(port, method, path, body=body,
                         headers=page_headers(port, key))
    try:
        return st, json.loads(raw)
    except ValueError:
        return st, raw


class EventStream:
    """A raw GET of an events URL: .status, then snapshots() yields the
    parsed JSON of each "snapshot" event."""

    def __init__(self, port, path="/api/events", headers=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=scaled(timeout))
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port]
        lines += ["%s: %s" % kv for kv in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            b = self.sock.recv(65536)
            if not b:
                break
            self.buf += b
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        self.status = int(self.head.split(" ", 2)[1]) if self.head else 0

    def snapshots(self, limit=100):
        for _ in range(limit):
            while b"\n\n" not in self.buf:
                b = self.sock.recv(65536)
                if not b:
                    return
                self.buf += b
            block, _, self.buf = self.buf.partition(b"\n\n")
            ev, data = None, b""
            for line in block.split(b"\n"):
                if line.startswith(b"event:"):
                    ev = line[6:].strip()
                elif line.startswith(b"data:"):
                    data += line[5:].lstrip(b" ")
            if ev == b"snapshot":
                yield json.loads(data)

    def close(self):
        self.sock.close()


class Prometheus:
    """A real Prometheus scraping the given targets ("host:port") every
    second, its data in workdir. query(expr) runs an instant query."""

    def __init__(self, workdir, targets, name="prometheus"):
        binary = find_binary("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus")
        d = os.path.join(str(workdir), name)
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "prometheus.yml")
        jobs = []
        for job, target in targets.items():
            jobs.append("  - job_name: %s\n"
                        "    scrape_interval: 1s\n"
                        "    scrape_timeout: 1s\n"
                        "    static_configs: [{targets: [\"%s\"]}]\n"
                        % (job, target))
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n"
                    "  evaluation_interval: 1s\nscrape_configs:\n"
                    + "".join(jobs))
        self.port = free_port()
        self.proc = Proc([binary, "--config.file=" + cfg,
                          "--storage.tsdb.path=" + os.path.join(d, "data"),
                          "--web.listen-address=127.0.0.1:%d" % self.port,
                          "--log.level=warn"], d, name)

        def up():
            if not self.proc.alive():
                raise AssertionError("prometheus exited:\n"
                                     + self.proc.describe())
            return tcp_listening(self.port) and self._ready()
        wait_for(up, 30, what="prometheus ready")

    def _ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready"
                                        % self.port, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path, **params):
        url = "http://127.0.0.1:%d%s?%s" % (self.port, path,
                                            urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=scaled(10)) as r:
            j = json.loads(r.read())
        assert j.get("status") == "success", j
        return j["data"]

    def query(self, expr):
        """{labels-as-tuple (all but instance): float} of an instant
        vector query."""
        data = self.api("/api/v1/query", query=expr)
        out = {}
        for s in data["result"]:
            labels = tuple(sorted((k, v) for k, v in s["metric"].items()
                                  if k != "instance"))
            out[labels] = float(s["value"][1])
        return out

    def stop(self):
        self.proc.kill_group()


def wait_until(cond, timeout, what, interval=0.2):
    """wait_for with a coarser poll (each probe is an HTTP request)."""
    return wait_for(cond, timeout, interval=interval, what=what)


def now():
    return time.monotonic()
