#!/usr/bin/env bash
# test_edge_cli.sh BIN MKART: the edge daemon and the rollout commands as separate processes.
#   - two devices (condenser edge init/install/run) and a coordinator (rollout init/enroll/
#     publish/serve) over loopback CurveZMQ;
#   - device A is killed in the middle of its download (CND_EDGE_CRASH_AT) and restarted: it
#     resumes from the chunks it already held (fewer chunk writes than the artifact has chunks);
#   - the rollout completes, both devices run v2 and answer `edge infer`;
#   - `rollout rollback` brings both back to v1 (from their other slot), confirmed by `status`;
#   - a local install of the v2 bytes with the v1 manifest is refused as modified.
set -euo pipefail
command -v sqlite3 > /dev/null && command -v python3 > /dev/null || exit 77
bin=$1 mkart=$2
w=$(mktemp -d /tmp/cnd_edge_cli.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$w"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -n 30 "$w"/*.log >&2 || true; exit 1; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
  local t=$1; shift
  for _ in $(seq $((t * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}

"$mkart" "$w/v1.cndq" 1 8 1
"$mkart" "$w/v2.cndq" 1 8 2
d1=$(sha256sum "$w/v1.cndq" | cut -d' ' -f1)
d2=$(sha256sum "$w/v2.cndq" | cut -d' ' -f1)
c="$w/coord"
# A rollout command on a directory that holds no coordinator fails, says so, and creates nothing.
mkdir "$w/none"
if "$bin" rollout list --dir "$w/none" > "$w/none.log" 2>&1; then fail "rollout list on an empty directory succeeded"; fi
grep -q "no coordinator database" "$w/none.log" || fail "unclear error: $(cat "$w/none.log")"
[ -z "$(ls -A "$w/none")" ] || fail "rollout list created $(ls "$w/none") in an empty directory"
"$bin" rollout init --dir "$c" > /dev/null
"$bin" rollout publish "$w/v1.cndq" --dir "$c" --model fm --version 1 --manifest-out "$w/v1.man" > /dev/null
"$bin" rollout publish "$w/v2.cndq" --dir "$c" --model fm --version 2 > /dev/null
"$bin" rollout serve --dir "$c" --endpoint 'tcp://127.0.0.1:*' --endpoint-file "$w/ep" \
  --heartbeat-ms 1000 2> "$w/serve.log" &
pids+=($!)
wait_for 10 test -s "$w/ep" || fail "no endpoint"
ep=$(cat "$w/ep")
for dev in a b; do
  "$bin" edge init --dir "$w/$dev" --name "dev-$dev" --endpoint "$ep" --coordinator-key "$c/identity.pub" \
    --class gw --cpu x86-64 --model fm --labels "site=north,ward=$dev" > /dev/null
  "$bin" rollout enroll "dev-$dev" --key "$w/$dev/identity.pub" --dir "$c" > /dev/null
  "$bin" edge install --dir "$w/$dev" "$w/v1.cndq" --manifest "$w/v1.man" > /dev/null
  [ "$("$bin" edge status --dir "$w/$dev" --json | json digest)" = "$d1" ] || fail "$dev not on v1"
done
# Device A dies right after its third chunk is recorded (steps: reserve 1, state 4, then 6 per
# chunk: write, fsync, and the 4 of the state record).
CND_EDGE_CRASH_AT=23 CND_EDGE_CRASH_TRACE=1 "$bin" edge run --dir "$w/a" 2> "$w/a1.log" &
pa=$!
"$bin" edge run --dir "$w/b" 2> "$w/b.log" &
pids+=($!)
profiles() { [ "$(sqlite3 "$c/coordinator.db" 'select count(*) from fleet_device where profile_ms > 0')" = 2 ]; }
wait_for 20 profiles || fail "devices did not report"
"$bin" rollout create --dir "$c" --model fm@2 --canary 1 --chunk 16384 --device-timeout 60 > /dev/null
set +e
wait "$pa"
code=$?
set -e
[ "$code" = 86 ] || fail "device A was expected to die at the crash step (exit $code)"
held=$(grep -c 'chunk written' "$w/a1.log" || true)
[ "$held" = 3 ] || fail "device A wrote $held chunks before the crash, expected 3"
CND_EDGE_CRASH_TRACE=1 "$bin" edge run --dir "$w/a" 2> "$w/a2.log" &
pids+=($!)
done_() { [ "$(sqlite3 "$c/coordinator.db" 'select state from rollout where id = 1')" = completed ]; }
wait_for 60 done_ || fail "rollout did not complete: $(sqlite3 "$c/coordinator.db" 'select device, state, reason from rollout_device')"
again=$(grep -c 'chunk written' "$w/a2.log" || true)
[ "$again" = 4 ] || fail "device A wrote $again chunks after restarting, expected the 4 missing ones"
for dev in a b; do
  st=$("$bin" edge status --dir "$w/$dev" --json)
  [ "$(echo "$st" | json digest)" = "$d2" ] || fail "$dev not on v2: $st"
done
head -c $((28 * 28 * 3)) /dev/urandom > "$w/in.u8"
[ "$("$bin" edge infer --dir "$w/b" "$w/in.u8" | wc -l)" = 3 ] || fail "infer"
# Operator rollback: both return to v1 from their other slot.
"$bin" rollout rollback 1 --reason "test" --dir "$c" > /dev/null
back() { [ "$(sqlite3 "$c/coordinator.db" 'select state from rollout where id = 1')" = rolled_back ]; }
wait_for 60 back || fail "rollback did not finish: $(sqlite3 "$c/coordinator.db" 'select device, state, reason from rollout_device')"
for dev in a b; do
  st=$("$bin" edge status --dir "$w/$dev" --json)
  [ "$(echo "$st" | json digest)" = "$d1" ] || fail "$dev not back on v1: $st"
done
[ "$(sqlite3 "$c/coordinator.db" "select count(*) from audit_entry where action = 'rollout.device'")" -ge 4 ] || fail "audit"
"$bin" rollout show 1 --devices --dir "$c" > "$w/show.txt"
grep -q rolled_back "$w/show.txt" || fail "show"
# The v2 bytes under the v1 manifest: refused as modified, v1 still running.
set +e
"$bin" edge install --dir "$w/b" "$w/v2.cndq" --manifest "$w/v1.man" 2> "$w/refuse.log"
code=$?
set -e
[ "$code" != 0 ] || fail "a mismatched install was accepted"
grep -q "older-sequence\|modified" "$w/refuse.log" || fail "refusal reason: $(cat "$w/refuse.log")"
echo "test_edge_cli: ok"
