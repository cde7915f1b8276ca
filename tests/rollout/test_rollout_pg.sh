#!/usr/bin/env bash
# test_rollout_pg.sh BIN MKART [BATCH]: the same rollout on both rollout-state back ends (rollout_state.h):
# sqlite: (the coordinator database) and PostgreSQL (a private server this test starts: initdb in
# a temporary directory, a unix socket there, no TCP listener, tests/lib/pg_testutil.sh). For each:
#   `rollout serve` and `fleet-sim` as real processes, 100 simulated devices on v1 enrolled through
#   the state, a rollout of v2 in waves (canary 5, then 10, 20, 40, 25; at most 4 devices active);
#   once wave 2 has begun and devices are still to be updated, the server is killed with SIGKILL
#   and started again on the same endpoint. Checks: the rollout completes; every one of the 100
#   device rows is healthy (none offered, pending, timed out or failed); every simulated device
#   runs v2's digest (fleet-sim --report); `rollout show --json` through the same state agrees;
#   the PostgreSQL run left its tables there and none in the coordinator database.
# Also: a bad state URL is refused with a message naming it; a device name with SQL in it is
# refused by enroll and stored nowhere (values are bound, never spliced); fleet-sim's enrollment
# waits out the coordinator database's lock held by another process past its busy timeout; and
# test_rollout_state_batch (BATCH, the third argument) checks the batched device rows there.
# Exit 77 (skip) when Debian's PostgreSQL server binaries are not installed.
set -euo pipefail
bin=$1 mkart=$2 batch=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/pg_testutil.sh"
command -v sqlite3 > /dev/null && command -v python3 > /dev/null || { echo "SKIP: needs sqlite3 and python3" >&2; exit 77; }
pg_test_begin rollout_pg

"$mkart" "$w/v1.cndq" 1 8 1
"$mkart" "$w/v2.cndq" 1 8 2
v2=$(sha256sum "$w/v2.cndq" | cut -d' ' -f1)
n=100

# A bad URL is refused by name, before anything is written.
"$bin" rollout init --dir "$w/bad" > /dev/null
if "$bin" rollout list --dir "$w/bad" --state "mysql://x/y" > "$w/badurl.log" 2>&1; then fail "a mysql:// state was accepted"; fi
grep -q "mysql://x/y" "$w/badurl.log" || fail "bad URL not named: $(cat "$w/badurl.log")"
if "$bin" rollout list --dir "$w/bad" --state "postgresql:///nosuchdb?host=$w/pg/sock&user=cnd" > "$w/nodb.log" 2>&1; then
  fail "a missing database was accepted"
fi
grep -q 'nosuchdb' "$w/nodb.log" || fail "missing database not named: $(cat "$w/nodb.log")"

run() { # run BACKEND URL
  local be=$1 url=$2 c="$w/coord-$1" p ep t0=$SECONDS
  p=$(port)
  ep="tcp://127.0.0.1:$p"
  q() { # q SQL: one value from the state
    if [ "$be" = pg ]; then pg_sql "$1"; else sqlite3 "$c/coordinator.db" "$1"; fi
  }
  "$bin" rollout init --dir "$c" > /dev/null
  "$bin" rollout publish "$w/v1.cndq" --dir "$c" --model fm --version 1 --manifest-out "$w/v1-$be.man" > /dev/null
  "$bin" rollout publish "$w/v2.cndq" --dir "$c" --model fm --version 2 > /dev/null
  serve() {
    "$bin" rollout serve --dir "$c" --state "$url" --endpoint "$ep" --heartbeat-ms 1000 \
      --offline-after 10 2>> "$w/serve-$be.log" &
    spid=$!
    pids+=($spid)
  }
  serve
  "$bin" fleet-sim --devices $n --endpoint "$ep" --coordinator-key "$c/identity.pub" --coordinator-dir "$c" \
    --state "$url" --initial "$w/v1.cndq" --initial-manifest "$w/v1-$be.man" --heartbeat-ms 1000 \
    --duration 150 --quiet --report "$w/report-$be.txt" > "$w/sim-$be.log" 2>&1 &
  local sim=$!
  pids+=($sim)
  profiled() { [ "$(q 'SELECT count(*) FROM fleet_device WHERE profile_ms > 0' 2> /dev/null)" = $n ]; }
  wait_for 60 profiled || fail "$be: $(q 'SELECT count(*) FROM fleet_device WHERE profile_ms > 0') of $n devices reported a profile"
  "$bin" rollout create --dir "$c" --state "$url" --model fm@2 --canary 5 --rate 10 --factor 2 \
    --max-active 4 --chunk 8192 --device-timeout 120 > "$w/create-$be.log" || fail "$be: create"
  mid_wave() { [ "$(q "SELECT wave FROM rollout WHERE id = 1")" -ge 2 ]; }
  wait_for 60 mid_wave || fail "$be: wave 2 never began"
  kill -9 $spid
  wait $spid 2>/dev/null || true
  local left
  left=$(q "SELECT count(*) FROM rollout_device WHERE rollout = 1 AND state != 'healthy'")
  [ "$(q "SELECT state FROM rollout WHERE id = 1")" = running ] && [ "$left" -gt 0 ] ||
    fail "$be: the rollout was over before the kill; nothing was tested"
  echo "$be: killed rollout serve in wave $(q "SELECT wave FROM rollout WHERE id = 1") with $left devices not yet healthy"
  serve
  completed() { [ "$(q "SELECT state FROM rollout WHERE id = 1")" = completed ]; }
  wait_for 120 completed || fail "$be: rollout not completed after the restart: $(q "SELECT state, count(*) FROM rollout_device GROUP BY state")"
  wait $sim || fail "$be: fleet-sim failed"
  local bad
  bad=$(q "SELECT count(*) FROM rollout_device WHERE rollout = 1 AND state != 'healthy'")
  [ "$bad" = 0 ] || fail "$be: device rows not healthy: $(q "SELECT device, state, reason FROM rollout_device WHERE state != 'healthy'")"
  [ "$(q 'SELECT count(*) FROM rollout_device WHERE rollout = 1')" = $n ] || fail "$be: not $n device rows"
  [ "$(wc -l < "$w/report-$be.txt")" = $n ] || fail "$be: report has not $n lines"
  [ "$(grep -c " $v2 " "$w/report-$be.txt")" = $n ] || fail "$be: devices not on v2: $(grep -v " $v2 " "$w/report-$be.txt" | head)"
  "$bin" rollout show 1 --dir "$c" --state "$url" --json > "$w/show-$be.json"
  python3 - "$w/show-$be.json" $n <<'PY' || fail "$be: rollout show: $(cat "$w/show-$be.json")"
import json, sys
r = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
assert r["state"] == "completed", r["state"]
assert sum(w["healthy"] for w in r["waves"]) == n, r["waves"]
PY
  kill $spid
  wait $spid || fail "$be: rollout serve did not stop cleanly"
  pids=()
  echo "$be: ok ($((SECONDS - t0)) s)"
}

