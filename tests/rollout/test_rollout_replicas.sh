#!/usr/bin/env bash
# test_rollout_replicas.sh BIN MKART: three `rollout serve` replicas sharing one rollout state in
# a private PostgreSQL (tests/lib/pg_testutil.sh), devices spread over them: 100 fleet-sim devices
# and one real `condenser edge run` device, all given the three endpoints (each starts at the one
# its name hashes to and fails over to the next after 2 s without a session). Checks:
#   - every replica listens and serves devices; exactly one (the first started) holds the leader
#     lock and makes the wave decisions, the others say they serve devices;
#   - each of the three has sessions of some of the devices (its "sessions:" log line);
#   - wave 1: a replica that does not lead is killed with SIGKILL (and restarted, as systemd
#     would); wave 2: every PostgreSQL connection of the other replica that does not lead is
#     terminated (pg_terminate_backend, found by its application_name): it stops on its own (and
#     is restarted); wave 3: the leader is killed with SIGKILL and another replica takes over the
#     wave decisions within 10 s; wave 4: the new leader's connection holding the lock is
#     terminated: it stops on its own and the last replica leads;
#   - the rollout completes; all 101 device rows are healthy (none failed, timed out, deferred or
#     left offered); every simulated device runs v2's digest, and so does the edge run device;
#   - the audit log the replicas share (one directory) verifies.
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
serve() { # serve R LOG: replica R on its endpoint, its connections named rep-R
  "$bin" rollout serve --dir "$c" --state "$url&application_name=rep-$1" --endpoint "${eps[$1]}" --heartbeat-ms 1000 \
    --offline-after 10 2> "$2" &
  spids[$1]=$!
  pids+=($!)
}
for r in 0 1 2; do
  eps+=("tcp://127.0.0.1:$(port)")
  serve $r "$w/serve-$r.log"
  # one at a time, so the first one started leads (and the test knows which)
  [ $r = 0 ] && { wait_for 20 grep -q "leader: holding the leader lock" "$w/serve-0.log" || fail "replica 0 did not lead"; }
done
serving() { grep -q "replica: serving devices; another replica holds the leader lock" "$1"; }
wait_for 20 serving "$w/serve-1.log" || fail "replica 1 does not serve"
wait_for 20 serving "$w/serve-2.log" || fail "replica 2 does not serve"
for r in 0 1 2; do wait_for 20 grep -q "listening on ${eps[$r]}" "$w/serve-$r.log" || fail "replica $r does not listen"; done

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
wait_for 60 profiled || fail "$(q 'SELECT count(*) FROM fleet_device WHERE profile_ms > 0') of $n devices reached a replica"
# Spread: every replica has sessions of some devices (logged every 5 s when the count changes).
sessions() { grep "sessions: " "$w/serve-$1.log" | tail -1 | sed 's/.*sessions: \([0-9]*\) devices.*/\1/'; }
has_sessions() { local k; k=$(sessions "$1"); [ -n "$k" ] && [ "$k" -gt 0 ]; }
for r in 0 1 2; do wait_for 15 has_sessions $r || fail "replica $r serves no device"; done
echo "sessions per replica: $(sessions 0) / $(sessions 1) / $(sessions 2)"
"$bin" rollout create --dir "$c" --state "$url" --model fm@2 --canary 5 --rate 5 --factor 2 \
  --max-active 8 --chunk 8192 --device-timeout 120 > "$w/create.log" || fail "create"
