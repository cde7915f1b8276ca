#!/usr/bin/env bash
# test_rollout_replicas.sh BIN MKART: three `rollout serve` replicas sharing one rollout state in
# a private PostgreSQL (tests/lib/pg_testutil.sh), 100 fleet-sim devices given all three
# endpoints (each starts at the one its name hashes to, and fails over after 2 s without a
# session). Checks:
#   - exactly one replica leads (holds the leader lock, binds its endpoint, runs the engine); the
#     other two log that they are standing by;
#   - every device reaches the leader (those whose first choice is a standby fail over);
#   - the leader is killed with SIGKILL once wave 2 has begun and devices are still to be
#     updated: one standby takes over (logs "took over") within 10 s, the other stays a standby;
#   - once wave 3 has begun, the new leader's PostgreSQL connection holding the lock is
#     terminated (pg_terminate_backend): that replica stops on its own (it may no longer lead) and
#     the last standby takes over;
#   - the rollout completes; all 100 device rows are healthy; every device runs v2's digest;
#   - the same for one real `condenser edge run` device with the three endpoints (failover_s = 2 in
#     its edge.conf), which loses its leader with the others and must find the new one.
# Exit 77 (skip) when Debian's PostgreSQL server binaries are not installed.
set -euo pipefail
bin=$1 mkart=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/pg_testutil.sh"
command -v python3 > /dev/null || { echo "SKIP: needs python3" >&2; exit 77; }
pg_test_begin rollout_rep
url=$PG_URL
q() { pg_sql "$1"; }
n=100

"$mkart" "$w/v1.cndq" 1 8 1
"$mkart" "$w/v2.cndq" 1 8 2
v2=$(sha256sum "$w/v2.cndq" | cut -d' ' -f1)
c="$w/coord"
"$bin" rollout init --dir "$c" > /dev/null
"$bin" rollout publish "$w/v1.cndq" --dir "$c" --model fm --version 1 --manifest-out "$w/v1.man" > /dev/null
"$bin" rollout publish "$w/v2.cndq" --dir "$c" --model fm --version 2 > /dev/null

eps=() spids=()
for r in 0 1 2; do
  eps+=("tcp://127.0.0.1:$(port)")
  "$bin" rollout serve --dir "$c" --state "$url" --endpoint "${eps[$r]}" --heartbeat-ms 1000 \
    --offline-after 10 2> "$w/serve-$r.log" &
  spids+=($!)
  pids+=($!)
  # one at a time, so the first one started leads (and the test knows which)
  [ $r = 0 ] && { wait_for 20 grep -q "leader: holding the leader lock" "$w/serve-0.log" || fail "replica 0 did not lead"; }
done
standby() { grep -q "standby: another replica holds the leader lock" "$w/serve-$1.log"; }
wait_for 20 standby 1 || fail "replica 1 is not a standby"
wait_for 20 standby 2 || fail "replica 2 is not a standby"

list=$(IFS=,; echo "${eps[*]}")
"$bin" edge init --dir "$w/dev" --name edge-a --endpoint "${eps[2]}, ${eps[0]} ,${eps[1]}" \
  --coordinator-key "$c/identity.pub" --class sim-gw --cpu x86-64 > /dev/null
echo "failover_s = 2" >> "$w/dev/edge.conf"
"$bin" rollout enroll edge-a --key "$w/dev/identity.pub" --dir "$c" --state "$url" > /dev/null
"$bin" edge install --dir "$w/dev" "$w/v1.cndq" --manifest "$w/v1.man" > /dev/null
"$bin" edge run --dir "$w/dev" 2> "$w/edge.log" &
pids+=($!)
"$bin" fleet-sim --devices $n --endpoint "$list" --failover 2 --coordinator-key "$c/identity.pub" \
  --coordinator-dir "$c" --state "$url" --initial "$w/v1.cndq" --initial-manifest "$w/v1.man" \
  --heartbeat-ms 1000 --duration 200 --quiet --report "$w/report.txt" > "$w/sim.log" 2>&1 &
