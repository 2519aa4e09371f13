#!/usr/bin/env bash
# The main job on its embedded default: installs what building needs,
# builds sluice, starts a local hub, a sample upstream service and a
# bridge exposing it, prints the public URL and fetches it. Runs until
# Ctrl-C (with --once: fetch, then stop).
#
# usage: bash scripts/run.sh [--once] [--port PORT]
#   --port PORT  the hub's HTTP port (default 8080, or a free port when
#                8080 is taken, and run.sh says so). Its HTTPS port is
#                8443, or a free one when that is taken; the same for the
#                APIs (8081, 8082).
# When the hub or the bridge cannot start, run.sh prints its own error
# and keeps its logs.
set -euo pipefail
cd "$(dirname "$0")/.."

once=0
want_port=
while [ $# -gt 0 ]; do
  case "$1" in
    --once) once=1 ;;
    --port) want_port=${2:-}; shift ;;
    --port=*) want_port=${1#--port=} ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (--once, --port PORT)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$want_port" ] && ! [[ "$want_port" =~ ^[0-9]+$ && "$want_port" -ge 1 &&
                               "$want_port" -le 65535 ]]; then
  echo "run.sh: --port: '$want_port' is not a port (1-65535)" >&2; exit 2
fi

say() { echo "run.sh: $*"; }

say "checking the Debian packages sluice builds with (installing any missing)"
bash scripts/setup.sh --run

start=$SECONDS
if [ ! -f build/build.ninja ]; then
  say "configuring the build (meson, in build/)"
  meson setup build --buildtype=release >build-setup.log 2>&1 ||
    { cat build-setup.log >&2; say "meson setup failed" >&2; exit 1; }
  rm -f build-setup.log
fi
say "building sluice (ninja -C build; the first build takes a minute or so)"
if ! ninja -C build sluice >build/run-ninja.log 2>&1; then
  grep -E 'error|FAILED' build/run-ninja.log | head -30 >&2
  say "the build failed; its log: build/run-ninja.log" >&2
  exit 1
fi
say "built build/sluice in $((SECONDS - start)) s"
bin=$PWD/build/sluice

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -e "$work/keep" ]; then say "logs kept in $work" >&2
  else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# port_for NAME WANTED: WANTED when it is free on loopback, else a free
# port, said on stderr (the caller prints the port it gets on stdout).
port_for() {
  /usr/bin/python3 - "$1" "$2" <<'EOF'
import socket, sys
name, want = sys.argv[1], int(sys.argv[2])
def free(p):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
got = free(want)
if got is None:
    got = free(0)
    print("run.sh: port %d (%s) is taken; using %d" % (want, name, got),
          file=sys.stderr)
print(got)
EOF
}

# wait_line PID NAME OUT ERR PATTERN: waits (20 s at most) for a line of
# OUT; if process PID exits first, or time runs out, prints its own error
# (ERR), keeps the logs and fails.
wait_line() {
  local pid=$1 name=$2 out=$3 err=$4 pattern=$5 rc
  for _ in $(seq 200); do
    if grep -q -E "$pattern" "$out" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null && rc=0 || rc=$?
      say "the $name could not start (exit status $rc); it said:" >&2
      sed 's/^/  /' "$err" >&2
      touch "$work/keep"
      return 1
    fi
    sleep 0.1
  done
  say "the $name did not start within 20 s; its log so far:" >&2
  sed 's/^/  /' "$err" >&2
  touch "$work/keep"
  return 1
}

# A port asked for is used as it is (taken, the hub says so); the default
# gives way to a free one.
if [ -n "$want_port" ]; then http_port=$want_port
else http_port=$(port_for "the hub's HTTP" 8080); fi
https_port=$(port_for "the hub's HTTPS" 8443)
api_port=$(port_for "the hub's admin API" 8081)
node_api_port=$(port_for "the node's API" 8082)

# A sample upstream: a static page on a free loopback port.
mkdir -p "$work/site"
echo "<h1>Hello from behind the sluice</h1>" >"$work/site/index.html"
port=$(port_for "the sample site" 0 2>/dev/null)
/usr/bin/python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/site" \
  >"$work/upstream.log" 2>&1 &
pids+=($!)

say "starting the hub on http://127.0.0.1:$http_port and https://127.0.0.1:$https_port"
"$bin" boot up --proxy --http "127.0.0.1:$http_port" \
  --https "127.0.0.1:$https_port" --api "127.0.0.1:$api_port" \
  --state-dir "$work/hub" >"$work/hub.out" 2>"$work/hub.log" &
hub_pid=$!
pids+=($hub_pid)
wait_line $hub_pid hub "$work/hub.out" "$work/hub.log" '^hub listening'

say "starting a bridge to http://127.0.0.1:$port"
"$bin" boot up --bridge --hub "http://127.0.0.1:$http_port" \
  --upstream "http://127.0.0.1:$port" --api "127.0.0.1:$node_api_port" \
  --state-dir "$work/node" >"$work/node.out" 2>"$work/node.log" &
node_pid=$!
pids+=($node_pid)
wait_line $node_pid bridge "$work/node.out" "$work/node.log" '^bridge '
url=$(grep -m1 '^bridge ' "$work/node.out" | awk '{print $3}')

echo "sluice: hub on http://127.0.0.1:$http_port, bridge exposing http://127.0.0.1:$port"
echo "sluice: public URL $url (trust $work/hub/tls/ca.pem, e.g. curl --cacert)"
# The URL is https:// (the hub's TLS listener): its certificate comes
# from the local CA the hub made in its state directory.
curl -sS --max-time 10 --cacert "$work/hub/tls/ca.pem" "$url"
if [ $once -eq 1 ]; then exit 0; fi
echo "sluice: running; press Ctrl-C to stop"
wait $hub_pid
