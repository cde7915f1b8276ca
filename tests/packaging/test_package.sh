#!/usr/bin/env bash
# test_package.sh SOURCE_DIR BUILD_DIR: the Debian package in a bare Debian 12 root, as a new
# operator would use it (docs/operations.md). Label `package`: minutes, and it needs Debian's
# archive; scripts/test runs it only when asked (scripts/test -L package).
#
#  1. A minimal Debian 12 root (debootstrap --variant=minbase bookworm from deb.debian.org),
#     made once and cached in BUILD_DIR/package-test/base; each run works on a fresh copy.
#  2. scripts/package builds the .deb into BUILD_DIR/package-test/deb (incremental).
#  3. apt-get installs it in the copy: apt resolves the computed Depends from the archive.
#     Checked: the condenser user, /etc/condenser 0750 root:condenser, keys/ 0700, the example
#     configurations 0640, /var/lib/condenser 0750 condenser, man pages, units.
#  4. As the condenser user: a CA, `coordinator init`, two sites (keys in /etc/condenser/keys),
#     a one-round job; `doctor` passes for the coordinator and both agents.
#  5. The coordinator and two agents run with the units' own ExecStart lines (%i replaced,
#     WorkingDirectory and User honoured; no systemd in a chroot) until the job completes;
#     the metrics endpoint is scraped during the run; `coordinator backup` copies the database
#     and its audit log verifies.
#  6. An upgrade to the same package repacked as VERSION+1 keeps the state, the edited
#     configuration and the user.
#  7. `apt-get remove` keeps state, keys and user; `apt-get purge` removes them and nothing
#     else is left of the package.
# Nothing outside BUILD_DIR/package-test is touched; /proc is mounted in the copy for the
# run and unmounted on exit.
set -euo pipefail
src=$1
build=$2
cache="$build/package-test"
base="$cache/base"
root="$cache/root"
mkdir -p "$cache"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  mountpoint -q "$root/proc" && umount "$root/proc" || true
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$cache"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done; exit 1; }
step() { echo "== $* ($(date -u +%T))"; }
[ "$(id -u)" = 0 ] || { echo "test_package needs root (chroot, mount)" >&2; exit 1; }
command -v debootstrap > /dev/null || fail "debootstrap is missing (scripts/lib.sh installs it)"

if [ ! -x "$base/usr/bin/apt-get" ]; then
  step "debootstrap (once; cached in $base)"
  rm -rf "$base.tmp"
  debootstrap --variant=minbase bookworm "$base.tmp" http://deb.debian.org/debian \
    > "$cache/debootstrap.log" 2>&1 || fail "debootstrap failed"
  mv "$base.tmp" "$base"
fi

# CND_PACKAGE_DEB=FILE tests a .deb built elsewhere (a release artifact) instead.
deb=${CND_PACKAGE_DEB:-}
if [ -z "$deb" ]; then
  step "scripts/package"
  deb=$("$src/scripts/package" "$cache/deb" 2> "$cache/package.log" | tail -n 1) || fail "scripts/package failed"
fi
[ -f "$deb" ] || fail "scripts/package printed no .deb"
dpkg-deb -f "$deb" Depends | grep -q 'libzmq5' || fail "Depends lacks the computed libzmq5: $(dpkg-deb -f "$deb" Depends)"

step "fresh root"
mountpoint -q "$root/proc" && umount "$root/proc"
rm -rf "$root"
cp -a "$base" "$root"
mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/condenser.deb"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

step "apt-get install ./condenser.deb"
in_root sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /tmp/condenser.deb' \
  > "$cache/install.log" 2>&1 || fail "apt-get install failed"
