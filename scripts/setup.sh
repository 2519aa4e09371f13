#!/usr/bin/env bash
# Installs the Debian packages sluice builds, tests and benchmarks with.
# Safe to run again: it installs only what is missing.
# --run: only what building and running sluice needs (scripts/run.sh).
set -euo pipefail

# Building and running (scripts/run.sh fetches its page with curl).
run_packages=(
  build-essential meson ninja-build pkg-config
  libuv1-dev libssl-dev libwslay-dev libhttp-parser-dev libjansson-dev
  libsqlite3-dev libyaml-dev libpq-dev libcurl4-openssl-dev python3 curl
)

packages=(
  # build
  build-essential clang meson ninja-build pkg-config
  # libraries (see docs/architecture.md for what each is for)
  libuv1-dev libssl-dev libwslay-dev libhttp-parser-dev libjansson-dev
  libsqlite3-dev libyaml-dev libcurl4-openssl-dev
  # several hubs sharing one state: libpq, and the server the tests start
  libpq-dev postgresql
  # tests: unit, fuzz, end to end with real peers
  libcmocka-dev libclang-rt-14-dev python3 python3-pytest python3-pytest-timeout
  python3-websockets python3-cryptography
  curl openssh-server openssh-client bind9-dnsutils dnsmasq-base haproxy
  nginx-light iperf3 wrk socat sqlite3 procps iproute2 openssl nftables
  gnuplot-nox
  # ACME against a real test CA and a real authoritative DNS server
  pebble bind9
  # the dashboards in a real browser, and a real Prometheus scraping
  chromium chromium-driver python3-selenium prometheus
  # man pages and the Debian package (scripts/package.sh): scdoc, the
  # packaging tools, lintian, and systemd-analyze for the units
  scdoc debhelper fakeroot lintian systemd
)

if [ "${1:-}" = "--run" ]; then packages=("${run_packages[@]}"); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (or install the packages above yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "setup: apt-get update"
  apt-get update -qq
  echo "setup: apt-get install (${#missing[@]} packages and what they need)"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: installed"
fi
