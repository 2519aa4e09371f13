"""A real PostgreSQL for the hubs' shared store (docs/scale-out.md).

Postgres(dir) runs `initdb` as an unprivileged user (`nobody`, since
PostgreSQL refuses to run as root) in a temporary directory and starts the
server on loopback only, on a free port, with its socket in that
directory; stop() ends it (`pg_ctl stop -m fast`), restart() stops and
starts it on the same port and data. url(db) is the libpq URI of a
database, create_db(name) makes one, sql(q, db) runs a statement with
psql and returns its rows as text.

The `postgres` fixture starts one server per test session. The binaries
are found in /usr/lib/postgresql/*/bin (Debian's postgresql package);
without them the tests that need the server are skipped.

SLUICE_TUNNEL_PG=<uri of a server> makes every tunnel_x_support.Hub use
a PostgreSQL store (a database per state directory, so a hub restarted
with the same state finds its rows), to run the tunnel tests on it.
"""

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

from helpers import free_port

USER = "nobody"


def pg_bin(name):
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name))
    return found[-1] if found else None


def _as_user(argv, **kw):
    """argv as the unprivileged user when we are root, else as we are."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", USER, "--"] + argv
    return subprocess.run(argv, capture_output=True, text=True, **kw)


class Postgres:
    def __init__(self, workdir=None):
        self.dir = tempfile.mkdtemp(prefix="sluice-pg-", dir=workdir)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.log = os.path.join(self.dir, "pg.log")
        if os.geteuid() == 0:
            pw = pwd.getpwnam(USER)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        r = _as_user([pg_bin("initdb"), "-D", self.data, "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-sync"],
                     timeout=120)
        if r.returncode != 0:
            raise RuntimeError("initdb failed: %s%s" % (r.stdout, r.stderr))
        self.start()

    def start(self):
        opts = ("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off "
                "-c max_connections=200" % (self.port, self.dir))
        r = _as_user([pg_bin("pg_ctl"), "-D", self.data, "-l", self.log,
                      "-o", opts, "-w", "-t", "60", "start"], timeout=90)
        if r.returncode != 0:
            raise RuntimeError("pg_ctl start failed: %s%s\n%s" % (
                r.stdout, r.stderr, self.log_text()))

    def stop(self, mode="fast"):
        _as_user([pg_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w",
                  "-t", "60", "stop"], timeout=90)

    def restart(self, down_for=0.0):
        self.stop()
        time.sleep(down_for)
        self.start()

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def url(self, db="postgres"):
        return "postgres://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def sql(self, query, db="postgres"):
        r = subprocess.run([pg_bin("psql"), "-X", "-A", "-t", "-q", "-v",
                            "ON_ERROR_STOP=1", "-d", self.url(db), "-c",
                            query], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql: %s" % r.stderr)
        return [line.split("|") for line in r.stdout.splitlines() if line]

    def create_db(self, name):
        self.sql("CREATE DATABASE %s" % name)
        return self.url(name)

    def close(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def db_for_state(server_url, state_dir):
    """The database of one hub's state directory on server_url, made the
    first time (so a restarted hub keeps its rows)."""
    name = "s_" + hashlib.sha1(state_dir.encode()).hexdigest()[:16]
    psql = pg_bin("psql")
    base = server_url.rsplit("/", 1)[0]
    r = subprocess.run([psql, "-X", "-A", "-t", "-q", "-d", base + "/postgres",
                        "-c", "SELECT 1 FROM pg_database WHERE datname = '%s'"
                        % name], capture_output=True, text=True, timeout=60)
    if r.stdout.strip() != "1":
        subprocess.run([psql, "-X", "-q", "-d", base + "/postgres", "-c",
                        "CREATE DATABASE %s" % name], capture_output=True,
                       text=True, timeout=60)
    return base + "/" + name


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    if pg_bin("initdb") is None or pg_bin("pg_ctl") is None:
        pytest.skip("PostgreSQL server binaries not installed "
                    "(scripts/setup.sh installs postgresql)")
    server = Postgres()
    yield server
    server.close()