# Cached for the next run: the dependencies' .debs.
cp -n "$root"/var/cache/apt/archives/*.deb "$base/var/cache/apt/archives/" 2> /dev/null || true
uid=$(in_root id -u condenser) || fail "no condenser user"
gid=$(in_root id -g condenser)
[ "$(in_root getent passwd condenser | cut -d: -f6,7)" = "/var/lib/condenser:/usr/sbin/nologin" ] ||
  fail "condenser user: $(in_root getent passwd condenser)"
mode() { in_root stat -c '%a %U:%G' "$1"; }
[ "$(mode /etc/condenser)" = "750 root:condenser" ] || fail "/etc/condenser: $(mode /etc/condenser)"
[ "$(mode /etc/condenser/keys)" = "700 condenser:condenser" ] || fail "/etc/condenser/keys: $(mode /etc/condenser/keys)"
[ "$(mode /etc/condenser/coordinator.ini)" = "640 root:condenser" ] || fail "coordinator.ini: $(mode /etc/condenser/coordinator.ini)"
[ "$(mode /var/lib/condenser)" = "750 condenser:condenser" ] || fail "/var/lib/condenser: $(mode /var/lib/condenser)"
for f in /usr/bin/condenser /usr/share/man/man1/condenser-coordinator-run.1.gz \
         /usr/share/man/man1/condenser-doctor.1.gz /lib/systemd/system/condenser-agent@.service \
         /usr/share/doc/condenser/operations.md; do
  [ -e "$root$f" ] || fail "$f is not installed"
done
grep -qx /etc/condenser/coordinator.ini "$root/var/lib/dpkg/info/condenser.conffiles" || fail "no conffiles"
in_root condenser --version > /dev/null || fail "condenser does not run in the root"

as_condenser() { (exec_as_condenser "$@"); }
# The background form: `exec`, so that $! is the daemon itself (chroot, env and sh all exec).
exec_as_condenser() { exec chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/env -i PATH=/usr/bin:/bin \
                   HOME=/var/lib/condenser LANG=C.UTF-8 OPENBLAS_NUM_THREADS=1 sh -c "cd /var/lib/condenser && $1"; }
# A free port below the kernel's ephemeral range (see tests/lib/http_testutil.h).
free_port() {
  python3 -c 'import random, socket
for p in random.sample(range(20000, 32768), 2000):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()'
}

step "a federation, as the condenser user"
port=$(free_port); mport=$(free_port)
mkdir -p "$root/srv/condenser"
python3 - "$root/srv/condenser" <<'PY'
import random, struct, sys
def mk(img, lab, n, seed):
    r = random.Random(seed)
    ims = bytearray(struct.pack('>IIII', 0x803, n, 8, 8)); lbs = bytearray(struct.pack('>II', 0x801, n))
    for _ in range(n):
        c = r.randrange(4); lbs.append(c)
        for y in range(8):
            for x in range(8):
                v = (170 if (y >= 4) * 2 + (x >= 4) == c else 60) + 40 * r.gauss(0, 1)
                ims.append(max(0, min(255, int(v))))
    open(img, 'wb').write(ims); open(lab, 'wb').write(lbs)
d = sys.argv[1]
mk(d + "/pub-img.idx", d + "/pub-lab.idx", 300, 9)
mk(d + "/t-img.idx", d + "/t-lab.idx", 400, 8)
for s in (1, 2):
    mk(d + "/site-%d-img.idx" % s, d + "/site-%d-lab.idx" % s, 150, 100 + s)
PY
chmod -R a+rX "$root/srv/condenser"
c=/var/lib/condenser/coordinator
{
  as_condenser "condenser ca init --dir /var/lib/condenser/ca --name 'package test'"
  as_condenser "condenser coordinator init --dir $c --ca /var/lib/condenser/ca"
  as_condenser "condenser train --data idx:/srv/condenser/t-img.idx,/srv/condenser/t-lab.idx --arch 'flatten dense(16) relu dense(4)' --epochs 2 --threads 1 --out /var/lib/condenser/teacher.cnd"
  for s in 1 2; do
    as_condenser "condenser keygen --out /etc/condenser/keys/site-$s"
    as_condenser "condenser ca issue --dir /var/lib/condenser/ca --name site-$s --role site --pubkey /etc/condenser/keys/site-$s/identity.pub --out /etc/condenser/keys/site-$s/site.pem"
    as_condenser "condenser site enroll site-$s --cert /etc/condenser/keys/site-$s/site.pem --dir $c"
    as_condenser "mkdir -p /var/lib/condenser/agent/site-$s"
  done
  as_condenser "cp /var/lib/condenser/ca/ca.crt /var/lib/condenser/ca/crl.pem /etc/condenser/keys/"
  as_condenser "cp $c/identity.pub /etc/condenser/keys/coordinator.pub"
  as_condenser "condenser job create --dir $c --name packaged --student-arch 'flatten dense(8) relu dense(4)' --teacher /var/lib/condenser/teacher.cnd --calib-data idx:/srv/condenser/pub-img.idx,/srv/condenser/pub-lab.idx --rounds 1 --sites 2 --batch 16 --lr 0.01 --advertise-ms 8000 --share-ms 8000 --masked-ms 60000 --unmask-ms 8000"
} > "$cache/setup.log" 2>&1 || fail "setting up the federation failed"
# The configurations, from the package's examples.
sed -i -e "s|^endpoint = .*|endpoint = tcp://127.0.0.1:$port|" -e "s|^; metrics = 127.0.0.1:9460|metrics = 127.0.0.1:$mport|" \
  "$root/etc/condenser/coordinator.ini"
for s in 1 2; do
  sed -e "s/hospital-a/site-$s/g" -e "s|^data = .*|data = idx:/srv/condenser/site-$s-img.idx,/srv/condenser/site-$s-lab.idx|" \
      -e "s|^endpoint = .*|endpoint = tcp://127.0.0.1:$port|" -e "s|^memory_mb = .*|memory_mb = 1024|" \
      -e "s|^threads = .*|threads = 1|" "$root/etc/condenser/agent.ini.example" > "$root/etc/condenser/agent/site-$s.ini"
  chgrp "$gid" "$root/etc/condenser/agent/site-$s.ini"; chmod 0640 "$root/etc/condenser/agent/site-$s.ini"
done
as_condenser "condenser doctor --config /etc/condenser/coordinator.ini" > "$cache/doctor.log" 2>&1 ||
  fail "doctor on the coordinator: $(cat "$cache/doctor.log")"
for s in 1 2; do
  as_condenser "condenser doctor --agent /etc/condenser/agent/site-$s.ini" >> "$cache/doctor.log" 2>&1 ||
    fail "doctor on site-$s: $(cat "$cache/doctor.log")"
done

step "the units' ExecStart lines"
unit_exec() { sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/$1"; }
grep -qx 'WorkingDirectory=/var/lib/condenser' "$root/lib/systemd/system/condenser-coordinator.service" || fail "WorkingDirectory"
exec_as_condenser "exec $(unit_exec condenser-coordinator.service)" > "$cache/coordinator.log" 2>&1 &
pids+=($!)
for s in 1 2; do
  exec_as_condenser "exec $(unit_exec condenser-agent@.service | sed "s/%i/site-$s/g")" > "$cache/agent-$s.log" 2>&1 &
  pids+=($!)
done
scraped=0
state=
for _ in $(seq 600); do
  sleep 0.5
  if [ $scraped = 0 ] && python3 - "$mport" > "$cache/metrics.txt" 2> /dev/null <<'PY'
import sys, urllib.request
b = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
assert "condenser_sessions" in b and "condenser_start_time_seconds" in b, b[:300]
print(b)
PY
  then scraped=1; fi
  state=$(as_condenser "condenser job list --dir $c --json" 2> /dev/null |
          python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["state"])' 2> /dev/null || true)
  case "$state" in completed|failed|cancelled) break ;; esac
  for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null || fail "a daemon exited"; done
done
[ "$state" = completed ] || fail "the job did not complete: '$state'"
[ $scraped = 1 ] || fail "the metrics endpoint never answered"
grep -q '^condenser_' "$cache/metrics.txt" || fail "no condenser_ metrics"
grep -qE '^[0-9T:-]+Z info coordinator job=1( round=1)?( peer=site-[12])?: ' "$cache/coordinator.log" ||
  fail "no 'TIME info coordinator job=1 ...' log lines"
# A scrape after the job: the rounds it ran.
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$mport/metrics', timeout=5).read().decode())" \
  > "$cache/metrics-after.txt" || fail "scrape after the job"
grep -qx 'condenser_jobs{state="completed"} 1' "$cache/metrics-after.txt" || fail "metrics do not show the completed job"

step "backup"
as_condenser "condenser coordinator backup --dir $c --out /var/lib/condenser/backup.db" > "$cache/backup.log" 2>&1 ||
  fail "coordinator backup"
as_condenser "condenser audit verify /var/lib/condenser/backup.db --key $c/identity.pub" >> "$cache/backup.log" 2>&1 ||
  fail "the backup's audit log does not verify"
for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
wait 2> /dev/null || true
pids=()

step "upgrade"
# The same package as version VERSION+1 (dpkg-deb repack): an upgrade must keep the state,
# the edited configuration (a conffile) and the user, and the new program must run on the
# old database.
rm -rf "$cache/repack"
dpkg-deb -R "$deb" "$cache/repack"
v=$(dpkg-deb -f "$deb" Version)
sed -i "s/^Version: .*/Version: $v+1/" "$cache/repack/DEBIAN/control"
dpkg-deb -b --root-owner-group "$cache/repack" "$root/tmp/condenser-next.deb" > /dev/null
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/condenser-next.deb' > "$cache/upgrade.log" 2>&1 ||
  fail "upgrade failed"