sim=$!
pids+=($sim)
profiled() { [ "$(q 'SELECT count(*) FROM fleet_device WHERE profile_ms > 0')" = $((n + 1)) ]; }
wait_for 90 profiled || fail "$(q 'SELECT count(*) FROM fleet_device WHERE profile_ms > 0') of $n devices reached the leader"
"$bin" rollout create --dir "$c" --state "$url" --model fm@2 --canary 5 --rate 10 --factor 2 \
  --max-active 4 --chunk 8192 --device-timeout 120 > "$w/create.log" || fail "create"
mid_wave() { [ "$(q "SELECT wave FROM rollout WHERE id = 1")" -ge 2 ]; }
wait_for 60 mid_wave || fail "wave 2 never began"
kill -9 "${spids[0]}"
t_kill=$(date +%s.%N)
left=$(q "SELECT count(*) FROM rollout_device WHERE rollout = 1 AND state != 'healthy'")
[ "$(q "SELECT state FROM rollout WHERE id = 1")" = running ] && [ "$left" -gt 0 ] ||
  fail "the rollout was over before the kill; nothing was tested"
took() { grep -q "(took over)" "$w/serve-1.log" "$w/serve-2.log"; }
wait_for 10 took || fail "no standby took over within 10 s"
t_took=$(date +%s.%N)
leaders=$(grep -l "(took over)" "$w/serve-1.log" "$w/serve-2.log" | wc -l)
[ "$leaders" = 1 ] || fail "$leaders replicas took over"
echo "killed the leader in wave $(q "SELECT wave FROM rollout WHERE id = 1") with $left devices not yet healthy; a standby led $(python3 -c "print(round($t_took - $t_kill, 2))") s later"
# The new leader loses the connection that holds its lock: it must stop, the last one lead.
if grep -q "(took over)" "$w/serve-1.log"; then second=1 third=2; else second=2 third=1; fi
wave3() { [ "$(q "SELECT wave FROM rollout WHERE id = 1")" -ge 3 ]; }
wait_for 60 wave3 || fail "wave 3 never began"
[ "$(q "SELECT state FROM rollout WHERE id = 1")" = running ] || fail "the rollout was over before the second fault"
[ "$(q "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'
        AND classid = 1590 AND objid = 3862955267 AND granted")" = 1 ] || fail "no leader lock to break"
stopped() { ! kill -0 "${spids[$second]}" 2> /dev/null; }
wait_for 10 stopped || fail "replica $second kept running without its leader lock"
grep -q "may no longer lead" "$w/serve-$second.log" || fail "replica $second did not say why it stopped: $(tail -3 "$w/serve-$second.log")"
took3() { grep -q "(took over)" "$w/serve-$third.log"; }
wait_for 10 took3 || fail "replica $third did not take over"
echo "broke replica $second's lock connection in wave $(q "SELECT wave FROM rollout WHERE id = 1"): it stopped, replica $third leads"
completed() { [ "$(q "SELECT state FROM rollout WHERE id = 1")" = completed ]; }
wait_for 150 completed || fail "rollout not completed after the takeover: $(q "SELECT state, count(*) FROM rollout_device GROUP BY state")"
wait $sim || fail "fleet-sim failed"
[ "$(q "SELECT count(*) FROM rollout_device WHERE rollout = 1 AND state = 'healthy'")" = $((n + 1)) ] ||
  fail "device rows not healthy: $(q "SELECT device, state, reason FROM rollout_device WHERE state != 'healthy'")"
[ "$(grep -c " $v2 " "$w/report.txt")" = $n ] || fail "devices not on v2: $(grep -v " $v2 " "$w/report.txt" | head)"
edge_v2() { [ "$("$bin" edge status --dir "$w/dev" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['digest'])")" = "$v2" ]; }
wait_for 10 edge_v2 || fail "the edge run device is not on v2"
grep -q "trying ${eps[1]}\|trying ${eps[2]}" "$w/edge.log" || fail "the edge run device did not fail over: $(cat "$w/edge.log")"
echo "test_rollout_replicas: ok"
