#!/usr/bin/env bash
# The main job on its embedded default: builds sluice, starts a local hub,
# a sample upstream service and a bridge exposing it, prints the public URL
# and fetches it. Runs until Ctrl-C (with --once: fetch, then stop).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ ! -d build ]; then meson setup build --buildtype=release >/dev/null; fi
ninja -C build >/dev/null
bin=$PWD/build/sluice

once=0
[ "${1:-}" = "--once" ] && once=1

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# wait_line FILE PATTERN: waits (10 s at most) for a line and prints it.
wait_line() {
  for _ in $(seq 100); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "run.sh: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

# A sample upstream: a static page on a free loopback port.
mkdir -p "$work/site"
echo "<h1>Hello from behind the sluice</h1>" >"$work/site/index.html"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/bin/python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/site" \
  >"$work/upstream.log" 2>&1 &
pids+=($!)

"$bin" boot up --proxy --state-dir "$work/hub" >"$work/hub.out" 2>"$work/hub.log" &
pids+=($!)
wait_line "$work/hub.out" '^hub listening' >/dev/null

"$bin" boot up --bridge --hub http://127.0.0.1:8080 \
  --upstream "http://127.0.0.1:$port" --state-dir "$work/node" \
  >"$work/node.out" 2>"$work/node.log" &
pids+=($!)
line=$(wait_line "$work/node.out" '^bridge ')
url=$(echo "$line" | awk '{print $3}')

echo "sluice: hub on http://127.0.0.1:8080, bridge exposing http://127.0.0.1:$port"
echo "sluice: public URL $url (trust $work/hub/tls/ca.pem, e.g. curl --cacert)"
# The URL is https:// (the hub's TLS listener, 8443): its certificate
# comes from the local CA the hub made in its state directory.
curl -sS --max-time 10 --cacert "$work/hub/tls/ca.pem" "$url"
if [ $once -eq 1 ]; then exit 0; fi
echo "sluice: running; press Ctrl-C to stop"
wait "${pids[1]}"