[ "$(in_root dpkg-query -W -f='${Version}' condenser)" = "$v+1" ] || fail "the upgrade did not install $v+1"
grep -q "^metrics = 127.0.0.1:$mport" "$root/etc/condenser/coordinator.ini" || fail "the upgrade replaced the edited coordinator.ini"
[ "$(as_condenser "condenser job list --dir $c --json" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["state"])')" = completed ] ||
  fail "the job is gone after the upgrade"
[ "$(mode /var/lib/condenser)" = "750 condenser:condenser" ] || fail "upgrade: /var/lib/condenser: $(mode /var/lib/condenser)"

step "remove, then purge"
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -q condenser' > "$cache/remove.log" 2>&1 || fail "apt-get remove"
[ ! -e "$root/usr/bin/condenser" ] || fail "remove left /usr/bin/condenser"
[ -f "$root/var/lib/condenser/backup.db" ] && [ -f "$root/etc/condenser/keys/site-1/identity.key" ] ||
  fail "remove deleted state or keys"
in_root id -u condenser > /dev/null || fail "remove deleted the user"
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q condenser' > "$cache/purge.log" 2>&1 || fail "apt-get purge"
for f in /var/lib/condenser /etc/condenser /lib/systemd/system/condenser-coordinator.service \
         /usr/share/man/man1/condenser.1.gz /usr/share/doc/condenser; do
  [ ! -e "$root$f" ] || fail "purge left $f"
done
in_root getent passwd condenser > /dev/null && fail "purge left the condenser user"
in_root getent group condenser > /dev/null && fail "purge left the condenser group"
[ -z "$(in_root dpkg-query -W -f='${Status}' condenser 2> /dev/null | grep -v 'not-installed')" ] ||
  fail "dpkg still knows condenser: $(in_root dpkg-query -W -f='${Status}' condenser)"
# Only what the test itself put there is left.
[ -d "$root/srv/condenser" ] || fail "purge removed data it did not own"
umount "$root/proc"
rm -rf "$root"
echo "ok: install, federation with the units' commands, metrics, backup, remove, purge"
