#!/usr/bin/env bash
# Builds the Debian package (dpkg-buildpackage -us -uc -b) and checks it:
# lintian finds no error, systemd-analyze verifies both units, dpkg
# installs it into an empty root (no chroot: its maintainer scripts run
# with DPKG_ROOT, as dpkg does for a foreign root) where the files, the
# conffile and the sluice user are, `sluice version` and `sluice config
# check` run from there, and dpkg purges it again.
#
# usage: bash scripts/package.sh [OUTDIR]   (default: a temporary folder)
# The .deb is left in OUTDIR. Each check prints "ok - ..." or
# "not ok - ..." (as TAP does); the exit status is 0 only when all passed.
# SLUICE_PACKAGE_JOBS sets the build's parallelism (default 2).
set -uo pipefail
cd "$(dirname "$0")/.."

out=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$out" ]; then out="$work/out"; fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
failed=0
ok() { echo "ok - $*"; }
bad() { echo "not ok - $*"; failed=1; }

version=$(dpkg-parsechangelog -S Version -l debian/changelog)
# The build runs in a copy of the files git knows (tracked, or new and not
# ignored), so the tree stays clean
# (dpkg-buildpackage writes debian/ artefacts, and the .deb beside the
# source folder).
src="$work/sluice-$version"
mkdir -p "$src"
if ! git ls-files -z -co --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null |
     tar -xf - -C "$src"; then
  bad "copying the tree"; exit 1
fi

echo "package: building sluice $version (dpkg-buildpackage -us -uc -b)"
start=$SECONDS
if (cd "$src" && dpkg-buildpackage -us -uc -b \
      -j"${SLUICE_PACKAGE_JOBS:-2}") >"$out/build.log" 2>&1; then
  ok "dpkg-buildpackage ($((SECONDS - start)) s)"
else
  bad "dpkg-buildpackage (log: $out/build.log)"
  tail -40 "$out/build.log"
  exit 1
fi
deb=$(ls "$work"/sluice_"$version"_*.deb 2>/dev/null | head -1)
if [ -z "$deb" ]; then bad "no .deb made"; exit 1; fi
cp "$deb" "$out/"
deb="$out/$(basename "$deb")"
echo "package: $deb"

# lintian: errors fail; warnings are shown.
lintian --fail-on error --display-info "$deb" >"$out/lintian.log" 2>&1
rc=$?
cat "$out/lintian.log"
if [ $rc -eq 0 ]; then ok "lintian (no errors)"; else bad "lintian"; fi

# An empty root with a dpkg database.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" \
  "$root/etc" "$root/usr/bin"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
: >"$root/etc/passwd"; : >"$root/etc/group"
: >"$root/etc/shadow"; : >"$root/etc/gshadow"
dpkg_root() {
  # The root has no libraries or shell: the package's dependencies are
  # the host's, and its scripts run on the host with DPKG_ROOT set.
  dpkg --root="$root" --force-not-root --force-depends \
    --force-script-chrootless --log=/dev/null "$@"
}
if dpkg_root -i "$deb" >"$out/install.log" 2>&1; then
  ok "dpkg -i into an empty root"
else
  bad "dpkg -i into an empty root"; cat "$out/install.log"
fi

for f in usr/bin/sluice usr/share/man/man1/sluice.1.gz \
         usr/share/man/man5/sluice.yaml.5.gz etc/sluice/sluice.yaml \
         lib/systemd/system/sluice-hub.service \
         lib/systemd/system/sluice-node.service \
         usr/lib/sysusers.d/sluice.conf; do
  [ -e "$root/$f" ] || bad "/$f is not installed"
done
grep -qx /etc/sluice/sluice.yaml "$root/var/lib/dpkg/info/sluice.conffiles" \
  && ok "/etc/sluice/sluice.yaml is a conffile" \
  || bad "/etc/sluice/sluice.yaml is not a conffile"
grep -q '^sluice:' "$root/etc/passwd" && ok "the sluice user exists" \
  || bad "no sluice user in the root's /etc/passwd"