run sqlite sqlite:
run pg "$PG_URL"
# The PostgreSQL run kept its state there, not in the coordinator database.
[ "$(sqlite3 "$w/coord-pg/coordinator.db" 'SELECT count(*) FROM rollout_device')" = 0 ] || fail "pg: rows in SQLite"
[ "$(sqlite3 "$w/coord-pg/coordinator.db" 'SELECT count(*) FROM fleet_device')" = 0 ] || fail "pg: fleet rows in SQLite"
[ "$(pg_sql "SELECT version FROM condenser_schema WHERE component = 'rollout'")" = 2 ] || fail "pg: schema version"

# Enrollment outlasts the coordinator database's lock held past its busy timeout (10 s) by another
# process: fleet-sim waits it out (a simulator of a 100,000-device run stopped there once).
python3 - "$w/coord-pg/coordinator.db" 13 > "$w/holder.log" 2>&1 <<'PY' &
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
PY
holder=$!
pids+=($holder)
wait_for 10 grep -q held "$w/holder.log" || fail "the lock holder did not start"
before=$(pg_sql "SELECT count(*) FROM fleet_device")
"$bin" fleet-sim --devices 110 --shard 10/11 --endpoint "tcp://127.0.0.1:$(port)" --coordinator-key "$w/coord-pg/identity.pub" \
  --coordinator-dir "$w/coord-pg" --state "$PG_URL" --duration 2 --quiet > "$w/busy.log" 2>&1 ||
  fail "fleet-sim gave up on a held coordinator database: $(cat "$w/busy.log")"
grep -q "trying again" "$w/busy.log" || fail "the lock was not waited out: $(cat "$w/busy.log")"
wait $holder || true
[ "$(pg_sql "SELECT count(*) FROM fleet_device")" = $((before + 10)) ] || fail "the 10 devices were not enrolled"

# Values are bound, never spliced: a name with SQL in it is refused by the name rule, and a
# quote-laden reason reaches PostgreSQL intact.
"$bin" edge init --dir "$w/evil" --name "x" --class gw --endpoint tcp://127.0.0.1:1 --coordinator-key "$w/coord-pg/identity.pub" > /dev/null
if "$bin" rollout enroll "a'; DROP TABLE rollout; --" --key "$w/evil/identity.pub" --dir "$w/coord-pg" --state "$PG_URL" > "$w/evil.log" 2>&1; then
  fail "enrolled a name with SQL in it"
fi
grep -q "is not a valid device name" "$w/evil.log" || fail "evil name reason: $(cat "$w/evil.log")"
"$bin" rollout rollback 1 --dir "$w/coord-pg" --state "$PG_URL" --reason "it's o'clock; DROP TABLE rollout; --" > /dev/null
[ "$(pg_sql "SELECT reason FROM rollout WHERE id = 1")" = "it's o'clock; DROP TABLE rollout; --" ] || fail "reason not stored as given"
# The batched device rows of the PostgreSQL back end (test_rollout_state_batch.c).
if [ -n "$batch" ]; then "$batch" "$PG_URL" || fail "test_rollout_state_batch"; fi
echo "test_rollout_pg: ok"