wave() { [ "$(q "SELECT wave FROM rollout WHERE id = 1")" -ge "$1" ]; }
running() { # running WHAT: the rollout is still running with devices left to update
  local left; left=$(q "SELECT count(*) FROM rollout_device WHERE rollout = 1 AND state != 'healthy'")
  [ "$(q "SELECT state FROM rollout WHERE id = 1")" = running ] && [ "$left" -gt 0 ] ||
    fail "the rollout was over before $1; nothing was tested"
  echo "$1 in wave $(q "SELECT wave FROM rollout WHERE id = 1") with $left devices not yet healthy"
}
# 1. A replica that does not lead dies; its devices move on; it comes back (as systemd restarts it).
wait_for 60 wave 1 || fail "wave 1 never began"
kill -9 "${spids[1]}"
running "killed replica 1 (not the leader)"
serve 1 "$w/serve-1b.log"
wait_for 20 serving "$w/serve-1b.log" || fail "replica 1 did not come back as a replica"
# 2. The other one loses its PostgreSQL connections: it stops by itself, and comes back.
wait_for 60 wave 2 || fail "wave 2 never began"
running "terminating replica 2's connections"
[ "$(q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'rep-2'")" -ge 2 ] ||
  fail "replica 2 has no connections to terminate"
gone2() { ! kill -0 "${spids[2]}" 2> /dev/null; }
wait_for 10 gone2 || fail "replica 2 kept running without its PostgreSQL connections"
grep -q "stopping: " "$w/serve-2.log" || fail "replica 2 did not say why it stopped: $(tail -3 "$w/serve-2.log")"
serve 2 "$w/serve-2b.log"
wait_for 20 serving "$w/serve-2b.log" || fail "replica 2 did not come back as a replica"
# 3. The leader dies: one of the others takes the wave decisions over.
wait_for 60 wave 3 || fail "wave 3 never began"
kill -9 "${spids[0]}"
t_kill=$(date +%s.%N)
running "killed replica 0 (the leader)"
took() { grep -q "(took over)" "$w/serve-1b.log" "$w/serve-2b.log"; }
wait_for 10 took || fail "no replica took over within 10 s"
t_took=$(date +%s.%N)
leaders=$(grep -l "(took over)" "$w/serve-1b.log" "$w/serve-2b.log" | wc -l)
[ "$leaders" = 1 ] || fail "$leaders replicas took over"
echo "a replica led $(python3 -c "print(round($t_took - $t_kill, 2))") s after the leader's SIGKILL"
if grep -q "(took over)" "$w/serve-1b.log"; then second=1 third=2 tlog="$w/serve-2b.log"; else second=2 third=1 tlog="$w/serve-1b.log"; fi
# 4. The new leader loses the connection that holds its lock: it must stop, the last one lead.
wait_for 60 wave 4 || fail "wave 4 never began"
running "terminating replica $second's lock connection"
[ "$(q "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'
        AND classid = 1590 AND objid = 3862955267 AND granted")" = 1 ] || fail "no leader lock to break"
stopped() { ! kill -0 "${spids[$second]}" 2> /dev/null; }
wait_for 10 stopped || fail "replica $second kept running without its leader lock"
took3() { grep -q "(took over)" "$tlog"; }
wait_for 10 took3 || fail "replica $third did not take over"
echo "replica $second stopped, replica $third leads"
completed() { [ "$(q "SELECT state FROM rollout WHERE id = 1")" = completed ]; }
wait_for 120 completed || fail "rollout not completed: $(q "SELECT state, count(*) FROM rollout_device GROUP BY state")"
wait $sim || fail "fleet-sim failed"
[ "$(q "SELECT count(*) FROM rollout_device WHERE rollout = 1 AND state = 'healthy'")" = $((n + 1)) ] ||
  fail "device rows not healthy: $(q "SELECT device, state, reason FROM rollout_device WHERE state != 'healthy'")"
[ "$(grep -c " $v2 " "$w/report.txt")" = $n ] || fail "devices not on v2: $(grep -v " $v2 " "$w/report.txt" | head)"
edge_v2() { [ "$("$bin" edge status --dir "$w/dev" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['digest'])")" = "$v2" ]; }
wait_for 10 edge_v2 || fail "the edge run device is not on v2"
# The replicas share one directory here, so they appended to one audit log, killed or not.
"$bin" audit verify "$c/coordinator.db" --key "$c/identity.pub" > "$w/verify.log" 2>&1 ||
  fail "audit log: $(cat "$w/verify.log")"
echo "test_rollout_replicas: ok"