v=$("$root/usr/bin/sluice" version 2>&1)
if [ "$v" = "sluice ${version%%-*}" ]; then ok "installed sluice version: $v"
else bad "installed sluice version said: $v"; fi
if "$root/usr/bin/sluice" config check "$root/etc/sluice/sluice.yaml" \
     >/dev/null 2>&1; then ok "the shipped sluice.yaml passes config check"
else bad "the shipped sluice.yaml fails config check"; fi
man_ok=1
for page in man1/sluice.1.gz man5/sluice.yaml.5.gz; do
  zcat "$root/usr/share/man/$page" | grep -q '^\.TH' || man_ok=0
done
[ $man_ok -eq 1 ] && ok "man pages" || bad "man pages are not troff"

# The units, as systemd reads them, against the installed tree and the
# few files of the host they name (the targets, /bin/kill): any warning
# (an unknown key, a bad value) fails, and so does an exposure score
# above 3.0 of `systemd-analyze security`.
vroot="$work/verify"
mkdir -p "$vroot/bin"
cp -a "$root/." "$vroot/"
cp /bin/kill "$vroot/bin/kill"
cp -L /lib/systemd/system/*.target "$vroot/lib/systemd/system/" 2>/dev/null
units=("$vroot/lib/systemd/system/sluice-hub.service"
       "$vroot/lib/systemd/system/sluice-node.service")
if SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
     --root="$vroot" "${units[@]}" >"$out/verify.log" 2>&1 &&
   ! grep -q . "$out/verify.log"; then
  ok "systemd-analyze verify (both units)"
else
  bad "systemd-analyze verify"; cat "$out/verify.log"
fi
for u in "${units[@]}"; do
  if systemd-analyze security --offline=true --threshold=30 --no-pager \
       --root="$vroot" "$u" >"$out/security.log" 2>&1; then
    ok "$(basename "$u"): $(grep -o 'Overall exposure level.*' \
                            "$out/security.log")"
  else
    bad "systemd-analyze security $(basename "$u")"
    tail -5 "$out/security.log"
  fi
done
for u in "${units[@]}"; do
  for want in "User=sluice" "StateDirectory=sluice" "ProtectSystem=strict" \
              "NoNewPrivileges=yes" \
              "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"; do
    grep -qx "$want" "$u" || bad "$(basename "$u") lacks $want"
  done
done

# Each unit's ExecStart, run as it stands but for the paths into the root
# and free loopback ports (a flag wins over the file): the role starts on
# the shipped configuration, writes its state, and stops cleanly on
# SIGTERM.
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
for unit in sluice-hub sluice-node; do
  cmd=$(sed -n 's/^ExecStart=//p' "$vroot/lib/systemd/system/$unit.service")
  state="$work/state-$unit"
  cmd=${cmd//\/usr\/bin\/sluice/$root/usr/bin/sluice}
  cmd=${cmd//\/etc\/sluice\/sluice.yaml/$vroot/etc/sluice/sluice.yaml}
  cmd=${cmd//\/var\/lib\/sluice/$state}
  if [ "$unit" = sluice-hub ]; then
    extra="--http 127.0.0.1:$(free_port) --https 127.0.0.1:$(free_port)"
    extra+=" --api 127.0.0.1:$(free_port)"; role=hub
  else
    extra="--api 127.0.0.1:$(free_port)"; role=node
  fi
  # shellcheck disable=SC2086
  $cmd $extra >"$out/$unit.out" 2>"$out/$unit.err" &
  pid=$!
  for _ in $(seq 100); do
    [ -s "$state/$role.json" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  if [ -s "$state/$role.json" ]; then
    kill -TERM $pid; wait $pid; rc=$?
    if [ $rc -eq 0 ]; then ok "$unit's ExecStart runs and stops cleanly"
    else bad "$unit's ExecStart exited $rc on SIGTERM"; cat "$out/$unit.err"; fi
  else
    kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
    bad "$unit's ExecStart did not start ($state/$role.json)"
    cat "$out/$unit.err"
  fi
done

if dpkg_root --purge sluice >"$out/purge.log" 2>&1 &&
   [ ! -e "$root/usr/bin/sluice" ] && [ ! -e "$root/etc/sluice/sluice.yaml" ]
then ok "dpkg --purge"
else bad "dpkg --purge"; cat "$out/purge.log"; fi

[ $failed -eq 0 ]
