#!/usr/bin/env bash
# test_units.sh BUILD_DIR: the systemd units as the package installs them. `cmake --install`
# puts the tree into a scratch root (DESTDIR, prefix /usr), the host's own unit files are added
# so that targets resolve, and `systemd-analyze verify --root` checks each unit there (an
# instance of the agent's template); any message fails the test. Then each unit must carry the
# sandboxing and readiness docs/operations.md promises, and a unit with a misspelt directive
# must be caught, so the check cannot pass vacuously.
set -euo pipefail
build=$1
command -v systemd-analyze > /dev/null || { echo "systemd-analyze missing (Debian package systemd)" >&2; exit 1; }
w=$(mktemp -d /tmp/cnd_units.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
root="$w/root"
DESTDIR="$root" cmake --install "$build" --prefix /usr > "$w/install.log" 2>&1 ||
  fail "cmake --install: $(cat "$w/install.log")"
units="$root/lib/systemd/system"
mkdir -p "$units"
cp -an /lib/systemd/system/. "$units/"
[ -x "$root/usr/bin/condenser" ] || fail "the install has no /usr/bin/condenser"
for f in coordinator.ini rollout.ini agent.ini.example; do
  [ -f "$root/etc/condenser/$f" ] || fail "the install has no /etc/condenser/$f"
done
grep -q '^; metrics = 127.0.0.1:9460$' "$root/etc/condenser/coordinator.ini" ||
  fail "coordinator.ini lacks the commented metrics line"

verify() { # verify UNIT: 0 when systemd-analyze says nothing
  local out
  out=$(systemd-analyze verify --man=no --root="$root" "$1" 2>&1) && [ -z "$out" ] || { echo "$out"; return 1; }
}
for u in condenser-coordinator.service condenser-agent@hospital-a.service condenser-rollout.service \
         condenser-edge.service; do
  tmpl=${u/@hospital-a/@}
  f="$units/$tmpl"
  [ -f "$f" ] || fail "$tmpl is not installed in /lib/systemd/system"
  msg=$(verify "$u") || fail "systemd-analyze verify $u: $msg"
  for want in Type=notify User=condenser ProtectSystem=strict PrivateTmp=yes NoNewPrivileges=yes \
              ReadWritePaths=/var/lib/condenser Restart=on-failure; do
    grep -qx "$want" "$f" || fail "$tmpl lacks $want"
  done
  # The only writable place is the state directory.
  [ "$(grep -c '^ReadWritePaths=' "$f")" = 1 ] || fail "$tmpl has more than one ReadWritePaths"
  grep -q '^ExecStart=/usr/bin/condenser ' "$f" || fail "$tmpl does not start /usr/bin/condenser"
  # The ExecStart command's words are options the command knows: its --help succeeds.
  cmd=$(sed -n 's|^ExecStart=/usr/bin/condenser ||p' "$f" | sed 's/ --.*//')
  "$root/usr/bin/condenser" $cmd --help > /dev/null || fail "$tmpl: 'condenser $cmd --help' fails"
  for opt in $(sed -n 's|^ExecStart=/usr/bin/condenser ||p' "$f" | grep -o -- '--[a-z-]*'); do
    "$root/usr/bin/condenser" $cmd --help | grep -q -- "$opt" || fail "$tmpl: 'condenser $cmd' has no $opt"
  done
  echo "ok $u"
done

# The rollout server holds one descriptor per connected device: its unit asks for enough for
# fleets of 100,000+ (docs/operations.md, "Large fleets"), and systemd must accept the value.
grep -qx 'LimitNOFILE=262144' "$units/condenser-rollout.service" ||
  fail "condenser-rollout.service lacks LimitNOFILE=262144"
sed 's/^LimitNOFILE=262144/LimitNOFILE=lots/' "$units/condenser-rollout.service" > "$units/bad-nofile.service"
verify bad-nofile.service > /dev/null && fail "systemd-analyze accepted LimitNOFILE=lots"

# The check itself: a misspelt directive and a missing binary are reported.
sed 's/^ProtectSystem=strict/ProtectSystem=strikt/' "$units/condenser-edge.service" > "$units/bad-edge.service"
verify bad-edge.service > /dev/null && fail "systemd-analyze accepted ProtectSystem=strikt"
sed 's|^ExecStart=/usr/bin/condenser|ExecStart=/usr/bin/condenser-missing|' \
  "$units/condenser-edge.service" > "$units/bad-exec.service"
verify bad-exec.service > /dev/null && fail "systemd-analyze accepted a missing executable"
echo "ok: 4 units verified"
